//! Disk full (issue 16, "Who may do what"): the embedded queue and the embedded state store
//! are written by a child process whose file size is limited (`ulimit -f`, SIGXFSZ ignored,
//! so writes fail with EFBIG instead of killing it). Each reports the failure as a typed
//! error, not a panic; once the limit is gone every row committed before it is readable.
//!
//! The child is this test executable again, running `child_writes_until_the_disk_is_full`
//! with `DISK_FULL_CHILD` set (without it, that test does nothing).

use gosling_queue::{EnqueueOptions, Message, Queue, QueueOptions, SqliteQueue};
use gosling_state::{Expect, SqliteStore, StateError, StateStore, WebhookEvent};
use std::path::Path;
use std::process::Command;

const CHILD: &str = "DISK_FULL_CHILD";
/// The child's file size limit, in 512-byte blocks (`ulimit -f`): 512 KiB.
const LIMIT_BLOCKS: u32 = 1024;
/// A write that never fails would fill this many rows (about 20 MB) before giving up.
const MAX_ROWS: usize = 10_000;

fn padding(i: usize) -> String {
    format!("{i:06}-{}", "x".repeat(2000))
}

fn event(i: usize) -> WebhookEvent {
    WebhookEvent {
        id: format!("delivery-{i}"),
        kind: "build".into(),
        project_id: 7,
        received_at: chrono::Utc::now(),
        status: "done".into(),
        summary: serde_json::json!({ "padding": padding(i) }),
    }
}

fn message(i: usize) -> Message {
    Message {
        kind: "process_webhook".into(),
        body: serde_json::json!({ "n": i, "padding": padding(i) }),
    }
}

/// Runs this executable's child test under the size limit; returns the rows it says it
/// committed before the write that failed, and what that failure said.
fn write_until_full(what: &str, dir: &Path) -> (usize, String) {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f {LIMIT_BLOCKS} && trap '' XFSZ && exec \"$0\" \"$@\""
        ))
        .arg(std::env::current_exe().unwrap())
        .args([
            "child_writes_until_the_disk_is_full",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{what}:{}", dir.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed ({}): {stdout}\n{stderr}",
        out.status
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(name).map(|(_, v)| v))
            .unwrap_or_else(|| panic!("no `{name}` line in: {stdout}\n{stderr}"))
            .to_string()
    };
    let committed = field("committed: ").parse().unwrap();
    (committed, field("failed: "))
}

#[test]
fn child_writes_until_the_disk_is_full() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (what, dir) = spec.split_once(':').unwrap();
    let dir = Path::new(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut committed = 0;
        let error = match what {
            "queue" => {
                let q = SqliteQueue::open(&dir.join("queue.db"), &QueueOptions::default())
                    .expect("the queue opens under the limit");
                loop {
                    match q
                        .enqueue(&message(committed), EnqueueOptions::default())
                        .await
                    {
                        Ok(_) => committed += 1,
                        Err(e) => break format!("{e}"),
                    }
                    assert!(
                        committed < MAX_ROWS,
                        "the size limit never stopped the queue"
                    );
                }
            }
            "store" => {
                let s = SqliteStore::open(&dir.join("state.db"), false)
                    .expect("the store opens under the limit");
                loop {
                    match s.put_webhook_event(&event(committed), Expect::Absent).await {
                        Ok(_) => committed += 1,
                        Err(e @ StateError::Sqlite { .. }) => break format!("{e}"),
                        Err(e) => panic!("an unexpected kind of error: {e:?}"),
                    }
                    assert!(
                        committed < MAX_ROWS,
                        "the size limit never stopped the store"
                    );
                }
            }
            other => panic!("unknown child mode {other}"),
        };
        // libtest prints its own words before ours on the same line: start a new one.
        println!("\ncommitted: {committed}");
        println!("failed: {error}");
    });
}

#[tokio::test]
async fn the_queue_reports_a_full_disk_and_keeps_every_committed_message() {
    let dir = tempfile::tempdir().unwrap();
    let (committed, error) = write_until_full("queue", dir.path());
    assert!(committed > 0, "some messages fit before the limit");
    assert!(error.contains("queue"), "a queue error: {error}");

    let q = SqliteQueue::open(&dir.path().join("queue.db"), &QueueOptions::default()).unwrap();
    assert_eq!(q.stats().await.unwrap().ready, committed as u64);
    let leases = q
        .lease(
            committed + 1,
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let mut got: Vec<Message> = leases.into_iter().map(|l| l.message).collect();
    got.sort_by_key(|m| m.body["n"].as_u64());
    let want: Vec<Message> = (0..committed).map(message).collect();
    assert!(got == want, "every committed message, intact");
    // And the queue works again.
    q.enqueue(&message(committed), EnqueueOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_store_reports_a_full_disk_and_keeps_every_committed_row() {
    let dir = tempfile::tempdir().unwrap();
    let (committed, error) = write_until_full("store", dir.path());
    assert!(committed > 0, "some rows fit before the limit");
    assert!(error.contains("embedded store"), "a store error: {error}");

    let s = SqliteStore::open(&dir.path().join("state.db"), false).unwrap();
    for i in 0..committed {
        let got = s.webhook_event(&format!("delivery-{i}")).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("row {i} of {committed} lost"));
        assert_eq!(got.item.summary["padding"], padding(i), "row {i} intact");
    }
    assert!(
        s.webhook_event(&format!("delivery-{committed}"))
            .await
            .unwrap()
            .is_none(),
        "the failed write left nothing behind"
    );
    s.put_webhook_event(&event(committed), Expect::Absent)
        .await
        .unwrap();
}
