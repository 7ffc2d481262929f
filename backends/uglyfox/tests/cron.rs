//! Cron Jobs on a manual clock (Property 30): each scheduled time runs once — over a
//! simulated day, after an outage, with two UglyFox instances — and failures are retried,
//! then told once.

mod common;

use chrono::{DateTime, Duration as D, Utc};
use common::*;
use gosling_fleet::Task;
use gosling_state::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use uglyfox::UglyFox;

/// MotherGoose's part: takes the queued runs and reports each with `status`.
async fn run_queued(w: &World, status: &str) -> Vec<(String, DateTime<Utc>)> {
    let mut ran = Vec::new();
    loop {
        let leases = w
            .queue
            .lease(16, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        if leases.is_empty() {
            return ran;
        }
        for l in leases {
            if let Ok(Task::ExecuteSelfManagementJob { job, scheduled_for }) =
                Task::from_message(&l.message)
            {
                let v = w.store.job(&job).await.unwrap().unwrap();
                let mut rec = v.item;
                rec.status = status.into();
                rec.last_result =
                    Some(serde_json::json!({ "success": status == "succeeded", "exit_code": 1 }));
                w.store
                    .put_job(&rec, Expect::Version(v.version))
                    .await
                    .unwrap();
                ran.push((job, scheduled_for));
            }
            w.queue.ack(&l).await.unwrap();
        }
    }
}

async fn tick(fox: &UglyFox, ir: &fly_ir::Deployment) {
    fox.cron_tick(ir).await.unwrap();
}

#[tokio::test]
async fn every_fifteen_minutes_runs_96_times_a_day() {
    // Property 30: Cron Job Scheduling.
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let fox = w.fox(
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    );
    let mut runs = Vec::new();
    for _ in 0..(24 * 60) {
        w.clock.advance(D::minutes(1));
        tick(&fox, &ir).await;
        runs.extend(run_queued(&w, "succeeded").await);
    }
    assert_eq!(runs.len(), 96);
    let times: BTreeSet<_> = runs.iter().map(|r| r.1).collect();
    assert_eq!(times.len(), 96, "each scheduled time once");
    assert!(
        times.iter().all(|t| t.timestamp() % 900 == 0),
        "at the times */15 names"
    );
    assert_eq!(*times.iter().next().unwrap(), t0() + D::minutes(15));
    assert_eq!(*times.iter().last().unwrap(), t0() + D::days(1));
}

#[tokio::test]
async fn after_a_six_hour_outage_a_missed_schedule_runs_once() {
    // Property 30: a missed schedule runs once, not once per missed time.
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let fox = w.fox(
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    );
    w.clock.advance(D::minutes(15));
    tick(&fox, &ir).await;
    assert_eq!(run_queued(&w, "succeeded").await.len(), 1);
    w.clock.advance(D::hours(6));
    tick(&fox, &ir).await;
    tick(&fox, &ir).await;
    let ran = run_queued(&w, "succeeded").await;
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0].1, t0() + D::minutes(30), "the first missed time");
    let rec = w.store.job("tick").await.unwrap().unwrap().item;
    assert_eq!(rec.next_run, Some(t0() + D::minutes(6 * 60 + 30)));
    // And the schedule goes on from there.
    w.clock.advance(D::minutes(15));
    tick(&fox, &ir).await;
    assert_eq!(run_queued(&w, "succeeded").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_run_each_scheduled_time_exactly_once() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let a = w.fox(
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    );
    let b = w.fox(
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    );
    let mut runs = Vec::new();
    for _ in 0..(6 * 60) {
        w.clock.advance(D::minutes(1));
        let (x, y) = tokio::join!(a.cron_tick(&ir), b.cron_tick(&ir));
        x.unwrap();
        y.unwrap();
        runs.extend(run_queued(&w, "succeeded").await);
    }
    assert_eq!(runs.len(), 24);
    let times: BTreeSet<_> = runs.iter().map(|r| r.1).collect();
    assert_eq!(times.len(), 24);
    let claims = w
        .store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "cron_run")
        .count();
    assert_eq!(claims, 24, "one claim per scheduled time");
}

#[tokio::test]
async fn a_failed_run_is_retried_then_the_recipients_are_told_once() {
    let w = World::new().await;
    let ir = nest(); // on_failure { notify = ["ops@example.com"], retry = 1 }
    w.deploy(&ir).await;
    let told = Arc::new(Recorder::default());
    let fox = w.fox(Arc::new(FakeProvider::default()), told.clone());
    w.clock.advance(D::minutes(15));
    tick(&fox, &ir).await;
    assert_eq!(run_queued(&w, "failed").await.len(), 1);
    w.clock.advance(D::minutes(1));
    tick(&fox, &ir).await;
    let retry = run_queued(&w, "failed").await;
    assert_eq!(
        retry,
        [("tick".to_string(), t0() + D::minutes(15))],
        "the same scheduled time again"
    );
    assert_eq!(w.store.job("tick").await.unwrap().unwrap().item.attempt, 2);
    for _ in 0..3 {
        w.clock.advance(D::minutes(1));
        tick(&fox, &ir).await;
    }
    let sent = told.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "told once");
    assert_eq!(sent[0].recipients, ["ops@example.com"]);
    assert!(sent[0].subject.contains("tick"), "{}", sent[0].subject);
    assert!(w.store.job("tick").await.unwrap().unwrap().item.notified);
    assert!(
        run_queued(&w, "failed").await.is_empty(),
        "no third attempt"
    );
    // The next scheduled time runs as usual.
    w.clock.advance(D::minutes(11));
    tick(&fox, &ir).await;
    assert_eq!(
        run_queued(&w, "succeeded").await,
        [("tick".to_string(), t0() + D::minutes(30))]
    );
}

#[tokio::test]
async fn a_run_that_never_reports_counts_as_failed_and_is_retried() {
    let w = World::new().await;
    let ir = nest(); // timeout 1h (the default), grace 15 min
    w.deploy(&ir).await;
    let fox = w.fox(
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    );
    w.clock.advance(D::minutes(15));
    tick(&fox, &ir).await;
    // Taken but never reported.
    let leases = w
        .queue
        .lease(4, Duration::from_secs(60), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    // Meanwhile, due times are skipped (said in the audit log), not piled up.
    w.clock.advance(D::minutes(15));
    tick(&fox, &ir).await;
    let skipped = w
        .store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "cron_skipped")
        .count();
    assert_eq!(skipped, 1);
    w.clock.advance(D::minutes(70));
    tick(&fox, &ir).await; // lost → failed
    tick(&fox, &ir).await; // retry
    let rec = w.store.job("tick").await.unwrap().unwrap().item;
    assert_eq!((rec.status.as_str(), rec.attempt), ("queued", 2));
    assert_eq!(rec.last_result.unwrap()["timed_out"], true);
}
