//! The task queue between MotherGoose's webhook endpoint, its workers and UglyFox.
//!
//! Delivery is at least once: a consumer [leases](Queue::lease) messages for a visibility
//! timeout, then [acks](Queue::ack) them, [retries](Queue::retry) them after a delay, or
//! [dead-letters](Queue::dead_letter) them; a lease that is neither (the consumer died)
//! expires and the message is delivered again. Consumers are therefore idempotent.
//!
//! Adapters by URL ([`open_queue`]): the embedded durable queue ([`SqliteQueue`], a SQLite
//! file in WAL mode; survives `kill -9`) and SQS or Yandex Message Queue ([`SqsQueue`]).
#![warn(missing_docs)]

mod sqlite;
mod sqs;

pub use sqlite::SqliteQueue;
pub use sqs::SqsQueue;

use async_trait::async_trait;
use gosling_state::{AwsCredentials, SharedClock};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The embedded queue's database failed.
    #[error("queue {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A file system error.
    #[error("queue {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The remote queue service failed.
    #[error("queue {queue}: {operation} failed: {message}")]
    Remote {
        /// The queue.
        queue: String,
        /// The operation.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The URL names no queue this build knows.
    #[error("bad queue URL `{url}`: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The queue's worker thread is gone (the process is shutting down).
    #[error("the queue is closed")]
    Closed,
    /// A message body is not valid JSON for its kind.
    #[error("message {kind}: {message}")]
    Body {
        /// The message kind.
        kind: String,
        /// serde's words.
        message: String,
    },
}

/// The result of queue operations.
pub type Result<T> = std::result::Result<T, QueueError>;

/// A message: a task kind and its JSON body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// What to do (`process_webhook`, `deploy_runner`, …).
    pub kind: String,
    /// Its arguments.
    pub body: serde_json::Value,
}

/// How to enqueue.
#[derive(Clone, Debug, Default)]
pub struct EnqueueOptions {
    /// Messages with the same key are delivered once (while the first is queued, and for
    /// the queue's retention after it was acked); `None`: no deduplication.
    pub dedup_key: Option<String>,
    /// Delivered no earlier than this from now.
    pub delay: Duration,
}

/// What `enqueue` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued, with this id.
    New(String),
    /// A message with the same deduplication key is queued or was delivered: dropped.
    Duplicate,
}

/// A leased message: only its holder may ack, retry or dead-letter it until the lease
/// expires.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The message id.
    pub id: String,
    /// Proof of this lease (a receipt handle).
    pub receipt: String,
    /// Deliveries so far, this one included (1 on the first delivery).
    pub attempts: u32,
    /// The message.
    pub message: Message,
}

/// Counts for `/metrics` and status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Ready to be leased.
    pub ready: u64,
    /// Leased or delayed (not visible now).
    pub in_flight: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// A dead-lettered message (for operators).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message id.
    pub id: String,
    /// The message.
    pub message: Message,
    /// Deliveries it had.
    pub attempts: u32,
    /// The last error.
    pub error: String,
}

/// A durable, at-least-once task queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Where the queue is, for messages.
    fn describe(&self) -> String;

    /// Queues a message.
    async fn enqueue(&self, message: &Message, options: EnqueueOptions) -> Result<Enqueued>;

    /// Leases up to `max` visible messages for `visibility`, waiting up to `wait` for one
    /// to arrive when none is ready (an empty answer after `wait` is normal).
    async fn lease(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Lease>>;

    /// Done: the message is removed. `false` when the lease had expired and the message was
    /// leased again (another delivery will happen; the work is idempotent).
    async fn ack(&self, lease: &Lease) -> Result<bool>;

    /// Still working on it: the message stays hidden for `visibility` from now. A consumer
    /// keeps a short lease alive this way, so a message whose consumer died is delivered
    /// again soon. `false` when the lease had already expired and been given to another.
    async fn extend(&self, lease: &Lease, visibility: Duration) -> Result<bool>;

    /// Failed this time: delivered again after `delay`.
    async fn retry(&self, lease: &Lease, delay: Duration, error: &str) -> Result<()>;

    /// Failed for good: moved to the dead-letter queue.
    async fn dead_letter(&self, lease: &Lease, error: &str) -> Result<()>;

    /// Not processed (shutting down): visible again now, without counting an attempt.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Message counts.
    async fn stats(&self) -> Result<QueueStats>;

    /// The dead-lettered messages (newest last, at most `limit`).
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;
}

/// How to open a queue.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// The clock the embedded queue reads (visibility, delays).
    pub clock: SharedClock,
    /// Credentials for `sqs://` (else the AWS default chain).
    pub credentials: Option<AwsCredentials>,
    /// How long a delivered deduplication key is remembered.
    pub dedup_retention: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            clock: gosling_state::system_clock(),
            credentials: None,
            dedup_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Opens the queue a URL names:
///
/// - `sqlite://PATH` or a plain path: the embedded queue (created when missing);
/// - `sqs://NAME?region=R[&endpoint=URL]`: an SQS queue (created when missing, with a
///   dead-letter queue `NAME-dead`), or Yandex Message Queue with
///   `endpoint=https://message-queue.api.cloud.yandex.net&region=ru-central1`.
pub async fn open_queue(url: &str, options: &QueueOptions) -> Result<Box<dyn Queue>> {
    if let Some(rest) = url.strip_prefix("sqs://") {
        return Ok(Box::new(SqsQueue::open(url, rest, options).await?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("sqlite://") {
        return Err(QueueError::BadUrl {
            url: url.into(),
            reason: "expected sqlite://PATH, a path, or sqs://NAME?region=…".into(),
        });
    }
    Ok(Box::new(SqliteQueue::open(
        std::path::Path::new(path),
        options,
    )?))
}

/// The delay before retry `attempt` (1-based): `base` doubled each time, at most `max`,
/// with up to 20 % jitter so retries of many messages spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(max);
    let jitter = rand::random::<f64>() * 0.2;
    d.mul_f64(1.0 - jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (40, 60)] {
            let d = backoff(attempt, base, max);
            let full = Duration::from_secs(full);
            assert!(d <= full && d >= full.mul_f64(0.8), "{attempt}: {d:?}");
        }
    }
}
