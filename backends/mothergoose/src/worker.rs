//! The queue consumer: leases tasks, runs them, and acks, retries with backoff or
//! dead-letters them. On shutdown it stops leasing, lets running tasks finish within the
//! grace period, and releases the leases of those that did not (delivered again at once
//! elsewhere, or after a restart).

use crate::app::App;
use crate::tasks::{self, TaskError};
use gosling_fleet::Task;
use gosling_queue::{backoff, Lease};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const LEASE_WAIT: Duration = Duration::from_secs(2);
const BASE_DELAY: Duration = Duration::from_secs(2);
const MAX_DELAY: Duration = Duration::from_secs(600);
/// The longest wait between tries while the store is down (it may come back any moment).
const OUTAGE_MAX_DELAY: Duration = Duration::from_secs(30);
/// Conflicting writers are tried again soon, and much longer than failures.
const CONTENDED_BASE_DELAY: Duration = Duration::from_millis(100);
const CONTENDED_MAX_DELAY: Duration = Duration::from_secs(2);
const CONTENDED_FACTOR: u32 = 20;

/// Runs `concurrency` tasks at a time until `shutdown` turns true: as many loops, each
/// leasing one task, running it and settling it (several receivers keep a remote queue
/// busy; a long poll returns as soon as one task is there).
pub async fn run(app: Arc<App>, concurrency: usize, shutdown: watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashMap<String, Lease>>> = Arc::default();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        loops.spawn(consume(app.clone(), in_flight.clone(), shutdown.clone()));
    }
    let mut stopped = shutdown.clone();
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            break;
        }
    }
    let grace = app.settings.shutdown_grace;
    let finished =
        tokio::time::timeout(grace, async { while loops.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        loops.abort_all();
        while loops.join_next().await.is_some() {}
        let left: Vec<Lease> = in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, l)| l)
            .collect();
        tracing::warn!(
            "{} tasks did not finish within {grace:?}; their leases are released",
            left.len()
        );
        for lease in left {
            let _ = app.queue.release(&lease).await;
        }
    }
}

async fn consume(
    app: Arc<App>,
    in_flight: Arc<Mutex<HashMap<String, Lease>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let leased = tokio::select! {
            l = app.queue.lease(1, app.settings.lease, LEASE_WAIT) => l,
            _ = shutdown.changed() => return,
        };
        let leases = match leased {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("leasing tasks failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for lease in leases {
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(lease.receipt.clone(), lease.clone());
            handle(&app, &lease).await;
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&lease.receipt);
        }
    }
}

/// Runs one leased task and settles its lease.
pub async fn handle(app: &App, lease: &Lease) {
    let task = match Task::from_message(&lease.message) {
        Ok(t) => t,
        Err(e) => {
            dead(app, lease, &format!("unreadable task: {e}")).await;
            return;
        }
    };
    let kind = task.kind();
    let outcome = keeping_lease(app, lease, tasks::run(app, task.clone())).await;
    let settled = match outcome {
        Ok(()) => {
            app.metrics
                .inc("mothergoose_tasks_total", format!("{kind}:done"));
            app.queue.ack(lease).await.map(|_| ())
        }
        Err(TaskError::Later(after)) => {
            // Not a failure: queue it again for later (first, so a crash now loses nothing).
            app.metrics
                .inc("mothergoose_tasks_total", format!("{kind}:later"));
            match app
                .queue
                .enqueue(&task.to_message(), task.options(after, true))
                .await
            {
                Ok(_) => app.queue.ack(lease).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        Err(TaskError::Retry { error, after }) => {
            let delay =
                backoff(lease.attempts, BASE_DELAY, MAX_DELAY).max(after.unwrap_or_default());
            let limit = app.settings.max_attempts;
            match again(app, lease, kind, &error, limit, delay, "retry").await {
                Some(settled) => settled,
                None => return,
            }
        }
        Err(TaskError::Contended(error)) => {
            let delay = backoff(lease.attempts, CONTENDED_BASE_DELAY, CONTENDED_MAX_DELAY);
            let limit = app.settings.max_attempts * CONTENDED_FACTOR;
            match again(app, lease, kind, &error, limit, delay, "contended").await {
                Some(settled) => settled,
                None => return,
            }
        }
        Err(TaskError::Unavailable(error)) => {
            // Not the task's fault: never dead-lettered, retried until the outage ends.
            tracing::warn!(
                "{kind} waits for the store (delivery {}): {error}",
                lease.attempts
            );
            app.metrics
                .inc("mothergoose_tasks_total", format!("{kind}:unavailable"));
            let delay = backoff(lease.attempts, BASE_DELAY, OUTAGE_MAX_DELAY);
            app.queue.retry(lease, delay, &error).await
        }
        Err(TaskError::Permanent(error)) => {
            dead(app, lease, &error).await;
            return;
        }
    };
    if let Err(e) = settled {
        tracing::warn!("settling a {kind} task: {e} (it will be delivered again)");
    }
}

/// Delivers a task that failed (`label`: `retry`, `contended`) again after `delay`, or
/// dead-letters it once it has been delivered `limit` times (`None`).
async fn again(
    app: &App,
    lease: &Lease,
    kind: &str,
    error: &str,
    limit: u32,
    delay: Duration,
    label: &str,
) -> Option<Result<(), gosling_queue::QueueError>> {
    if lease.attempts >= limit {
        let why = format!("gave up after {} attempts: {error}", lease.attempts);
        dead(app, lease, &why).await;
        return None;
    }
    if label == "retry" {
        tracing::info!(
            "{kind} failed (attempt {}): {error}; retrying",
            lease.attempts
        );
    } else {
        tracing::debug!(
            "{kind} {label} (attempt {}): {error}; again soon",
            lease.attempts
        );
    }
    app.metrics
        .inc("mothergoose_tasks_total", format!("{kind}:{label}"));
    Some(app.queue.retry(lease, delay, error).await)
}

/// Runs `work` while renewing `lease` every third of its length, so a task stays with
/// this worker however long it takes, and returns to the queue soon if this process dies.
async fn keeping_lease<T>(
    app: &App,
    lease: &Lease,
    work: impl std::future::Future<Output = T>,
) -> T {
    let length = app.settings.lease;
    let renew = async {
        loop {
            tokio::time::sleep(length / 3).await;
            match app.queue.extend(lease, length).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    "the lease of a {} task expired while it ran; it may run again",
                    lease.message.kind
                ),
                Err(e) => {
                    tracing::warn!("renewing the lease of a {} task: {e}", lease.message.kind)
                }
            }
        }
    };
    tokio::select! {
        out = work => out,
        _ = renew => unreachable!("renewing a lease never ends"),
    }
}

async fn dead(app: &App, lease: &Lease, error: &str) {
    tracing::error!("task {} dead-lettered: {error}", lease.message.kind);
    app.metrics.inc(
        "mothergoose_tasks_total",
        format!("{}:dead", lease.message.kind),
    );
    if let Err(e) = app.queue.dead_letter(lease, error).await {
        tracing::warn!("dead-lettering: {e}");
    }
    let _ = app
        .fleet
        .record(
            "dead_letter",
            "task",
            &lease.id,
            json!({ "kind": lease.message.kind, "error": error, "attempts": lease.attempts }),
        )
        .await;
}
