//! The queue contract, run on the embedded queue and on SQS (moto): at-least-once delivery
//! with leases, deduplication, retries with delay, dead letters, releases; and the
//! embedded queue's durability across `kill -9`.

use gosling_queue::*;
use gosling_state::{ManualClock, SharedClock};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn msg(n: u32) -> Message {
    Message {
        kind: "deploy_runner".into(),
        body: json!({ "job": format!("j{n}") }),
    }
}

fn dedup(key: &str) -> EnqueueOptions {
    EnqueueOptions {
        dedup_key: Some(key.into()),
        delay: Duration::ZERO,
    }
}

const SHORT: Duration = Duration::from_millis(0);

/// An embedded queue in `dir` on a clock the test moves.
fn clocked(dir: &std::path::Path) -> (SqliteQueue, ManualClock) {
    let clock = ManualClock::new(chrono::Utc::now());
    let opts = QueueOptions {
        clock: Arc::new(clock.clone()) as SharedClock,
        ..QueueOptions::default()
    };
    (SqliteQueue::open(&dir.join("q.db"), &opts).unwrap(), clock)
}

/// What every queue does, whatever it is.
async fn basic_contract(q: &dyn Queue) {
    // Enqueue, lease, ack.
    let id = q.enqueue(&msg(1), dedup("a")).await.unwrap();
    assert!(matches!(id, Enqueued::New(_)));
    let leases = q
        .lease(10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(leases.len(), 1);
    let l = &leases[0];
    assert_eq!(l.message, msg(1));
    assert_eq!(l.attempts, 1);
    // Leased: nobody else gets it.
    assert!(q
        .lease(10, Duration::from_secs(30), SHORT)
        .await
        .unwrap()
        .is_empty());
    // Extended: still hidden, still ours.
    assert!(q.extend(l, Duration::from_secs(30)).await.unwrap());
    assert!(q
        .lease(10, Duration::from_secs(30), SHORT)
        .await
        .unwrap()
        .is_empty());
    assert!(q.ack(l).await.unwrap());

    // Retry: delivered again with the attempt counted.
    q.enqueue(&msg(2), EnqueueOptions::default()).await.unwrap();
    let l = q
        .lease(1, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .unwrap()
        .remove(0);
    q.retry(&l, Duration::ZERO, "boom").await.unwrap();
    let again = q
        .lease(1, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message, msg(2));
    assert_eq!(again[0].attempts, 2, "the retry is a second delivery");

    // Dead letter: gone from the queue, kept aside with its error.
    q.dead_letter(&again[0], "gave up after 2 attempts")
        .await
        .unwrap();
    assert!(q
        .lease(10, Duration::from_secs(30), SHORT)
        .await
        .unwrap()
        .is_empty());
    let dead = q.dead_letters(10).await.unwrap();
    assert!(
        dead.iter()
            .any(|d| d.message == msg(2) && d.error.contains("gave up")),
        "{dead:?}"
    );
}

#[tokio::test]
async fn the_embedded_queue_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(&dir.path().join("q.db"), &QueueOptions::default()).unwrap();
    basic_contract(&q).await;
}

#[tokio::test]
async fn the_embedded_queue_deduplicates_while_queued_and_after_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(&dir.path().join("q.db"), &QueueOptions::default()).unwrap();
    assert!(matches!(
        q.enqueue(&msg(1), dedup("k")).await.unwrap(),
        Enqueued::New(_)
    ));
    assert_eq!(
        q.enqueue(&msg(1), dedup("k")).await.unwrap(),
        Enqueued::Duplicate
    );
    let l = q.lease(10, Duration::from_secs(30), SHORT).await.unwrap();
    assert_eq!(l.len(), 1);
    assert!(q.ack(&l[0]).await.unwrap());
    assert_eq!(
        q.enqueue(&msg(1), dedup("k")).await.unwrap(),
        Enqueued::Duplicate,
        "a replay after delivery is still a duplicate"
    );
    assert!(matches!(
        q.enqueue(&msg(1), dedup("other")).await.unwrap(),
        Enqueued::New(_)
    ));
}

#[tokio::test]
async fn an_expired_lease_is_delivered_again_and_the_old_holder_cannot_ack() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = clocked(dir.path());
    q.enqueue(&msg(7), EnqueueOptions::default()).await.unwrap();
    let first = q
        .lease(1, Duration::from_secs(60), SHORT)
        .await
        .unwrap()
        .remove(0);
    clock.advance(chrono::Duration::seconds(59));
    assert!(q
        .lease(1, Duration::from_secs(60), SHORT)
        .await
        .unwrap()
        .is_empty());
    clock.advance(chrono::Duration::seconds(2));
    let second = q
        .lease(1, Duration::from_secs(60), SHORT)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(second.message, msg(7));
    assert_eq!(second.attempts, 2);
    assert!(
        !q.ack(&first).await.unwrap(),
        "the expired lease is no proof any more"
    );
    assert!(q.ack(&second).await.unwrap());
    assert_eq!(q.stats().await.unwrap(), QueueStats::default());
}

#[tokio::test]
async fn an_extended_lease_stays_hidden_until_its_holder_stops_extending_it() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = clocked(dir.path());
    q.enqueue(&msg(8), EnqueueOptions::default()).await.unwrap();
    let lease = Duration::from_secs(10);
    let held = q.lease(1, lease, SHORT).await.unwrap().remove(0);
    // Kept alive well past the first lease.
    for _ in 0..5 {
        clock.advance(chrono::Duration::seconds(7));
        assert!(q.extend(&held, lease).await.unwrap());
        assert!(q.lease(1, lease, SHORT).await.unwrap().is_empty());
    }
    // Its holder dies: delivered again one lease later, not before.
    clock.advance(chrono::Duration::seconds(9));
    assert!(q.lease(1, lease, SHORT).await.unwrap().is_empty());
    clock.advance(chrono::Duration::seconds(2));
    let next = q.lease(1, lease, SHORT).await.unwrap().remove(0);
    assert_eq!(next.message, msg(8));
    assert!(
        !q.extend(&held, lease).await.unwrap(),
        "the old holder's lease is gone"
    );
    assert!(q.ack(&next).await.unwrap());
}

#[tokio::test]
async fn delays_release_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (q, clock) = clocked(dir.path());
    q.enqueue(
        &msg(1),
        EnqueueOptions {
            dedup_key: None,
            delay: Duration::from_secs(30),
        },
    )
    .await
    .unwrap();
    q.enqueue(&msg(2), EnqueueOptions::default()).await.unwrap();
    assert_eq!(
        q.stats().await.unwrap(),
        QueueStats {
            ready: 1,
            in_flight: 1,
            dead: 0
        }
    );
    let l = q.lease(10, Duration::from_secs(60), SHORT).await.unwrap();
    assert_eq!(l.len(), 1, "the delayed one is not visible yet");
    q.release(&l[0]).await.unwrap();
    let again = q.lease(10, Duration::from_secs(60), SHORT).await.unwrap();
    assert_eq!(again[0].attempts, 1, "a release is not an attempt");
    clock.advance(chrono::Duration::seconds(31));
    let later = q.lease(10, Duration::from_secs(60), SHORT).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].message, msg(1));
}

#[tokio::test]
async fn a_waiting_lease_wakes_when_a_message_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(SqliteQueue::open(&dir.path().join("q.db"), &QueueOptions::default()).unwrap());
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            q.lease(1, Duration::from_secs(30), Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = std::time::Instant::now();
    q.enqueue(&msg(3), EnqueueOptions::default()).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "woken, not timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q =
        Arc::new(SqliteQueue::open(&dir.path().join("q.db"), &QueueOptions::default()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let q = q.clone();
        // Every job is sent twice: the second is a duplicate.
        tasks.push(tokio::spawn(async move {
            let a = q
                .enqueue(&msg(i), dedup(&format!("j{}", i / 2)))
                .await
                .unwrap();
            matches!(a, Enqueued::New(_))
        }));
    }
    let mut new = 0;
    for t in tasks {
        new += t.await.unwrap() as u32;
    }
    assert_eq!(new, 200);
    assert_eq!(q.stats().await.unwrap().ready, 200);
}

/// The child half of the kill test: enqueue, report, then wait to be killed.
#[test]
fn child_enqueues_then_waits_to_be_killed() {
    let Ok(path) = std::env::var("GOSLING_QUEUE_KILL_TEST") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let q = SqliteQueue::open(std::path::Path::new(&path), &QueueOptions::default()).unwrap();
        for i in 0..50 {
            q.enqueue(&msg(i), dedup(&format!("k{i}"))).await.unwrap();
        }
        let l = q.lease(5, Duration::from_secs(3600), SHORT).await.unwrap();
        assert_eq!(l.len(), 5);
        println!("ENQUEUED");
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

#[test]
fn committed_messages_survive_kill_9_and_leases_come_back() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_enqueues_then_waits_to_be_killed",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GOSLING_QUEUE_KILL_TEST", &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines.next().expect("the child said nothing").unwrap();
        if line.contains("ENQUEUED") {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no goodbye.
    unsafe { libc_kill(child.id() as i32, 9) };
    child.wait().unwrap();

    let clock = ManualClock::new(chrono::Utc::now());
    let opts = QueueOptions {
        clock: Arc::new(clock.clone()) as SharedClock,
        ..QueueOptions::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let q = SqliteQueue::open(&path, &opts).unwrap();
        let s = q.stats().await.unwrap();
        assert_eq!(
            s.ready + s.in_flight,
            50,
            "every committed message is there: {s:?}"
        );
        assert_eq!(s.in_flight, 5, "the dead process's leases are still out");
        // Once their visibility timeout passes, the leased ones are delivered again.
        clock.advance(chrono::Duration::seconds(3601));
        let all = q.lease(100, Duration::from_secs(60), SHORT).await.unwrap();
        assert_eq!(all.len(), 50);
        assert_eq!(all.iter().filter(|l| l.attempts == 2).count(), 5);
        assert_eq!(
            q.enqueue(&msg(0), dedup("k0")).await.unwrap(),
            Enqueued::Duplicate
        );
    });
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_on_moto_keeps_the_contract() {
    let moto = gosling_standins::Moto::start();
    let opts = QueueOptions {
        credentials: Some(gosling_standins::Moto::credentials()),
        ..QueueOptions::default()
    };
    let url = format!(
        "sqs://gosling-tasks?region=us-east-1&endpoint={}",
        moto.endpoint
    );
    let q = open_queue(&url, &opts).await.unwrap();
    assert_eq!(q.describe(), "sqs://gosling-tasks");
    basic_contract(&*q).await;
    // A FIFO queue drops a duplicate within SQS's deduplication window.
    let fifo = open_queue(
        &format!(
            "sqs://gosling-tasks.fifo?region=us-east-1&endpoint={}",
            moto.endpoint
        ),
        &opts,
    )
    .await
    .unwrap();
    fifo.enqueue(&msg(1), dedup("same")).await.unwrap();
    fifo.enqueue(&msg(1), dedup("same")).await.unwrap();
    let got = fifo
        .lease(10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(open_queue("sqs://a/b?region=x", &opts).await.is_err());
    assert!(open_queue("sqs://q?colour=blue", &opts).await.is_err());
}
