//! Ending runners: a busy runner is drained, never killed; removal failures are retried,
//! then forced; two instances asking at once act once; every step has its audit entry.

use async_trait::async_trait;
use gosling_fleet::secrets::Secrets;
use gosling_fleet::*;
use gosling_gitlab::Retry;
use gosling_state::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A provider whose terminate fails the first `fail` times.
#[derive(Default)]
struct Flaky {
    fail: AtomicU32,
    terminated: AtomicU32,
}

#[async_trait]
impl Provider for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        Ok(Handle {
            provider: "flaky".into(),
            id: spec.runner_id.clone(),
            details: Default::default(),
        })
    }
    async fn status(&self, _: &Handle) -> Result<MachineStatus, ProviderError> {
        Ok(MachineStatus::Running)
    }
    async fn terminate(&self, _: &Handle) -> Result<(), ProviderError> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(ProviderError::retryable("flaky", "API throttled"));
        }
        self.terminated.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn StateStore>,
    provider: Arc<Flaky>,
    lifecycle: Lifecycle,
}

async fn world(fail: u32) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::from(
        open_state(
            &format!("sqlite://{}", dir.path().join("s.db").display()),
            &OpenOptions::default(),
        )
        .await
        .unwrap(),
    );
    let provider = Arc::new(Flaky::default());
    provider.fail.store(fail, Ordering::SeqCst);
    let fleet = Fleet::new(store.clone(), system_clock(), "test");
    let cipher = Cipher::from_base64(&Cipher::generate_key()).unwrap();
    let registry = Arc::new(Registry::new(
        Arc::new(Secrets::new(HashMap::new(), None)),
        cipher,
        Retry::default(),
    ));
    let lifecycle = Lifecycle {
        fleet,
        providers: Providers::single(provider.clone()),
        registry,
        policy: TerminationPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            drain_grace: Duration::from_secs(60),
        },
    };
    World {
        _dir: dir,
        store,
        provider,
        lifecycle,
    }
}

async fn add_runner(w: &World, id: &str, state: RunnerState) {
    let mut r = Runner::new(id, "egg", "vm", "aws", "eu-west-1", chrono::Utc::now());
    r.state = state.as_str().into();
    r.machine = Some(
        serde_json::to_value(Handle {
            provider: "flaky".into(),
            id: id.into(),
            details: Default::default(),
        })
        .unwrap(),
    );
    if state != RunnerState::Provisioning {
        r.last_heartbeat = Some(chrono::Utc::now());
    }
    w.lifecycle
        .fleet
        .create(&r, serde_json::json!({}), vec![])
        .await
        .unwrap();
}

async fn state(w: &World, id: &str) -> (RunnerState, Option<String>) {
    let r = w.store.runner(id).await.unwrap().unwrap().item;
    (state_of(&r), r.instruction)
}

async fn actions(w: &World, id: &str) -> Vec<String> {
    w.store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.resource_id == id)
        .map(|a| a.action)
        .collect()
}

#[tokio::test]
async fn a_busy_runner_is_drained_not_killed() {
    let w = world(0).await;
    add_runner(&w, "r-busy", RunnerState::Busy).await;
    let step = w
        .lifecycle
        .request("r-busy", "idle too long", false)
        .await
        .unwrap();
    assert_eq!(step, Step::Draining);
    assert_eq!(
        state(&w, "r-busy").await,
        (RunnerState::Draining, Some("drain".into()))
    );
    // Removing it now is refused: it has not reported that it stopped.
    assert!(w.lifecycle.remove("r-busy", None).await.is_err());
    assert_eq!(w.provider.terminated.load(Ordering::SeqCst), 0);
    // Asking again changes nothing.
    assert_eq!(
        w.lifecycle.request("r-busy", "again", false).await.unwrap(),
        Step::Draining
    );
    assert_eq!(actions(&w, "r-busy").await, ["create", "drain"]);
}

#[tokio::test]
async fn a_runner_that_runs_nothing_is_removed_at_once() {
    let w = world(0).await;
    add_runner(&w, "r-new", RunnerState::Provisioning).await;
    assert_eq!(
        w.lifecycle
            .request("r-new", "job finished", false)
            .await
            .unwrap(),
        Step::Remove
    );
    assert_eq!(
        w.lifecycle.remove("r-new", None).await.unwrap(),
        Step::Terminated
    );
    assert_eq!(state(&w, "r-new").await.0, RunnerState::Terminated);
    assert_eq!(w.provider.terminated.load(Ordering::SeqCst), 1);
    assert_eq!(
        actions(&w, "r-new").await,
        ["create", "terminate", "terminated"]
    );
    // Once more: nothing happens.
    assert_eq!(
        w.lifecycle.request("r-new", "again", false).await.unwrap(),
        Step::Terminated
    );
}

#[tokio::test]
async fn removal_failures_are_retried_with_backoff_then_succeed() {
    let w = world(2).await;
    add_runner(&w, "r-1", RunnerState::Failed).await;
    w.lifecycle.request("r-1", "failed", false).await.unwrap();
    let first = w.lifecycle.remove("r-1", None).await.unwrap();
    assert_eq!(first, Step::RetryAfter(Duration::from_millis(10)));
    assert_eq!(state(&w, "r-1").await.0, RunnerState::PendingTermination);
    let second = w.lifecycle.remove("r-1", None).await.unwrap();
    assert_eq!(second, Step::RetryAfter(Duration::from_millis(20)));
    assert_eq!(
        w.lifecycle.remove("r-1", None).await.unwrap(),
        Step::Terminated
    );
    assert_eq!(
        actions(&w, "r-1").await,
        [
            "create",
            "terminate",
            "terminate_failed",
            "terminate_failed",
            "terminated"
        ]
    );
}

#[tokio::test]
async fn removal_is_forced_after_the_last_attempt_and_operators_are_told() {
    let w = world(100).await;
    add_runner(&w, "r-stuck", RunnerState::Failed).await;
    w.lifecycle
        .request("r-stuck", "failed", false)
        .await
        .unwrap();
    let mut steps = Vec::new();
    for _ in 0..3 {
        steps.push(w.lifecycle.remove("r-stuck", None).await.unwrap());
    }
    assert_eq!(steps.last(), Some(&Step::Forced), "{steps:?}");
    assert_eq!(state(&w, "r-stuck").await.0, RunnerState::Terminated);
    let log = w.store.audit_logs().await.unwrap();
    let forced = log.iter().find(|a| a.action == "terminate_forced").unwrap();
    assert!(forced.details["alert"]
        .as_str()
        .unwrap()
        .contains("may still exist"));
}

#[tokio::test]
async fn a_forced_termination_stops_a_busy_runner_and_says_so() {
    let w = world(0).await;
    add_runner(&w, "r-f", RunnerState::Busy).await;
    assert_eq!(
        w.lifecycle.request("r-f", "operator", true).await.unwrap(),
        Step::Remove
    );
    assert_eq!(
        state(&w, "r-f").await,
        (RunnerState::Terminating, Some("stop".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_asking_at_once_act_once() {
    let w = world(0).await;
    add_runner(&w, "r-2", RunnerState::Idle).await;
    let other = Lifecycle {
        fleet: Fleet::new(w.store.clone(), system_clock(), "other"),
        ..w.lifecycle.clone()
    };
    let (a, b) = tokio::join!(
        w.lifecycle.request("r-2", "a", false),
        other.request("r-2", "b", false)
    );
    assert_eq!((a.unwrap(), b.unwrap()), (Step::Draining, Step::Draining));
    assert_eq!(actions(&w, "r-2").await, ["create", "drain"]);
}
