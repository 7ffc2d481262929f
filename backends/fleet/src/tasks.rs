//! The design's tasks, as queue messages. Every task is idempotent: it is delivered at
//! least once, and a second delivery finds the work done.

use chrono::{DateTime, Utc};
use gosling_queue::{EnqueueOptions, Message};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A unit of background work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "args")]
pub enum Task {
    /// A webhook delivery to act on.
    ProcessWebhook {
        /// The delivery id (deduplication key).
        delivery: String,
        /// `X-Gitlab-Event` (`Job Hook`, …), or `poll` for a reconciler finding.
        event: String,
        /// `X-Gitlab-Instance`, if sent.
        #[serde(default)]
        instance: Option<String>,
        /// When it was received.
        received_at: DateTime<Utc>,
        /// The payload.
        payload: serde_json::Value,
    },
    /// Give a GitLab job (a `gitlab_jobs` key) its runner.
    DeployRunner {
        /// The `gitlab_jobs` key, or `manual:<egg>:<nonce>` for `POST /runners`.
        job: String,
    },
    /// End a runner (drained first when it runs a job).
    TerminateRunner {
        /// The runner.
        runner_id: String,
        /// Why (for the audit log).
        reason: String,
        /// End it even if it runs a job.
        #[serde(default)]
        force: bool,
    },
    /// Run a cron Job once, for one scheduled time.
    ExecuteSelfManagementJob {
        /// The job's name.
        job: String,
        /// The scheduled time this run is for (runs are deduplicated by it).
        scheduled_for: DateTime<Utc>,
    },
    /// Ask GitLab for a project's pending jobs (the reconciler, after a push or a lost hook).
    PollPending {
        /// The GitLab.
        gitlab_url: String,
        /// The project.
        project_id: u64,
    },
}

impl Task {
    /// The design's name of the task kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Task::ProcessWebhook { .. } => "process_webhook",
            Task::DeployRunner { .. } => "deploy_runner",
            Task::TerminateRunner { .. } => "terminate_runner",
            Task::ExecuteSelfManagementJob { .. } => "execute_self_management_job",
            Task::PollPending { .. } => "poll_pending",
        }
    }

    /// The key under which two deliveries of the same work are one.
    pub fn dedup_key(&self) -> String {
        match self {
            Task::ProcessWebhook { delivery, .. } => format!("webhook:{delivery}"),
            Task::DeployRunner { job } => format!("deploy:{job}"),
            Task::TerminateRunner { runner_id, .. } => format!("terminate:{runner_id}"),
            Task::ExecuteSelfManagementJob { job, scheduled_for } => {
                format!("cron:{job}:{}", scheduled_for.timestamp())
            }
            Task::PollPending {
                gitlab_url,
                project_id,
            } => format!("poll:{gitlab_url}:{project_id}"),
        }
    }

    /// As a queue message.
    pub fn to_message(&self) -> Message {
        let v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        Message {
            kind: self.kind().to_string(),
            body: v.get("args").cloned().unwrap_or(serde_json::Value::Null),
        }
    }

    /// From a queue message.
    pub fn from_message(m: &Message) -> Result<Task, serde_json::Error> {
        serde_json::from_value(serde_json::json!({ "kind": m.kind, "args": m.body }))
    }

    /// Enqueue options: deduplicated by [`dedup_key`](Task::dedup_key) unless `unique`
    /// (a task that must run again even if an earlier one ran, e.g. a second poll).
    pub fn options(&self, delay: Duration, unique: bool) -> EnqueueOptions {
        EnqueueOptions {
            dedup_key: (!unique).then(|| self.dedup_key()),
            delay,
        }
    }
}

/// The id of the runner made for task key `key` (a `gitlab_jobs` key, `pool:EGG:NONCE`,
/// `manual:EGG:NONCE`) on its `attempt`-th try (1-based): `r-` and 16 hex digits of
/// sha256(`key#attempt`). Deterministic, so a redelivered `DeployRunner` finds the runner it
/// made, and UglyFox can tell which of its pool requests became runners.
pub fn runner_id_for(key: &str, attempt: u32) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{key}#{attempt}").as_bytes());
    format!("r-{}", &gosling_state::hex(&h)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_ids_are_deterministic_per_key_and_attempt() {
        let a = runner_id_for("pool:app:1a2b-0", 1);
        assert_eq!(a, runner_id_for("pool:app:1a2b-0", 1));
        assert_ne!(a, runner_id_for("pool:app:1a2b-0", 2));
        assert_ne!(a, runner_id_for("pool:app:1a2b-1", 1));
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("r-"));
    }

    #[test]
    fn tasks_round_trip_through_messages() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let tasks = [
            Task::ProcessWebhook {
                delivery: "d1".into(),
                event: "Job Hook".into(),
                instance: Some("https://gitlab.example.com".into()),
                received_at: at,
                payload: serde_json::json!({"object_kind": "build"}),
            },
            Task::DeployRunner {
                job: "g/1/2".into(),
            },
            Task::TerminateRunner {
                runner_id: "r-1".into(),
                reason: "job finished".into(),
                force: false,
            },
            Task::ExecuteSelfManagementJob {
                job: "rotate".into(),
                scheduled_for: at,
            },
            Task::PollPending {
                gitlab_url: "https://gitlab.example.com".into(),
                project_id: 7,
            },
        ];
        for t in tasks {
            let m = t.to_message();
            assert_eq!(m.kind, t.kind());
            assert_eq!(Task::from_message(&m).unwrap(), t);
        }
        assert!(Task::from_message(&Message {
            kind: "deploy_runner".into(),
            body: serde_json::json!({"nope": 1})
        })
        .is_err());
    }
}
