//! Under load, in CI: jobs over 5 eggs and 3 projects arrive as webhooks with duplicates,
//! redeliveries and late events while UglyFox passes run; every job gets exactly one
//! runner, every runner is ended, no egg exceeds `max_runners`, and GitLab, the store, the
//! audit log, the agents' logs and the local processes agree (Properties 9, 26, 31).
//! `SYSTEM_LOAD_JOBS` sets the size (default 60; `system-load` is the full-size benchmark).

use gosling_system_tests::{check::check, load, Backend, Bins, EggSpec, System, Tuning};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_over_five_eggs_and_three_projects_each_get_exactly_one_runner() {
    let jobs = std::env::var("SYSTEM_LOAD_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let eggs = EggSpec::many(5, 3, 4);
    let sys = System::start(Bins::build(), eggs.clone(), Tuning::default()).await;
    let run = load::run(
        &sys,
        jobs,
        Duration::from_millis(20),
        Duration::from_secs(180),
    )
    .await;
    eprintln!(
        "{jobs} jobs in {:?}; job event -> runner active p50 {:?}, p99 {:?}; peaks {:?}",
        run.elapsed,
        run.quantile(0.5),
        run.quantile(0.99),
        run.peaks
    );
    let report = check(&sys, "success").await;
    report.assert_clean();
    eprintln!("unused runners: {:?}", report.unused);
    assert_eq!((report.jobs, report.served()), (jobs, jobs));
    for e in &eggs {
        let peak = run.peaks.get(&e.name).copied().unwrap_or(0);
        assert!(
            peak <= e.max_runners as usize,
            "egg {} peaked at {peak}",
            e.name
        );
        assert!(peak > 0, "egg {} never had a runner", e.name);
    }
    assert_eq!(
        run.start_latencies.len(),
        jobs,
        "every runner became active"
    );
}

/// The same with the real adapters: DynamoDB, S3 and SQS on `moto_server`. moto answers a
/// few dozen SQS calls a second here, so the load is smaller; the guarantees are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_dynamodb_s3_and_sqs() {
    let eggs = EggSpec::many(5, 3, 4);
    let sys = System::start_on(Backend::Moto, Bins::build(), eggs, Tuning::default()).await;
    let jobs = 15;
    let run = load::run(
        &sys,
        jobs,
        Duration::from_millis(50),
        Duration::from_secs(240),
    )
    .await;
    eprintln!("moto: {jobs} jobs in {:?}", run.elapsed);
    let report = check(&sys, "success").await;
    report.assert_clean();
    eprintln!("unused runners: {:?}", report.unused);
    assert_eq!((report.jobs, report.served()), (jobs, jobs));
}
