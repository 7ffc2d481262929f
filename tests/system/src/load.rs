//! The load scenario shared by the CI test and the `system-load` benchmark: distinct jobs
//! over several eggs and projects, arriving as webhooks with duplicates, redeliveries and
//! stale events, while UglyFox passes run.

use crate::{EggSpec, System};
use std::time::{Duration, Instant};

/// What a load run measured.
#[derive(Debug)]
pub struct LoadRun {
    /// Jobs sent.
    pub jobs: usize,
    /// From the first job event to the last runner ended.
    pub elapsed: Duration,
    /// Job event → its runner's first heartbeat (up: `active`, `idle` or `busy`), per job,
    /// sorted (zero for a runner that was up before the job came).
    pub start_latencies: Vec<Duration>,
    /// Job event → its runner's machine created (the local process started), sorted: the
    /// control plane's own overhead.
    pub created_latencies: Vec<Duration>,
    /// Peak runners alive at once, by egg.
    pub peaks: std::collections::BTreeMap<String, usize>,
}

impl LoadRun {
    /// The `q` quantile (0..=1) of the start latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.start_latencies, q)
    }
}

/// The `q` quantile (0..=1) of sorted durations.
pub fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Sends `jobs` jobs round-robin over the eggs (each every `gap`), with GitLab's habits:
/// every 3rd hook redelivered under its delivery id, every 5th job announced twice, and
/// once all ended, every 7th job's stale `running` and `pending` hooks arrive late.
/// Waits for everything to settle within `limit`.
pub async fn run(sys: &System, jobs: usize, gap: Duration, limit: Duration) -> LoadRun {
    let watch = sys.watch_limits();
    let start = Instant::now();
    let mut sent = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let egg: &EggSpec = &sys.eggs[i % sys.eggs.len()];
        let (id, delivery) = sys.job(egg, 0.2).await;
        sent.push((id, chrono::Utc::now()));
        if i % 3 == 0 {
            sys.gitlab.redeliver(id, &delivery).await;
        }
        if i % 5 == 0 {
            sys.gitlab.deliver_job_hook(id).await;
        }
        tokio::time::sleep(gap).await;
    }
    if let Err(e) = sys.settle(limit).await {
        panic!(
            "{e}\n--- mothergoose\n{}\n--- uglyfox\n{}",
            sys.tail("mothergoose"),
            sys.tail("uglyfox")
        );
    }
    let elapsed = start.elapsed();
    for (i, (id, _)) in sent.iter().enumerate() {
        if i % 7 == 0 {
            sys.gitlab.deliver_stale(*id, "running").await;
            sys.gitlab.deliver_stale(*id, "pending").await;
        }
    }
    // Late events must not make runners: give them time to (wrongly) do so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = sys.settle(limit).await;
    LoadRun {
        jobs,
        elapsed,
        start_latencies: latencies(sys, &sent, |a| {
            let to = a.details.get("to").and_then(|v| v.as_str());
            a.action == "state" && matches!(to, Some("active" | "idle" | "busy"))
        })
        .await,
        created_latencies: latencies(sys, &sent, |a| a.action == "machine_created").await,
        peaks: watch.finish(),
    }
}

/// For each job: the first audit entry of its runner that `pick` accepts, minus the job's
/// event time.
async fn latencies(
    sys: &System,
    sent: &[(u64, chrono::DateTime<chrono::Utc>)],
    pick: impl Fn(&gosling_state::AuditLog) -> bool,
) -> Vec<Duration> {
    let records = sys.store.gitlab_jobs().await.unwrap_or_default();
    let audit = sys.store.audit_logs().await.unwrap_or_default();
    let mut out: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| {
            let runner = records
                .iter()
                .find(|r| r.item.build_id == *id)?
                .item
                .runner_id
                .clone()?;
            let active = audit
                .iter()
                .filter(|a| a.resource_id == runner && pick(a))
                .map(|a| a.timestamp)
                .min()?;
            // A runner that was up before the job came (handed it) served it at once.
            Some((active - *at).to_std().unwrap_or_default())
        })
        .collect();
    out.sort();
    out
}
