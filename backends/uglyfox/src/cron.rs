//! Cron Jobs (Property 30): every deployed Job runs at the times its schedule names.
//!
//! A tick looks at the `jobs` table. A job whose `next_run` has come is claimed with a
//! versioned write of its record (`scheduled_for` = that time, `next_run` = the next time
//! after now — so after downtime a missed schedule runs once —, status `queued`, attempt 1)
//! and only then is `execute_self_management_job` queued (deduplicated per job and scheduled
//! time). The versioned write is the lock: of two UglyFox instances, one wins each claim.
//! MotherGoose runs the job on an ephemeral runner and writes the result (`succeeded` /
//! `failed`); a failed run is retried `on_failure.retry` times, then the `on_failure.notify`
//! recipients are told once (`notified`).

use crate::metrics::Metrics;
use crate::notify::{Notification, Notifier};
use chrono::{DateTime, Utc};
use fly_ir::Deployment;
use gosling_fleet::Task;
use gosling_queue::{EnqueueOptions, Queue};
use gosling_state::{
    to_doc, ts, AuditLog, Expect, JobRecord, StateError, StateStore, Table, Versioned, Write,
};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What a tick does with one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum JobStep {
    /// Start the run for `scheduled_for`.
    Run {
        /// The scheduled time it is for.
        scheduled_for: DateTime<Utc>,
        /// The next time after now.
        next_run: Option<DateTime<Utc>>,
    },
    /// The previous run is still going: this scheduled time is skipped.
    Skip {
        /// The skipped time.
        scheduled_for: DateTime<Utc>,
        /// The next time after now.
        next_run: Option<DateTime<Utc>>,
    },
    /// The run in progress reported nothing within its timeout and the grace: failed.
    Lost,
    /// Run the failed scheduled time again.
    Retry {
        /// The attempt it will be (2 = the first retry).
        attempt: u32,
    },
    /// Retries are spent: tell the `on_failure.notify` recipients.
    Notify,
}

/// One step for one job, with the record version it was decided from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobDecision {
    /// The job.
    pub job: String,
    /// The step.
    #[serde(flatten)]
    pub step: JobStep,
    /// In words.
    pub why: String,
}

/// Statuses of a run that has not ended.
pub fn in_progress(status: &str) -> bool {
    matches!(status, "queued" | "running")
}

/// Plans a tick: per job, the steps to take in order (a notification of the last failure
/// and the start of a new run may share a tick).
pub fn plan_jobs(
    jobs: &[Versioned<JobRecord>],
    ir: &Deployment,
    now: DateTime<Utc>,
    lost_grace: Duration,
) -> Vec<JobDecision> {
    let mut out = Vec::new();
    for v in jobs {
        let rec = &v.item;
        let Some(job) = ir.jobs.iter().find(|j| j.name == rec.name) else {
            continue;
        };
        let d = |step, why: String| JobDecision {
            job: rec.name.clone(),
            step,
            why,
        };
        let running = in_progress(&rec.status);
        let due = rec.next_run.filter(|t| *t <= now);
        if running {
            let started = rec.last_run.or(rec.scheduled_for);
            let limit = job.timeout_s.saturating_add(lost_grace.as_secs());
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            if started.is_some_and(|s| (now - s).num_seconds() > limit) {
                out.push(d(
                    JobStep::Lost,
                    format!(
                        "no result {} s after it started (timeout {} s + grace)",
                        started.map_or(0, |s| (now - s).num_seconds()),
                        job.timeout_s
                    ),
                ));
            } else if let Some(t) = due {
                out.push(d(
                    JobStep::Skip {
                        scheduled_for: t,
                        next_run: job.schedule.next_after(now),
                    },
                    "the previous run is still in progress".into(),
                ));
            }
            continue;
        }
        if rec.status == "failed" {
            let retries = job.on_failure.retry;
            if rec.attempt <= retries && rec.scheduled_for.is_some() {
                out.push(d(
                    JobStep::Retry {
                        attempt: rec.attempt + 1,
                    },
                    format!(
                        "attempt {} failed; {retries} retr(ies) allowed",
                        rec.attempt
                    ),
                ));
                continue;
            }
            if !rec.notified && !job.on_failure.notify.is_empty() {
                out.push(d(
                    JobStep::Notify,
                    format!(
                        "failed after {} attempt(s); telling {}",
                        rec.attempt,
                        job.on_failure.notify.join(", ")
                    ),
                ));
            }
        }
        if let Some(t) = due {
            out.push(d(
                JobStep::Run {
                    scheduled_for: t,
                    next_run: job.schedule.next_after(now),
                },
                format!("scheduled for {}", ts::format(&t)),
            ));
        }
    }
    out
}

/// Runs planned job steps against the store and the queue.
pub struct Cron {
    /// The store.
    pub store: Arc<dyn StateStore>,
    /// Where runs are queued.
    pub queue: Arc<dyn Queue>,
    /// Who hears about failures.
    pub notifier: Arc<dyn Notifier>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Added to a job's timeout before a silent run counts as failed.
    pub lost_grace: Duration,
}

impl std::fmt::Debug for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cron({})", self.store.describe())
    }
}

/// What became of a job step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// Done.
    Done,
    /// Another instance changed the record first: nothing done.
    Lost,
    /// Failed (logged; the next tick decides again).
    Failed(String),
}

impl Cron {
    /// One tick at `now`: plans and applies.
    pub async fn tick(
        &self,
        ir: &Deployment,
        now: DateTime<Utc>,
    ) -> Result<Vec<(JobDecision, JobOutcome)>, StateError> {
        let jobs = self.store.jobs().await?;
        let plan = plan_jobs(&jobs, ir, now, self.lost_grace);
        let mut out = Vec::new();
        for v in jobs {
            let mine: Vec<&JobDecision> = plan.iter().filter(|d| d.job == v.item.name).collect();
            let mut current = v;
            for d in mine {
                let o = match self.step(ir, &mut current, d, now).await {
                    Ok(true) => JobOutcome::Done,
                    Ok(false) => JobOutcome::Lost,
                    Err(e) => {
                        tracing::warn!("job {}: {e}", d.job);
                        JobOutcome::Failed(e.to_string())
                    }
                };
                let stop = o != JobOutcome::Done;
                out.push((d.clone(), o));
                if stop {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Writes `rec` over `current` (at its version) with an audit entry; `false` on a
    /// conflict. On success `current` becomes the written record.
    async fn write(
        &self,
        current: &mut Versioned<JobRecord>,
        rec: JobRecord,
        action: &str,
        details: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let audit = AuditLog::new(now, "uglyfox", action, "job", &rec.name, details);
        let writes = vec![
            Write::Put {
                table: Table::Jobs,
                doc: to_doc(Table::Jobs, &rec)?,
                expect: Expect::Version(current.version),
            },
            Write::Put {
                table: Table::AuditLogs,
                doc: to_doc(Table::AuditLogs, &audit)?,
                expect: Expect::Absent,
            },
        ];
        match self.store.transact(writes).await {
            Ok(()) => {
                *current = Versioned {
                    item: rec,
                    version: current.version + 1,
                };
                Ok(true)
            }
            Err(StateError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn enqueue(
        &self,
        current: &mut Versioned<JobRecord>,
        scheduled_for: DateTime<Utc>,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let task = Task::ExecuteSelfManagementJob {
            job: current.item.name.clone(),
            scheduled_for,
        };
        let options = if attempt <= 1 {
            task.options(Duration::ZERO, false)
        } else {
            EnqueueOptions {
                dedup_key: Some(format!("{}#{attempt}", task.dedup_key())),
                delay: Duration::ZERO,
            }
        };
        match self.queue.enqueue(&task.to_message(), options).await {
            Ok(_) => {
                self.metrics.cron_runs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // The claim is ours: record the failure so the retry logic takes it up.
                let mut rec = current.item.clone();
                rec.status = "failed".into();
                rec.last_result = Some(json!({
                    "success": false,
                    "error": format!("queueing the run failed: {e}"),
                }));
                self.write(
                    current,
                    rec,
                    "cron_failed",
                    json!({ "error": e.to_string() }),
                    now,
                )
                .await?;
                Err(StateError::Invalid(format!("queueing the run: {e}")))
            }
        }
    }

    async fn step(
        &self,
        ir: &Deployment,
        current: &mut Versioned<JobRecord>,
        d: &JobDecision,
        now: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let mut rec = current.item.clone();
        match &d.step {
            JobStep::Run {
                scheduled_for,
                next_run,
            } => {
                rec.scheduled_for = Some(*scheduled_for);
                rec.next_run = *next_run;
                rec.status = "queued".into();
                rec.attempt = 1;
                rec.last_run = Some(now);
                rec.notified = false;
                let det = json!({ "scheduled_for": ts::format(scheduled_for), "attempt": 1, "why": d.why });
                if !self.write(current, rec, "cron_run", det, now).await? {
                    return Ok(false);
                }
                self.enqueue(current, *scheduled_for, 1, now).await?;
            }
            JobStep::Skip {
                scheduled_for,
                next_run,
            } => {
                rec.next_run = *next_run;
                let det = json!({ "scheduled_for": ts::format(scheduled_for), "why": d.why });
                return self.write(current, rec, "cron_skipped", det, now).await;
            }
            JobStep::Lost => {
                rec.status = "failed".into();
                rec.last_result =
                    Some(json!({ "success": false, "timed_out": true, "error": d.why }));
                return self
                    .write(current, rec, "cron_lost", json!({ "why": d.why }), now)
                    .await;
            }
            JobStep::Retry { attempt } => {
                let Some(at) = rec.scheduled_for else {
                    return Ok(false);
                };
                rec.attempt = *attempt;
                rec.status = "queued".into();
                rec.last_run = Some(now);
                let det =
                    json!({ "scheduled_for": ts::format(&at), "attempt": attempt, "why": d.why });
                if !self.write(current, rec, "cron_retry", det, now).await? {
                    return Ok(false);
                }
                self.enqueue(current, at, *attempt, now).await?;
            }
            JobStep::Notify => {
                let Some(job) = ir.jobs.iter().find(|j| j.name == rec.name) else {
                    return Ok(false);
                };
                rec.notified = true;
                let recipients = job.on_failure.notify.clone();
                let det = json!({ "recipients": recipients, "attempts": rec.attempt });
                if !self
                    .write(current, rec.clone(), "cron_notify", det, now)
                    .await?
                {
                    return Ok(false);
                }
                let n = Notification {
                    subject: format!(
                        "Gosling job `{}` failed after {} attempt(s)",
                        rec.name, rec.attempt
                    ),
                    body: format!(
                        "The self-management job `{}` scheduled for {} failed {} time(s).\nLast result: {}\n",
                        rec.name,
                        rec.scheduled_for.map(|t| ts::format(&t)).unwrap_or_default(),
                        rec.attempt,
                        rec.last_result
                            .as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "none".into())
                    ),
                    recipients,
                    details: json!({
                        "job": rec.name,
                        "scheduled_for": rec.scheduled_for.map(|t| ts::format(&t)),
                        "attempts": rec.attempt,
                        "last_result": rec.last_result,
                    }),
                };
                if let Err(e) = self.notifier.notify(&n).await {
                    self.metrics.notify_failures.fetch_add(1, Ordering::Relaxed);
                    // Not told: let a later tick try again.
                    let mut back = current.item.clone();
                    back.notified = false;
                    self.write(
                        current,
                        back,
                        "cron_notify_failed",
                        json!({ "error": e.to_string() }),
                        now,
                    )
                    .await?;
                    return Err(StateError::Invalid(format!("notifying: {e}")));
                }
                self.metrics.cron_notified.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(true)
    }
}
