//! The system benchmarks BENCHMARKS.md quotes (release build, this machine):
//!
//! - `system-load [JOBS] [EGGS] [MAX_RUNNERS]`: the load scenario at full size (default 500
//!   jobs over 5 eggs and 3 projects), checked; jobs per second end to end, job event →
//!   runner active p50/p99, peak memory of MotherGoose and UglyFox.
//! - `system-load soak MINUTES [JOBS_PER_SECOND]`: a steady job rate (default 2/s) for that
//!   long, checked; memory of MotherGoose and UglyFox (resident and private) sampled
//!   every 10 s with its slope after warm-up and over the last half, their open file
//!   descriptors at the start and the end, and (through the checker) no runner process,
//!   agent or runner left behind.
//!
//! `cargo run --release -p gosling-system-tests --bin system-load -- soak 30`

use gosling_system_tests::sample::{
    peak_kib, quarter_means_mib, slope_mib_per_hour, Memory, Sample, Sampler, Usage,
};
use gosling_system_tests::{check::check, load, Bins, EggSpec, System, Tuning};
use std::time::Duration;

fn arg<T: std::str::FromStr>(i: usize, d: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("soak") {
        soak(arg(2, 30.0), arg(3, 2.0)).await
    } else {
        burst(arg(1, 500), arg(2, 5), arg(3, 8)).await
    }
}

async fn start(eggs: usize, max: u32) -> System {
    System::start(
        Bins::build(),
        EggSpec::many(eggs, 3, max),
        Tuning::default(),
    )
    .await
}

async fn burst(jobs: usize, eggs: usize, max: u32) {
    let sys = start(eggs, max).await;
    let (m, u) = sys.service_pids();
    let sampler = Sampler::start([m, u], Duration::from_millis(100), None);
    let run = load::run(
        &sys,
        jobs,
        Duration::from_millis(5),
        Duration::from_secs(900),
    )
    .await;
    let samples = sampler.finish();
    let report = check(&sys, "success").await;
    report.assert_clean();
    println!(
        "{jobs} jobs, {eggs} eggs (max_runners {max}): {:.1} s, {:.1} jobs/s end to end; \
         job event -> runner process started p50 {} ms, p99 {} ms; -> runner active \
         (first heartbeat) p50 {} ms, p99 {} ms; peak RSS MotherGoose {} MiB, UglyFox {} MiB; \
         checker: {} jobs, {} runners ({} ended before they were up), no problems",
        run.elapsed.as_secs_f64(),
        jobs as f64 / run.elapsed.as_secs_f64(),
        load::quantile(&run.created_latencies, 0.5).as_millis(),
        load::quantile(&run.created_latencies, 0.99).as_millis(),
        run.quantile(0.5).as_millis(),
        run.quantile(0.99).as_millis(),
        peak_kib(&samples, 0, Memory::Resident) / 1024,
        peak_kib(&samples, 1, Memory::Resident) / 1024,
        report.jobs,
        report.runners,
        report.unused.len(),
    );
}

async fn soak(minutes: f64, rate: f64) {
    let sys = start(5, 8).await;
    let (m, u) = sys.service_pids();
    let metrics = (sys.mothergoose_url.clone(), sys.admin_token());
    let sampler = Sampler::start([m, u], Duration::from_secs(10), Some(metrics));
    let jobs = (minutes * 60.0 * rate) as usize;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let run = load::run(&sys, jobs, gap, Duration::from_secs(900)).await;
    let samples = sampler.finish();
    let report = check(&sys, "success").await;
    report.assert_clean();
    println!(
        "soak {minutes} min at {rate} jobs/s: {jobs} jobs in {:.0} s, p50 {} ms, p99 {} ms; \
         checker: no problems, nothing left running",
        run.elapsed.as_secs_f64(),
        run.quantile(0.5).as_millis(),
        run.quantile(0.99).as_millis(),
    );
    for (i, name) in ["MotherGoose", "UglyFox"].into_iter().enumerate() {
        println!("{name}: {}", usage(&samples, i));
    }
}

/// Service `i`'s memory and descriptors over a soak: first..last (peak), the slope after
/// warm-up and over the last half, the mean per quarter — resident, then private.
fn usage(samples: &[Sample], i: usize) -> String {
    let (first, last) = (samples.first().unwrap().1[i], samples.last().unwrap().1[i]);
    let one = |m: Memory, a: u64, b: u64| {
        format!(
            "{:.1}..{:.1} MiB (peak {:.1}), slope {:+.2} MiB/h after warm-up, \
             {:+.2} MiB/h over the last half, mean per quarter {:?} MiB",
            a as f64 / 1024.0,
            b as f64 / 1024.0,
            peak_kib(samples, i, m) as f64 / 1024.0,
            slope_mib_per_hour(samples, i, m, 0.2),
            slope_mib_per_hour(samples, i, m, 0.5),
            quarter_means_mib(samples, i, m),
        )
    };
    let outside = |u: Usage| u.private_kib.saturating_sub(u.sqlite_kib);
    let mut text = format!(
        "resident {}; private {}; ",
        one(Memory::Resident, first.resident_kib, last.resident_kib),
        one(Memory::Private, first.private_kib, last.private_kib),
    );
    if last.sqlite_kib > 0 {
        text += &format!(
            "private outside SQLite {} (SQLite {:.1}..{:.1} MiB); ",
            one(Memory::OutsideSqlite, outside(first), outside(last)),
            first.sqlite_kib as f64 / 1024.0,
            last.sqlite_kib as f64 / 1024.0,
        );
    }
    text + &format!("fds {} -> {}", first.fds, last.fds)
}
