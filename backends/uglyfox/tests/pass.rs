//! One pass at a time over an embedded store: health, pruning, rules, pools, guards and
//! removals, each with its audit entry (Property 19).

mod common;

use chrono::Duration as D;
use common::*;
use gosling_fleet::RunnerState as S;
use gosling_state::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use uglyfox::{Guard, Kind, Reason};

async fn pending(w: &World, egg: &str, n: u64) {
    for b in 0..n {
        let j: GitLabJob = serde_json::from_value(serde_json::json!({
            "id": format!("gitlab.example.com/7/{egg}{b}"),
            "gitlab_url": "https://gitlab.example.com",
            "project_id": 7,
            "build_id": b,
            "status": "pending",
            "gitlab_status": "pending",
            "egg_name": egg,
            "created_at": "2026-03-01T00:00:00Z",
            "updated_at": "2026-03-01T00:00:00Z",
        }))
        .unwrap();
        w.store.put_gitlab_job(&j, Expect::Absent).await.unwrap();
    }
}

fn setup() -> (Arc<FakeProvider>, Arc<Recorder>) {
    (
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    )
}

#[tokio::test]
async fn a_silent_runner_is_marked_failed_then_ended_at_the_threshold() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let (p, n) = setup();
    let fox = w.fox(p.clone(), n);
    w.runner("r-keep", "app", S::Idle, D::hours(1), |_| {})
        .await;
    w.runner("r-quiet", "app", S::Idle, D::hours(1), |r| {
        r.last_heartbeat = Some(t0() - D::minutes(10));
    })
    .await;
    let (plan, report) = fox.pass(Some(&ir)).await.unwrap();
    let d = plan
        .decisions
        .iter()
        .find(|d| d.runner.as_deref() == Some("r-quiet"))
        .unwrap();
    assert_eq!((d.kind, d.reason), (Kind::MarkFailed, Reason::Heartbeat));
    assert!(report.done() >= 1);
    let r = w.get("r-quiet").await;
    assert_eq!((r.state.as_str(), r.failure_count), ("failed", 1));
    assert_eq!(w.actions("r-quiet").await, ["mark_failed"]);
    // Each pass that still finds it silent counts one more failed health check...
    for _ in 0..2 {
        w.clock.advance(D::minutes(5));
        fox.pass(Some(&ir)).await.unwrap();
    }
    assert_eq!(w.get("r-quiet").await.failure_count, 3);
    // ...and at failed_threshold (3) it is ended (Property 17): nothing runs on it, so
    // its machine is removed at once.
    w.clock.advance(D::minutes(5));
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let d = plan
        .decisions
        .iter()
        .find(|d| d.runner.as_deref() == Some("r-quiet"))
        .unwrap();
    assert_eq!((d.kind, d.reason), (Kind::End, Reason::FailedThreshold));
    assert_eq!(w.get("r-quiet").await.state, "terminated");
    assert_eq!(*p.terminated.lock().unwrap(), ["r-quiet"]);
    assert_eq!(
        w.actions_sorted("r-quiet").await,
        [
            "mark_failed",
            "mark_failed",
            "mark_failed",
            "terminate",
            "terminated"
        ]
    );
}

#[tokio::test]
async fn old_and_failing_busy_runners_are_drained_never_killed() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let (p, n) = setup();
    let fox = w.fox(p.clone(), n);
    w.runner("r-old", "app", S::Busy, D::hours(25), |_| {})
        .await;
    w.runner("r-bad", "app", S::Busy, D::hours(1), |r| {
        r.failure_count = 5
    })
    .await;
    w.runner("r-ok", "app", S::Busy, D::hours(1), |_| {}).await;
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let reasons: Vec<_> = plan
        .of(Kind::End)
        .map(|d| (d.runner.clone().unwrap(), d.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("r-bad".into(), Reason::FailedThreshold),
            ("r-old".into(), Reason::MaxAge)
        ]
    );
    for id in ["r-old", "r-bad"] {
        let r = w.get(id).await;
        assert_eq!(
            (r.state.as_str(), r.instruction.as_deref()),
            ("draining", Some("drain"))
        );
        assert_eq!(w.actions(id).await, ["drain"]);
    }
    assert!(
        p.terminated.lock().unwrap().is_empty(),
        "no busy runner is killed"
    );
    let audit = w.store.audit_logs().await.unwrap();
    let a = audit.iter().find(|a| a.resource_id == "r-old").unwrap();
    assert!(
        a.details["reason"]
            .as_str()
            .unwrap()
            .starts_with("max_age: age"),
        "{a:?}"
    );
    // A drain that outlives the job timeout + grace is forced.
    w.clock.advance(D::hours(2));
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    assert!(plan.of(Kind::ForceEnd).count() >= 2);
    assert_eq!(w.get("r-old").await.state, "terminated");
}

#[tokio::test]
async fn idle_apex_runners_go_to_nadir_then_away_and_demand_brings_them_back_first() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let (p, n) = setup();
    let fox = w.fox(p, n);
    // Apex min 1, max 4; Nadir max 2, idle timeout 30m (also Apex's, the issue's rule).
    for id in ["a1", "a2", "a3"] {
        w.runner(id, "app", S::Idle, D::hours(2), |r| {
            r.last_job_at = Some(t0() - D::minutes(40));
            r.state_since = Some(t0() - D::minutes(40));
        })
        .await;
    }
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let demoted: Vec<_> = plan
        .of(Kind::Demote)
        .map(|d| d.runner.clone().unwrap())
        .collect();
    assert_eq!(demoted.len(), 2, "{plan:#?}");
    let held: Vec<_> = plan.of(Kind::Hold).collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].guard, Some(Guard::PoolMinimum));
    for id in &demoted {
        let r = w.get(id).await;
        assert_eq!(
            (r.pool.as_deref(), r.instruction.as_deref()),
            (Some("nadir"), Some("pause"))
        );
        assert_eq!(w.actions(id).await, ["demote"]);
    }
    // "web" has no runner at all: its min_count asks for one.
    let reqs: Vec<_> = plan.of(Kind::Request).collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].egg.as_str(), reqs[0].reason),
        ("web", Reason::MinCount)
    );
    let kept = held[0].runner.clone().unwrap();
    assert_eq!(w.actions(&kept).await, ["hold"]);

    // Three pending jobs, one idle Apex runner: both Nadir runners are promoted; nothing
    // new is requested (Property 15).
    pending(&w, "app", 3).await;
    w.clock.advance(D::minutes(5));
    w.heartbeat_all().await;
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let promoted: Vec<_> = plan
        .of(Kind::Promote)
        .map(|d| d.runner.clone().unwrap())
        .collect();
    assert_eq!(promoted.len(), 2, "{plan:#?}");
    assert_eq!(plan.of(Kind::Request).count(), 0);
    for id in &promoted {
        let r = w.get(id).await;
        assert_eq!(
            (r.pool.as_deref(), r.instruction.as_deref()),
            (Some("apex"), Some("resume"))
        );
    }
    // Three jobs for "web" (2 per runner) and one runner on its way: one more is
    // requested, as a DeployRunner task.
    pending(&w, "web", 3).await;
    w.clock.advance(D::minutes(5));
    w.heartbeat_all().await;
    let (plan, report) = fox.pass(Some(&ir)).await.unwrap();
    let keys: Vec<_> = plan
        .of(Kind::Request)
        .map(|d| d.key.clone().unwrap())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "web: 3 pending jobs / 2 per runner: {plan:#?}"
    );
    assert_eq!(
        plan.of(Kind::Request).next().unwrap().reason,
        Reason::Demand
    );
    assert!(keys.iter().all(|k| k.starts_with("pool:web:")), "{keys:?}");
    assert!(report.lost_claims.is_empty());
    let leases = w
        .queue
        .lease(
            10,
            std::time::Duration::from_secs(30),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let tasks: Vec<_> = leases
        .iter()
        .map(|l| gosling_fleet::Task::from_message(&l.message).unwrap())
        .collect();
    assert_eq!(tasks.len(), 2);
    assert!(
        matches!(&tasks[0], gosling_fleet::Task::DeployRunner { job } if job.starts_with("pool:web:"))
    );
    // The next pass counts them as on their way and asks for nothing more (until the
    // request timeout, 15 minutes, passes without a runner).
    w.clock.advance(D::minutes(1));
    w.heartbeat_all().await;
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    assert_eq!(plan.of(Kind::Request).count(), 0, "{plan:#?}");
}

#[tokio::test]
async fn rules_act_in_order_and_one_missing_a_metric_is_skipped() {
    let w = World::new().await;
    let mut ir = compile(&NEST.replace(
        "uglyfox {",
        r#"uglyfox {
  policies {
    rule "hot" {
      condition = "cpu_usage > 90"
      action    = "restart"
    }
    rule "veteran" {
      condition = "job_count > 100"
      action    = "notify"
    }
  }"#,
    ));
    ir.uglyfox.as_mut().unwrap().apex.min_count = 0;
    w.deploy(&ir).await;
    let (p, n) = setup();
    let mut fox = w.fox(p, n.clone());
    fox.applier.alert_to = vec!["ops@example.com".into()];
    w.runner("r-nosample", "app", S::Idle, D::hours(1), |r| {
        r.job_count = 500
    })
    .await;
    w.runner("r-hot", "app", S::Busy, D::hours(1), |r| r.job_count = 500)
        .await;
    w.store
        .put_metric(&RunnerMetric {
            runner_id: "r-hot".into(),
            timestamp: t0(),
            state: "busy".into(),
            job_count: 500,
            cpu_usage: 99.0,
            memory_usage: 10.0,
            disk_usage: 10.0,
            agent_version: "17".into(),
            failure_count: 0,
            last_job_timestamp: None,
        })
        .await
        .unwrap();
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    // r-hot: the first rule holds → restart (reload), the second is not reached.
    let hot: Vec<_> = plan
        .decisions
        .iter()
        .filter(|d| d.runner.as_deref() == Some("r-hot"))
        .collect();
    assert_eq!(hot.len(), 1);
    assert_eq!(
        (hot[0].kind, hot[0].rule.as_deref()),
        (Kind::Restart, Some("hot"))
    );
    assert_eq!(w.get("r-hot").await.instruction.as_deref(), Some("reload"));
    // r-nosample: "hot" cannot be evaluated (no cpu sample) → skipped; "veteran" applies.
    let skipped = &plan.skipped_rules["hot"];
    assert_eq!(
        (skipped.runners, skipped.missing.clone()),
        (1, vec!["cpu_usage"])
    );
    let d = plan
        .decisions
        .iter()
        .find(|d| d.runner.as_deref() == Some("r-nosample"))
        .unwrap();
    assert_eq!((d.kind, d.rule.as_deref()), (Kind::Notify, Some("veteran")));
    assert_eq!(w.actions("r-nosample").await, ["notify"]);
    let sent = n.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipients, ["ops@example.com"]);
    assert_eq!(fox.applier.metrics.rules_skipped.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn removals_that_fail_are_retried_with_backoff_then_forced() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let p = Arc::new(FakeProvider::default());
    p.fail.store(100, Ordering::SeqCst);
    let told = Arc::new(Recorder::default());
    let mut fox = w.fox(p.clone(), told.clone());
    fox.applier.alert_to = vec!["ops@example.com".into()];
    w.runner("r-f", "app", S::Failed, D::hours(1), |r| {
        r.failure_count = 3
    })
    .await;
    fox.pass(Some(&ir)).await.unwrap();
    let r = w.get("r-f").await;
    assert_eq!(
        (r.state.as_str(), r.termination_attempts),
        ("pending_termination", 1)
    );
    // Not yet due (5 s backoff): nothing.
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    assert_eq!(plan.decisions.len(), 0, "{plan:#?}");
    w.clock.advance(D::seconds(6));
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    assert_eq!(
        plan.of(Kind::Remove).next().unwrap().reason,
        Reason::RetryRemoval
    );
    assert_eq!(w.get("r-f").await.termination_attempts, 2);
    w.clock.advance(D::seconds(11));
    fox.pass(Some(&ir)).await.unwrap();
    let r = w.get("r-f").await;
    assert_eq!(r.state, "terminated", "forced after the third attempt");
    assert_eq!(
        w.actions_sorted("r-f").await,
        [
            "terminate",
            "terminate_failed",
            "terminate_failed",
            "terminate_failed",
            "terminate_forced"
        ]
    );
    assert_eq!(
        fox.applier
            .metrics
            .terminations_forced
            .load(Ordering::Relaxed),
        1
    );
    let alerts = told.sent.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "operators are alerted");
    assert!(
        alerts[0].body.contains("may still exist"),
        "{}",
        alerts[0].body
    );
    // With a provider that recovers after 1 failure, the retry succeeds.
    let p2 = Arc::new(FakeProvider::default());
    p2.fail.store(1, Ordering::SeqCst);
    let fox2 = w.fox(p2.clone(), Arc::new(Recorder::default()));
    w.runner("r-g", "app", S::Failed, D::hours(1), |r| {
        r.failure_count = 9
    })
    .await;
    fox2.pass(Some(&ir)).await.unwrap();
    assert_eq!(w.get("r-g").await.state, "pending_termination");
    w.clock.advance(D::seconds(6));
    fox2.pass(Some(&ir)).await.unwrap();
    assert_eq!(w.get("r-g").await.state, "terminated");
    assert_eq!(*p2.terminated.lock().unwrap(), ["r-g"]);
}

#[tokio::test]
async fn the_throttle_bounds_a_pass_and_says_so() {
    let w = World::new().await;
    let mut ir = nest();
    ir.uglyfox.as_mut().unwrap().throttle.terminate_per_pass = 1;
    ir.uglyfox.as_mut().unwrap().throttle.create_per_pass = 0;
    w.deploy(&ir).await;
    let (p, n) = setup();
    let fox = w.fox(p, n);
    for id in ["o1", "o2", "o3"] {
        w.runner(id, "fn", S::Idle, D::hours(30), |r| {
            r.kind = "serverless".into()
        })
        .await;
    }
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    assert_eq!(plan.of(Kind::End).count(), 1);
    let holds: Vec<_> = plan
        .of(Kind::Hold)
        .filter(|d| d.guard == Some(Guard::Throttle))
        .collect();
    // o2, o3 (ending) and the two eggs' refills (creating) are held by the throttle.
    assert_eq!(holds.len(), 4, "{plan:#?}");
    assert_eq!(w.actions("o2").await, ["hold"]);
    assert_eq!(w.actions("app").await, ["hold"]);
    // An unchanged hold is recorded once, not every pass.
    w.clock.advance(D::minutes(5));
    w.heartbeat_all().await;
    fox.pass(Some(&ir)).await.unwrap();
    assert_eq!(w.actions("app").await, ["hold"]);
}

#[tokio::test]
async fn an_egg_with_pending_jobs_is_never_scaled_to_zero() {
    let w = World::new().await;
    let mut ir = nest();
    ir.uglyfox.as_mut().unwrap().apex.min_count = 0;
    w.deploy(&ir).await;
    let (p, n) = setup();
    let fox = w.fox(p, n);
    w.runner("only", "app", S::Idle, D::hours(2), |r| {
        r.state_since = Some(t0() - D::hours(1));
    })
    .await;
    pending(&w, "app", 1).await;
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let d = plan
        .decisions
        .iter()
        .find(|d| d.runner.as_deref() == Some("only"))
        .unwrap();
    assert_eq!((d.kind, d.guard), (Kind::Hold, Some(Guard::PendingJobs)));
    assert_eq!(w.get("only").await.pool.as_deref(), Some("apex"));
}

#[tokio::test]
async fn a_request_that_became_a_runner_is_not_counted_twice() {
    let w = World::new().await;
    let mut ir = nest();
    ir.uglyfox.as_mut().unwrap().apex.min_count = 2;
    w.deploy(&ir).await;
    let (p, n) = setup();
    let fox = w.fox(p, n);
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let keys: Vec<String> = plan
        .of(Kind::Request)
        .filter(|d| d.egg == "app")
        .map(|d| d.key.clone().unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    // MotherGoose made the first request's runner (its id follows from the key).
    let id = gosling_fleet::tasks::runner_id_for(&keys[0], 1);
    w.runner(&id, "app", S::Provisioning, D::zero(), |r| r.pool = None)
        .await;
    w.clock.advance(D::minutes(1));
    let (plan, _) = fox.pass(Some(&ir)).await.unwrap();
    let app = plan.pools.iter().find(|p| p.egg == "app").unwrap();
    assert_eq!(
        app.coming, 2,
        "one provisioning + one request on its way: {app:?}"
    );
    assert_eq!(plan.of(Kind::Request).filter(|d| d.egg == "app").count(), 0);
}

#[test]
fn apex_follows_the_working_day() {
    // A scale window: 3 warm runners 08:00-19:00 on weekdays (Moscow time), none otherwise.
    let mut ir = nest();
    let uf = ir.uglyfox.as_mut().unwrap();
    uf.apex.min_count = 0;
    uf.apex.scale = vec![fly_ir::ScaleWindow {
        name: "office".into(),
        from: fly_ir::Schedule::parse("0 8 * * 1-5").unwrap(),
        to: fly_ir::Schedule::parse("0 19 * * 1-5").unwrap(),
        timezone: "Europe/Moscow".into(),
        min_count: 3,
    }];
    let requests_at = |t| {
        let p = uglyfox::plan(
            &uglyfox::Snapshot::empty(t),
            Some(&ir),
            &uglyfox::Config::default(),
        );
        p.of(Kind::Request).filter(|d| d.egg == "app").count()
    };
    // Monday 09:00 Moscow = 06:00 UTC; 20:00 Moscow = 17:00 UTC; Saturday noon.
    assert_eq!(requests_at(t0() + D::hours(6)), 3);
    assert_eq!(requests_at(t0() + D::hours(17)), 0);
    assert_eq!(requests_at(t0() + D::days(5) + D::hours(9)), 0);
}
