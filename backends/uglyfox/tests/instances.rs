//! Failure injection: the store returning conflicts (another writer got there first) and
//! two UglyFox instances over one store — every action happens once.

mod common;

use async_trait::async_trait;
use chrono::Duration as D;
use common::*;
use gosling_fleet::RunnerState as S;
use gosling_state::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use uglyfox::Kind;

/// A store whose next `bumps` runner writes find the runner changed underneath them:
/// just before each, the runner is written again by "someone else" (a heartbeat, with
/// `touch` applied), so the write gets a conflict and must be decided again on fresh data.
struct Meddling {
    inner: Arc<dyn StateStore>,
    bumps: AtomicU32,
    touch: fn(&mut Runner),
}

#[async_trait]
impl StateStore for Meddling {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get_item(&self, t: Table, pk: &str, sk: Option<&str>) -> Result<Option<Item>> {
        self.inner.get_item(t, pk, sk).await
    }
    async fn scan(&self, t: Table) -> Result<Vec<Item>> {
        self.inner.scan(t).await
    }
    async fn query(&self, t: Table, pk: &str) -> Result<Vec<Item>> {
        self.inner.query(t, pk).await
    }
    async fn query_index(&self, t: Table, a: &str, v: &str) -> Result<Vec<Item>> {
        self.inner.query_index(t, a, v).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        let runner = writes.iter().find_map(|w| match w {
            Write::Put {
                table: Table::Runners,
                doc,
                ..
            } => doc.get("id").and_then(|v| v.as_str()).map(String::from),
            _ => None,
        });
        if let Some(id) = runner {
            if self
                .bumps
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                .is_ok()
            {
                let v = self.inner.runner(&id).await?.unwrap();
                let mut r = v.item;
                (self.touch)(&mut r);
                self.inner
                    .put_runner(&r, Expect::Version(v.version))
                    .await?;
            }
        }
        self.inner.transact(writes).await
    }
}

#[tokio::test]
async fn conflicts_are_decided_again_on_fresh_data_and_never_act_twice() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    w.runner("a1", "app", S::Idle, D::hours(2), |r| {
        r.state_since = Some(t0() - D::hours(1))
    })
    .await;
    w.runner("a2", "app", S::Idle, D::hours(2), |r| {
        r.state_since = Some(t0() - D::hours(1))
    })
    .await;
    w.runner("quiet", "app", S::Busy, D::hours(2), |r| {
        r.last_heartbeat = Some(t0() - D::minutes(10))
    })
    .await;
    // Someone else writes each runner once more just before UglyFox does (changing nothing
    // that matters): the edits are retried on fresh data and done once.
    let store: Arc<dyn StateStore> = Arc::new(Meddling {
        inner: w.store.clone(),
        bumps: AtomicU32::new(3),
        touch: |r| r.updated_at += D::milliseconds(1),
    });
    let fox = fox(
        store,
        w.queue.clone(),
        Arc::new(w.clock.clone()),
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    );
    let (plan, report) = fox.pass(Some(&ir)).await.unwrap();
    assert_eq!(report.done(), plan.decisions.len(), "{report:?}");
    assert_eq!(w.actions("a1").await.len() + w.actions("a2").await.len(), 2);
    assert_eq!(w.actions("quiet").await, ["mark_failed"]);
    let q = w.get("quiet").await;
    assert_eq!(
        (q.state.as_str(), q.failure_count),
        ("failed", 1),
        "counted once"
    );

    // A heartbeat arriving between the snapshot and the write: the runner is alive after
    // all, and is not marked failed.
    w.runner("late", "app", S::Idle, D::hours(2), |r| {
        r.last_heartbeat = Some(t0() - D::minutes(10))
    })
    .await;
    let store: Arc<dyn StateStore> = Arc::new(Meddling {
        inner: w.store.clone(),
        bumps: AtomicU32::new(1),
        touch: |r| r.last_heartbeat = Some(t0()),
    });
    let fox = fox_over(&w, store);
    let (plan, report) = fox.pass(Some(&ir)).await.unwrap();
    let n = plan
        .decisions
        .iter()
        .position(|d| d.runner.as_deref() == Some("late"))
        .unwrap();
    assert_eq!(plan.decisions[n].kind, Kind::MarkFailed);
    assert!(
        matches!(report.outcomes[n], uglyfox::Outcome::Skipped(_)),
        "{report:?}"
    );
    let late = w.get("late").await;
    assert_eq!((late.state.as_str(), late.failure_count), ("idle", 0));
    assert!(w.actions("late").await.is_empty());
}

fn fox_over(w: &World, store: Arc<dyn StateStore>) -> uglyfox::UglyFox {
    fox(
        store,
        w.queue.clone(),
        Arc::new(w.clock.clone()),
        Arc::new(FakeProvider::default()),
        Arc::new(Recorder::default()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_store_act_once() {
    let w = World::new().await;
    let ir = nest();
    w.deploy(&ir).await;
    let provider = Arc::new(FakeProvider::default());
    // Something for every kind of action.
    w.runner("quiet", "app", S::Idle, D::hours(2), |r| {
        r.last_heartbeat = Some(t0() - D::minutes(10))
    })
    .await;
    w.runner("bad", "app", S::Failed, D::hours(2), |r| {
        r.failure_count = 7
    })
    .await;
    w.runner("old", "app", S::Busy, D::hours(30), |_| {}).await;
    for id in ["i1", "i2", "i3"] {
        w.runner(id, "app", S::Idle, D::hours(2), |r| {
            r.state_since = Some(t0() - D::hours(1))
        })
        .await;
    }
    // "web" has no runner: its min_count (1) asks for one.
    for round in 0..3 {
        let [a, b] = [0, 1].map(|_| {
            fox(
                w.store.clone(),
                w.queue.clone(),
                Arc::new(w.clock.clone()),
                provider.clone(),
                Arc::new(Recorder::default()),
            )
        });
        let (x, y) = tokio::join!(a.pass(Some(&ir)), b.pass(Some(&ir)));
        x.unwrap();
        y.unwrap();
        if round == 0 {
            w.clock.advance(D::seconds(30));
            w.heartbeat_all().await;
        }
    }
    let all = w.store.audit_logs().await.unwrap();
    let count = |id: &str, action: &str| {
        all.iter()
            .filter(|a| a.resource_id == id && a.action == action && a.actor == "uglyfox")
            .count()
    };
    assert_eq!(count("quiet", "mark_failed"), 1);
    assert_eq!(count("bad", "terminate"), 1);
    assert_eq!(count("bad", "terminated"), 1);
    assert_eq!(count("old", "drain"), 1);
    assert_eq!(
        count("web", "request_runner"),
        1,
        "one runner requested, not two"
    );
    assert_eq!(
        count("i1", "demote") + count("i2", "demote") + count("i3", "demote"),
        2
    );
    assert_eq!(*provider.terminated.lock().unwrap(), ["bad"]);
    let leases = w
        .queue
        .lease(
            10,
            std::time::Duration::from_secs(30),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(leases.len(), 1, "one DeployRunner task");
}
