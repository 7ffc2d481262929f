//! `system-load [JOBS] [EGGS] [MAX_RUNNERS]`: the load scenario at full size (default 500
//! jobs over 5 eggs and 3 projects), checked, then the figures BENCHMARKS.md quotes: jobs
//! per second end to end, job event → runner active p50/p99, peak memory of MotherGoose and
//! UglyFox. Run with `cargo run --release -p gosling-system-tests --bin system-load`.

use gosling_system_tests::{check::check, load, procs, Bins, EggSpec, System, Tuning};
use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (jobs, eggs, max) = (arg(1, 500), arg(2, 5), arg(3, 8));
    let sys = System::start(
        Bins::build(),
        EggSpec::many(eggs, 3, max as u32),
        Tuning::default(),
    )
    .await;
    let (mg, uf) = sys.service_pids();
    let peak = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let p = peak.clone();
    let sampler = tokio::spawn(async move {
        loop {
            let m = mg.and_then(procs::rss_kib).unwrap_or(0);
            let u = uf.and_then(procs::rss_kib).unwrap_or(0);
            {
                let mut g = p.lock().unwrap();
                *g = (g.0.max(m), g.1.max(u));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let run = load::run(
        &sys,
        jobs,
        Duration::from_millis(5),
        Duration::from_secs(900),
    )
    .await;
    sampler.abort();
    let report = check(&sys, "success").await;
    report.assert_clean();
    let (m, u) = *peak.lock().unwrap();
    println!(
        "{jobs} jobs, {eggs} eggs (max_runners {max}): {:.1} s, {:.1} jobs/s end to end; \
         job event -> runner active p50 {} ms, p99 {} ms; peak RSS MotherGoose {} MiB, \
         UglyFox {} MiB; checker: {} jobs, {} runners, no problems",
        run.elapsed.as_secs_f64(),
        jobs as f64 / run.elapsed.as_secs_f64(),
        run.quantile(0.5).as_millis(),
        run.quantile(0.99).as_millis(),
        m / 1024,
        u / 1024,
        report.jobs,
        report.runners,
    );
}
