//! Exactly-once provisioning under faults: a provider failing then succeeding, GitLab
//! answering 500 and 429 with Retry-After or answering too late, a worker that dies
//! mid-task (restart recovery, Property 31), and two MotherGoose instances over one store
//! and queue.

mod support;

use async_trait::async_trait;
use gosling_fleet::*;
use gosling_standins::gitlab::Fault;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A provider that fails `fail` times, can hold its first create forever (a worker that
/// dies while waiting on the cloud), and counts what it makes.
#[derive(Default)]
struct Scripted {
    fail: AtomicU32,
    hang_first: std::sync::atomic::AtomicBool,
    created: Mutex<BTreeMap<String, u32>>,
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        if self.hang_first.swap(false, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(ProviderError::retryable("scripted", "RequestLimitExceeded"));
        }
        *self
            .created
            .lock()
            .unwrap()
            .entry(spec.runner_id.clone())
            .or_default() += 1;
        Ok(Handle {
            provider: "scripted".into(),
            id: spec.runner_id.clone(),
            details: Default::default(),
        })
    }
    async fn status(&self, _: &Handle) -> Result<MachineStatus, ProviderError> {
        Ok(MachineStatus::Running)
    }
    async fn terminate(&self, _: &Handle) -> Result<(), ProviderError> {
        Ok(())
    }
}

async fn deployed(serverless: bool) -> Harness {
    let h = Harness::new().await;
    let kind = if serverless { "serverless" } else { "vm" };
    h.deploy(&[(
        "Eggs/a.fly".to_string(),
        egg("a", kind, 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    h
}

async fn machines(h: &Harness) -> usize {
    h.store
        .runners()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.item.machine.is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failing_then_succeeding_makes_one_runner() {
    let mut h = deployed(true).await;
    let p = Arc::new(Scripted::default());
    p.fail.store(2, Ordering::SeqCst);
    let app = h.app(Providers::single(p.clone()), None).await;
    let running = h.start(app.clone()).await;
    h.gitlab.create_job(7, "build", &["docker"]).await;
    eventually(LIMIT, "the runner's machine", || async {
        machines(&h).await == 1
    })
    .await;
    assert_eq!(p.created.lock().unwrap().values().sum::<u32>(), 1);
    assert_eq!(h.store.runners().await.unwrap().len(), 1);
    assert!(
        app.metrics
            .get("mothergoose_provider_errors_total", "retryable")
            >= 2
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_errors_and_rate_limits_are_retried() {
    let mut h = deployed(true).await;
    let p = Arc::new(Scripted::default());
    let app = h.app(Providers::single(p.clone()), None).await;
    let running = h.start(app.clone()).await;
    // The job lookup meets a 500, then a 429 asking for a second's patience (each call is
    // retried by the client first, then the task is retried by the queue).
    h.gitlab.fail_next(
        3,
        Fault {
            status: 500,
            retry_after: None,
            delay_ms: 0,
        },
    );
    h.gitlab.fail_next(
        3,
        Fault {
            status: 429,
            retry_after: Some(1),
            delay_ms: 0,
        },
    );
    h.gitlab.create_job(7, "build", &["docker"]).await;
    eventually(LIMIT, "the runner's machine", || async {
        machines(&h).await == 1
    })
    .await;
    assert_eq!(h.store.runners().await.unwrap().len(), 1);
    assert!(app.metrics.get("mothergoose_gitlab_errors_total", "job") >= 1);
    assert_eq!(h.gitlab.with(|w| w.faults.len()), 0, "every fault was met");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_answering_too_late_is_given_up_on_and_retried() {
    let mut h = deployed(true).await;
    let p = Arc::new(Scripted::default());
    let patience = gosling::gitlab::Retry {
        attempt_timeout: Duration::from_millis(300),
        ..fast_retry()
    };
    let app = h
        .app_with(Providers::single(p.clone()), None, patience)
        .await;
    let running = h.start(app.clone()).await;
    // GitLab answers the next four calls only after two seconds: each attempt gives up
    // after 300 ms (the job lookup's three, then one more call), not after the default 30 s.
    let late = Fault {
        status: 200,
        retry_after: None,
        delay_ms: 2_000,
    };
    h.gitlab.fail_next(4, late);
    let started = std::time::Instant::now();
    h.gitlab.create_job(7, "build", &["docker"]).await;
    eventually(LIMIT, "the runner's machine", || async {
        machines(&h).await == 1
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.store.runners().await.unwrap().len(), 1);
    assert!(app.metrics.get("mothergoose_gitlab_errors_total", "job") >= 1);
    assert_eq!(
        h.gitlab.with(|w| w.faults.len()),
        0,
        "every late answer was met"
    );
    let created = p.created.lock().unwrap().clone();
    assert!(created.values().all(|n| *n == 1), "{created:?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_mid_task_loses_nothing_and_duplicates_nothing() {
    // Property 31: after a crash and a restart, the runner being provisioned is finished,
    // not made twice, and the leased task comes back.
    let mut h = deployed(true).await;
    h.settings.lease = Duration::from_secs(2);
    let p = Arc::new(Scripted::default());
    p.hang_first.store(true, Ordering::SeqCst);
    let first = h.app(Providers::single(p.clone()), None).await;
    let running = h.start(first).await;
    h.gitlab.create_job(7, "build", &["docker"]).await;
    eventually(LIMIT, "a runner being provisioned", || async {
        h.store.runners().await.unwrap().len() == 1
    })
    .await;
    // The worker is stuck in the provider; the process dies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.kill().await;
    let stuck = h.store.runners().await.unwrap().remove(0).item;
    assert_eq!(
        (stuck.state.as_str(), stuck.machine.is_none()),
        ("provisioning", true)
    );
    // A new MotherGoose on the same store and queue.
    h.listener = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let second = h.app(Providers::single(p.clone()), None).await;
    let running = h.start(second.clone()).await;
    eventually(LIMIT, "the same runner finished", || async {
        machines(&h).await == 1
    })
    .await;
    let runners = h.store.runners().await.unwrap();
    assert_eq!(runners.len(), 1, "no second runner");
    assert_eq!(runners[0].item.id, stuck.id);
    assert_eq!(p.created.lock().unwrap().get(&stuck.id), Some(&1));
    assert_eq!(
        h.gitlab.with(|w| w.runners.len()),
        1,
        "one GitLab registration"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_store_make_each_runner_once() {
    let mut h = deployed(true).await;
    let p = Arc::new(Scripted::default());
    let a = h.app(Providers::single(p.clone()), None).await;
    let running_a = h.start(a.clone()).await;
    h.listener = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let b = h.app(Providers::single(p.clone()), None).await;
    let running_b = h.start(b).await;
    let jobs: Vec<u64> = (0..30)
        .map(|i| h.gitlab.add_job(7, &format!("j{i}"), &["docker"]).id)
        .collect();
    // Both instances get every job (a hook to one, a poll or a retry to the other).
    let http = reqwest::Client::new();
    for (n, job) in jobs.iter().enumerate() {
        for (base, copy) in [(running_a.addr, 0), (running_b.addr, 1)] {
            let body = serde_json::json!({"object_kind": "build", "build_id": job, "build_status": "pending", "project_id": 7});
            let r = http
                .post(format!("http://{base}/webhooks/gitlab"))
                .header("X-Gitlab-Token", SECRET)
                .header("X-Gitlab-Event-UUID", format!("{n}-{copy}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    eventually(LIMIT, "30 machines", || async { machines(&h).await == 30 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.store.runners().await.unwrap().len(), 30);
    assert!(p.created.lock().unwrap().values().all(|n| *n == 1));
    running_a.stop().await;
    running_b.stop().await;
}
