//! The embedded queue: one SQLite file in WAL mode, owned by one thread that commits
//! whatever requests are waiting in one transaction (group commit), so many webhook
//! deliveries share a commit. Committed messages survive `kill -9` of the process;
//! several processes may share the file (SQLite's locks order them).

use crate::{
    DeadLetter, EnqueueOptions, Enqueued, Lease, Message, Queue, QueueError, QueueOptions,
    QueueStats, Result,
};
use async_trait::async_trait;
use gosling_state::SharedClock;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Most requests committed together.
const BATCH: usize = 512;
/// How often a waiting `lease` looks again for messages other processes queued.
const POLL: Duration = Duration::from_millis(200);

enum Op {
    Enqueue(Message, EnqueueOptions),
    Lease(usize, Duration),
    Ack(Lease),
    Extend(Lease, Duration),
    Retry(Lease, Duration, String),
    DeadLetter(Lease, String),
    Release(Lease),
    Stats,
    DeadLetters(usize),
}

enum Answer {
    Enqueued(Enqueued),
    Leases(Vec<Lease>),
    Acked(bool),
    Done,
    Stats(QueueStats),
    Dead(Vec<DeadLetter>),
}

type Request = (Op, oneshot::Sender<Result<Answer>>);

/// The embedded durable queue.
pub struct SqliteQueue {
    requests: mpsc::Sender<Request>,
    path: PathBuf,
    arrived: Arc<Notify>,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteQueue({})", self.path.display())
    }
}

struct Worker {
    conn: Connection,
    path: PathBuf,
    clock: SharedClock,
    retention_ms: i64,
    commits: u64,
}

impl SqliteQueue {
    /// Opens (creating it and its folder) the queue at `path`.
    pub fn open(path: &Path, options: &QueueOptions) -> Result<SqliteQueue> {
        let err = |source| QueueError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| QueueError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let (tx, rx) = mpsc::channel::<Request>();
        let mut worker = Worker {
            conn,
            path: path.to_path_buf(),
            clock: options.clock.clone(),
            retention_ms: options.dedup_retention.as_millis() as i64,
            commits: 0,
        };
        std::thread::Builder::new()
            .name("gosling-queue".into())
            .spawn(move || worker.run(rx))
            .map_err(|source| QueueError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(SqliteQueue {
            requests: tx,
            path: path.to_path_buf(),
            arrived: Arc::new(Notify::new()),
        })
    }

    async fn ask(&self, op: Op) -> Result<Answer> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((op, tx))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  dedup TEXT UNIQUE,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  enqueued_ms INTEGER NOT NULL,
  visible_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  receipt TEXT,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (visible_ms, id);
CREATE TABLE IF NOT EXISTS dead (
  id INTEGER PRIMARY KEY,
  dedup TEXT,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  failed_ms INTEGER NOT NULL,
  error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (dedup TEXT PRIMARY KEY, acked_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_acked ON seen (acked_ms);
";

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn err(&self, source: rusqlite::Error) -> QueueError {
        QueueError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Runs a batch in one transaction; if the transaction itself fails, every request
    /// of the batch gets the error (none of them took effect).
    fn commit(&mut self, batch: Vec<Request>) {
        let now = self.clock.now_ms();
        let retention = self.retention_ms;
        self.commits += 1;
        let purge = self.commits % 1024 == 1;
        let path = self.path.display().to_string();
        // IMMEDIATE: take the write lock at the start (waiting on other processes through
        // the busy timeout) rather than failing when a read has to become a write.
        let tx = match self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(QueueError::Remote {
                        queue: path.clone(),
                        operation: "begin",
                        message: msg.clone(),
                    }));
                }
                return;
            }
        };
        let mut answers = Vec::with_capacity(batch.len());
        for (op, reply) in batch {
            let a = apply(&tx, op, now, retention).map_err(|source| QueueError::Sqlite {
                path: path.clone(),
                source,
            });
            answers.push((a, reply));
        }
        if purge {
            let _ = tx.execute(
                "DELETE FROM seen WHERE acked_ms < ?1",
                params![now - retention],
            );
        }
        match tx.commit() {
            Ok(()) => {
                for (a, reply) in answers {
                    let _ = reply.send(a);
                }
            }
            Err(e) => {
                let e = self.err(e);
                let msg = e.to_string();
                for (_, reply) in answers {
                    let _ = reply.send(Err(QueueError::Remote {
                        queue: path.clone(),
                        operation: "commit",
                        message: msg.clone(),
                    }));
                }
            }
        }
    }
}

fn receipt() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn apply(tx: &Transaction<'_>, op: Op, now: i64, retention: i64) -> rusqlite::Result<Answer> {
    match op {
        Op::Enqueue(m, o) => {
            if let Some(key) = &o.dedup_key {
                let seen: Option<i64> = tx
                    .prepare_cached("SELECT acked_ms FROM seen WHERE dedup = ?1")?
                    .query_row(params![key], |r| r.get(0))
                    .optional()?;
                if seen.is_some_and(|t| t >= now - retention) {
                    return Ok(Answer::Enqueued(Enqueued::Duplicate));
                }
            }
            let body = m.body.to_string();
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO messages (dedup, kind, body, enqueued_ms, visible_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    o.dedup_key,
                    m.kind,
                    body,
                    now,
                    now + o.delay.as_millis() as i64
                ])?;
            Ok(Answer::Enqueued(if n == 0 {
                Enqueued::Duplicate
            } else {
                Enqueued::New(tx.last_insert_rowid().to_string())
            }))
        }
        Op::Lease(max, visibility) => {
            let rows: Vec<(i64, String, String, u32)> = tx
                .prepare_cached(
                    "SELECT id, kind, body, attempts FROM messages WHERE visible_ms <= ?1 \
                     ORDER BY visible_ms, id LIMIT ?2",
                )?
                .query_map(params![now, max as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (id, kind, body, attempts) in rows {
                let r = receipt();
                tx.prepare_cached(
                    "UPDATE messages SET visible_ms = ?1, receipt = ?2, attempts = attempts + 1 \
                     WHERE id = ?3",
                )?
                .execute(params![now + visibility.as_millis() as i64, r, id])?;
                let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                out.push(Lease {
                    id: id.to_string(),
                    receipt: r,
                    attempts: attempts + 1,
                    message: Message { kind, body },
                });
            }
            Ok(Answer::Leases(out))
        }
        Op::Ack(l) => {
            let dedup: Option<Option<String>> = tx
                .prepare_cached("SELECT dedup FROM messages WHERE id = ?1 AND receipt = ?2")?
                .query_row(params![l.id, l.receipt], |r| r.get(0))
                .optional()?;
            let Some(dedup) = dedup else {
                return Ok(Answer::Acked(false));
            };
            tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                .execute(params![l.id])?;
            if let Some(key) = dedup {
                tx.prepare_cached("INSERT OR REPLACE INTO seen (dedup, acked_ms) VALUES (?1, ?2)")?
                    .execute(params![key, now])?;
            }
            Ok(Answer::Acked(true))
        }
        Op::Extend(l, visibility) => {
            let n = tx
                .prepare_cached(
                    "UPDATE messages SET visible_ms = ?1 WHERE id = ?2 AND receipt = ?3",
                )?
                .execute(params![
                    now + visibility.as_millis() as i64,
                    l.id,
                    l.receipt
                ])?;
            Ok(Answer::Acked(n > 0))
        }
        Op::Retry(l, delay, error) => {
            tx.prepare_cached(
                "UPDATE messages SET visible_ms = ?1, receipt = NULL, last_error = ?2 \
                 WHERE id = ?3 AND receipt = ?4",
            )?
            .execute(params![
                now + delay.as_millis() as i64,
                error,
                l.id,
                l.receipt
            ])?;
            Ok(Answer::Done)
        }
        Op::DeadLetter(l, error) => {
            let n = tx
                .prepare_cached(
                    "INSERT INTO dead (id, dedup, kind, body, attempts, failed_ms, error) \
                     SELECT id, dedup, kind, body, attempts, ?1, ?2 FROM messages \
                     WHERE id = ?3 AND receipt = ?4",
                )?
                .execute(params![now, error, l.id, l.receipt])?;
            if n > 0 {
                tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?
                    .execute(params![l.id])?;
            }
            Ok(Answer::Done)
        }
        Op::Release(l) => {
            tx.prepare_cached(
                "UPDATE messages SET visible_ms = ?1, receipt = NULL, \
                 attempts = MAX(attempts - 1, 0) WHERE id = ?2 AND receipt = ?3",
            )?
            .execute(params![now, l.id, l.receipt])?;
            Ok(Answer::Done)
        }
        Op::Stats => {
            let (ready, in_flight): (i64, i64) = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(visible_ms <= ?1), 0), COALESCE(SUM(visible_ms > ?1), 0) \
                     FROM messages",
                )?
                .query_row(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let dead: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM dead")?
                .query_row([], |r| r.get(0))?;
            Ok(Answer::Stats(QueueStats {
                ready: ready as u64,
                in_flight: in_flight as u64,
                dead: dead as u64,
            }))
        }
        Op::DeadLetters(limit) => {
            let mut rows: Vec<DeadLetter> = tx
                .prepare_cached(
                    "SELECT id, kind, body, attempts, error FROM dead ORDER BY failed_ms DESC, id DESC LIMIT ?1",
                )?
                .query_map(params![limit as i64], |r| {
                    let body: String = r.get(2)?;
                    Ok(DeadLetter {
                        id: r.get::<_, i64>(0)?.to_string(),
                        message: Message {
                            kind: r.get(1)?,
                            body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                        },
                        attempts: r.get(3)?,
                        error: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            rows.reverse();
            Ok(Answer::Dead(rows))
        }
    }
}

fn unexpected() -> QueueError {
    QueueError::Closed
}

#[async_trait]
impl Queue for SqliteQueue {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn enqueue(&self, message: &Message, options: EnqueueOptions) -> Result<Enqueued> {
        let delayed = !options.delay.is_zero();
        match self.ask(Op::Enqueue(message.clone(), options)).await? {
            Answer::Enqueued(e) => {
                if !delayed && matches!(e, Enqueued::New(_)) {
                    self.arrived.notify_waiters();
                }
                Ok(e)
            }
            _ => Err(unexpected()),
        }
    }

    async fn lease(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Lease>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            match self.ask(Op::Lease(max.max(1), visibility)).await? {
                Answer::Leases(l) if !l.is_empty() => return Ok(l),
                Answer::Leases(_) => {}
                _ => return Err(unexpected()),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, arrived).await;
        }
    }

    async fn ack(&self, lease: &Lease) -> Result<bool> {
        match self.ask(Op::Ack(lease.clone())).await? {
            Answer::Acked(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<bool> {
        match self.ask(Op::Extend(lease.clone(), visibility)).await? {
            Answer::Acked(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn retry(&self, lease: &Lease, delay: Duration, error: &str) -> Result<()> {
        self.ask(Op::Retry(lease.clone(), delay, error.to_string()))
            .await
            .map(|_| ())
    }

    async fn dead_letter(&self, lease: &Lease, error: &str) -> Result<()> {
        self.ask(Op::DeadLetter(lease.clone(), error.to_string()))
            .await
            .map(|_| ())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.ask(Op::Release(lease.clone())).await?;
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        match self.ask(Op::Stats).await? {
            Answer::Stats(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        match self.ask(Op::DeadLetters(limit)).await? {
            Answer::Dead(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }
}
