//! Under faults, over real processes and signals: `kill -9` of MotherGoose while it
//! provisions, of UglyFox during its passes, of a runner-mode process during its job; after
//! a restart (or without one, for the runner) the checker finds no lost and no duplicated
//! runner and nothing left running (Property 31). And a state store that stops answering
//! for a while: hooks are still acknowledged, nothing is lost, nothing busy is killed.

use gosling_system_tests::check::{check, check_with};
use gosling_system_tests::{procs, Backend, Bins, EggSpec, System, Tuning};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(150);

async fn until(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn runners_in(sys: &System, state: &str) -> Vec<String> {
    sys.store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.item.state == state)
        .map(|r| r.item.id)
        .collect()
}

async fn settle_and_check(sys: &System) {
    if let Err(e) = sys.settle(SETTLE).await {
        panic!("{e}\n--- mothergoose\n{}", sys.tail("mothergoose"));
    }
    check(sys, "success").await.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_mothergoose_while_it_provisions_loses_and_duplicates_nothing() {
    let mut sys = System::start(Bins::build(), EggSpec::many(2, 2, 6), Tuning::default()).await;
    let eggs = sys.eggs.clone();
    for i in 0..12 {
        sys.job(&eggs[i % 2], 1.0).await;
    }
    until(
        Duration::from_secs(30),
        "the first runner (the others are being provisioned)",
        async || !sys.store.runners().await.unwrap().is_empty(),
    )
    .await;
    sys.stop_mothergoose(libc::SIGKILL);
    // Events keep coming while it is down (GitLab's deliveries fail; the reconciler finds them).
    for i in 0..4 {
        sys.job(&eggs[i % 2], 0.5).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sys.start_mothergoose().await;
    settle_and_check(&sys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_uglyfox_during_its_passes_loses_and_duplicates_nothing() {
    let tuning = Tuning {
        check_interval: "1s",
        ..Tuning::default()
    };
    let mut sys = System::start(Bins::build(), EggSpec::many(2, 1, 6), tuning).await;
    let eggs = sys.eggs.clone();
    for round in 0..3 {
        for i in 0..5 {
            sys.job(&eggs[i % 2], 0.5).await;
        }
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        sys.stop_uglyfox(libc::SIGKILL);
        sys.start_uglyfox();
    }
    settle_and_check(&sys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_runner_process_during_its_job_ends_that_runner_and_only_it() {
    let sys = System::start(Bins::build(), EggSpec::many(1, 1, 4), Tuning::default()).await;
    let egg = sys.eggs[0].clone();
    let (long, _) = sys.job(&egg, 4.0).await;
    let mut busy = Vec::new();
    until(Duration::from_secs(30), "a busy runner", async || {
        busy = runners_in(&sys, "busy").await;
        !busy.is_empty()
    })
    .await;
    // The runner-mode process (`gosling runner --runner-id ID …`), not its agent.
    let runner_mode = procs::with_arg(sys.dir.path(), "--runner-id");
    let victim: Vec<i32> = procs::with_arg(sys.dir.path(), &busy[0])
        .into_iter()
        .filter(|pid| runner_mode.contains(pid))
        .collect();
    assert_eq!(victim.len(), 1, "one runner-mode process for {}", busy[0]);
    // SAFETY: kill(2) of a process this test's system started.
    unsafe { libc::kill(victim[0], libc::SIGKILL) };
    let killed = Instant::now();
    // Its agent is aborted with it (nobody would report the job's end); the runner falls
    // silent, UglyFox marks it failed and it is ended.
    until(SETTLE, "the silent runner ended", async || {
        runners_in(&sys, "terminated").await.contains(&busy[0])
    })
    .await;
    eprintln!("silent runner ended {:?} after kill -9", killed.elapsed());
    // Another job still gets its own runner.
    sys.job(&egg, 0.5).await;
    // GitLab fails a job whose runner stopped updating it (stuck job timeout).
    until(SETTLE, "the other job done", async || {
        sys.gitlab
            .with(|w| w.jobs.values().filter(|j| j.status == "success").count())
            == 1
    })
    .await;
    sys.gitlab.set_status(long, "failed").await;
    if let Err(e) = sys.settle(SETTLE).await {
        panic!("{e}\n--- mothergoose\n{}", sys.tail("mothergoose"));
    }
    check_with(&sys, |id| if id == long { "failed" } else { "success" })
        .await
        .assert_clean();
}

/// How long the store stays frozen: past the AWS SDK's whole-call timeout (3 attempts of
/// 10 s), so the services' calls fail and they retry them themselves, and far past
/// UglyFox's heartbeat limit (4 × 1 s): heartbeats that could not be written look stale
/// when the store is back.
const FROZEN: Duration = Duration::from_secs(35);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_store_delays_runners_but_hooks_are_acknowledged_and_nothing_is_lost_or_killed() {
    let sys = System::start_on(
        Backend::MotoStore,
        Bins::build(),
        // One job per egg: no runner can take another's job (a burst of one egg's jobs
        // released at once can still make one extra runner; see `handover`).
        EggSpec::many(7, 1, 2),
        Tuning::default(),
    )
    .await;
    let eggs = sys.eggs.clone();
    // Jobs that run through the outage.
    for egg in &eggs[..3] {
        sys.job(egg, FROZEN.as_secs_f64() + 8.0).await;
    }
    until(Duration::from_secs(60), "three busy runners", async || {
        runners_in(&sys, "busy").await.len() == 3
    })
    .await;

    let registered = sys.gitlab.with(|w| w.runners.len());
    sys.freeze_store();
    let frozen = Instant::now();
    for (i, egg) in eggs[3..].iter().enumerate() {
        let sent = Instant::now();
        sys.job(egg, 0.5).await;
        let answered = sys.gitlab.with(|w| w.deliveries.last().cloned()).unwrap().1;
        assert_eq!(
            answered, "200",
            "hook {i} acknowledged while the store is frozen"
        );
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "hook {i} took {:?} while the store is frozen",
            sent.elapsed()
        );
    }
    tokio::time::sleep(FROZEN.saturating_sub(frozen.elapsed())).await;
    assert_eq!(
        sys.gitlab.with(|w| w.runners.len()),
        registered,
        "no runner is made while the store cannot record it"
    );
    sys.thaw_store();
    // The calls failed (AWS attempt and call timeouts) and were retried, rather than hung.
    let log = std::fs::read_to_string(sys.dir.path().join("mothergoose.log")).unwrap();
    assert!(
        log.contains("waits for the store"),
        "MotherGoose's tasks met the outage as errors and retried:\n{log}"
    );

    settle_and_check(&sys).await;
    let failed: Vec<String> = sys
        .store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "mark_failed")
        .map(|a| format!("{} {}", a.resource_id, a.details))
        .collect();
    assert!(failed.is_empty(), "runners marked failed: {failed:?}");
}
