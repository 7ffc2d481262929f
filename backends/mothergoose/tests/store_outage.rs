//! The state store unavailable for a while (issue 16, "Under faults"): the test holds an
//! exclusive SQLite lock on MotherGoose's state database while GitLab job hooks arrive.
//! The hooks are still acknowledged at once (the webhook path only enqueues, and the queue
//! is its own file); nothing is provisioned while the lock is held; once it is released
//! every job gets exactly one runner and nothing is dead-lettered.

mod support;

use gosling_fleet::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// How long the state database stays locked.
const HOLD: Duration = Duration::from_secs(3);
/// How long GitLab may wait for an answer before we call the hook unacknowledged
/// (GitLab's own limit is 10 s, and it disables hooks that keep timing out).
const ACK_WITHIN: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(30);

/// Egg `a` (serverless, project 7) deployed and MotherGoose running on a counting provider.
async fn started(h: &mut Harness) -> (Arc<Counting>, Arc<mothergoose::App>, mothergoose::Running) {
    h.deploy(&[(
        "Eggs/a.fly".to_string(),
        egg("a", "serverless", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let counting = Arc::new(Counting::default());
    let app = h.app(Providers::single(counting.clone()), None).await;
    let running = h.start(app.clone()).await;
    (counting, app, running)
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

/// Takes SQLite's exclusive lock on the database at `path` (no other connection may read
/// or write until it is committed), as another process holding a long write would.
fn lock_exclusively(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

/// Whether another connection is refused at once (SQLITE_BUSY) on the database.
fn is_locked(path: &std::path::Path) -> bool {
    let probe = rusqlite::Connection::open(path).unwrap();
    probe.busy_timeout(Duration::ZERO).unwrap();
    probe
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_acknowledged_while_the_state_store_is_locked_and_each_job_gets_one_runner_after()
{
    let mut h = Harness::new().await;
    let (counting, app, running) = started(&mut h).await;

    // A first job before the fault: the whole path works.
    let (_, first) = h.gitlab.create_job(7, "before", &["docker"]).await;
    eventually(LIMIT, "the first runner's machine", || async {
        machines(&h).await == 1
    })
    .await;

    let state_db = h.dir.path().join("state.db");
    let lock = lock_exclusively(&state_db);
    let locked_at = Instant::now();
    assert!(
        is_locked(&state_db),
        "the state store is really unavailable"
    );

    // Hooks arrive while the store is locked: each is answered 2xx, quickly.
    let mut deliveries = vec![first];
    for i in 0..5 {
        let sent = Instant::now();
        let (_, delivery) = h
            .gitlab
            .create_job(7, &format!("during-{i}"), &["docker"])
            .await;
        let took = sent.elapsed();
        let answered = h.gitlab.with(|w| w.deliveries.last().cloned()).unwrap().1;
        assert_eq!(answered, "200", "hook {i} acknowledged while locked");
        assert!(
            took < ACK_WITHIN,
            "hook {i} took {took:?} to be acknowledged while the store was locked"
        );
        deliveries.push(delivery);
    }
    assert!(
        locked_at.elapsed() < HOLD,
        "every hook was acknowledged before the store came back"
    );

    // The workers are now waiting on the store: nothing can be provisioned.
    tokio::time::sleep(HOLD.saturating_sub(locked_at.elapsed())).await;
    assert_eq!(counting.made(), 1, "nothing provisioned while locked");
    assert!(
        is_locked(&state_db),
        "still locked until the test releases it"
    );
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);

    // The store is back: every job gets exactly one runner, and nothing is lost.
    eventually(LIMIT, "six runners with machines", || async {
        machines(&h).await == 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runners = h.store.runners().await.unwrap();
    assert_eq!(runners.len(), 6, "no duplicated and no lost runner");
    let made = counting.created.lock().unwrap().clone();
    assert_eq!(made.len(), 6, "one machine per runner");
    assert!(
        made.values().all(|n| *n == 1),
        "no machine made twice: {made:?}"
    );
    let claimed: BTreeSet<String> = h
        .store
        .gitlab_jobs()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| j.item.runner_id)
        .collect();
    assert_eq!(claimed.len(), 6, "every job points at its own runner");
    assert_eq!(
        h.gitlab.with(|w| w.runners.len()),
        6,
        "one GitLab registration per runner"
    );
    for d in &deliveries {
        let event = h.store.webhook_event(d).await.unwrap();
        assert_eq!(
            event.map(|e| e.item.status),
            Some("done".to_string()),
            "delivery {d} processed to the end"
        );
    }
    assert_eq!(
        app.queue.stats().await.unwrap().dead,
        0,
        "nothing dead-lettered"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_a_tasks_retries_dead_letters_nothing() {
    let mut h = Harness::new().await;
    // One delivery per task before it is given up — for anything but an outage.
    h.settings.max_attempts = 1;
    let (_, app, running) = started(&mut h).await;

    let state_db = h.dir.path().join("state.db");
    let lock = lock_exclusively(&state_db);
    let (_, delivery) = h.gitlab.create_job(7, "during", &["docker"]).await;
    // Held past the store's busy timeout (10 s): the task's store calls fail (a task that
    // is dead-lettered instead never counts as waiting for the store).
    eventually(
        Duration::from_secs(60),
        "a task failed on the store",
        || async {
            app.metrics
                .get("mothergoose_tasks_total", "process_webhook:unavailable")
                >= 1
        },
    )
    .await;
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);

    eventually(LIMIT, "the job's runner", || async {
        machines(&h).await == 1
    })
    .await;
    let event = h.store.webhook_event(&delivery).await.unwrap();
    assert_eq!(event.map(|e| e.item.status).as_deref(), Some("done"));
    assert_eq!(
        app.queue.stats().await.unwrap().dead,
        0,
        "nothing dead-lettered"
    );
    running.stop().await;
}
