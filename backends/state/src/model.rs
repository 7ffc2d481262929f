//! The design document's tables as Rust records.
//!
//! Every record is stored as one item whose attributes are the record's fields (timestamps as
//! RFC 3339 text in UTC with microseconds, so they sort as text), plus `row_version`, the
//! optimistic-concurrency counter every write checks.

use crate::crypto::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A table of the state store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `runners`: one item per runner (VM or container).
    Runners,
    /// `eggs`: the deployed configuration of each egg.
    Eggs,
    /// `jobs`: the deployed cron jobs and their schedule state.
    Jobs,
    /// `audit_logs`: who did what, append-only.
    AuditLogs,
    /// `deployment_plans`: every deployment version, its plan and status.
    DeploymentPlans,
    /// `tofu_versions`: OpenTofu binaries known to the system.
    TofuVersions,
    /// `runner_metrics`: time series per runner (sort key `timestamp`).
    RunnerMetrics,
    /// `meta`: single items such as the current deployment pointer and sealed secrets.
    Meta,
    /// `gitlab_jobs`: every GitLab job MotherGoose has seen and the runner it got (the
    /// record whose conditional creation makes provisioning happen once per job).
    GitLabJobs,
    /// `webhook_events`: every webhook delivery, by delivery id (durable deduplication and
    /// the record of pipeline, push and merge request events).
    WebhookEvents,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 10] = [
        Table::Runners,
        Table::Eggs,
        Table::Jobs,
        Table::AuditLogs,
        Table::DeploymentPlans,
        Table::TofuVersions,
        Table::RunnerMetrics,
        Table::Meta,
        Table::GitLabJobs,
        Table::WebhookEvents,
    ];

    /// The table's name (without any prefix).
    pub fn name(self) -> &'static str {
        match self {
            Table::Runners => "runners",
            Table::Eggs => "eggs",
            Table::Jobs => "jobs",
            Table::AuditLogs => "audit_logs",
            Table::DeploymentPlans => "deployment_plans",
            Table::TofuVersions => "tofu_versions",
            Table::RunnerMetrics => "runner_metrics",
            Table::Meta => "meta",
            Table::GitLabJobs => "gitlab_jobs",
            Table::WebhookEvents => "webhook_events",
        }
    }

    /// The partition key attribute.
    pub fn partition_key(self) -> &'static str {
        match self {
            Table::Runners
            | Table::AuditLogs
            | Table::DeploymentPlans
            | Table::GitLabJobs
            | Table::WebhookEvents => "id",
            Table::Eggs | Table::Jobs => "name",
            Table::TofuVersions => "version_id",
            Table::RunnerMetrics => "runner_id",
            Table::Meta => "key",
        }
    }

    /// The sort key attribute, for tables that have one.
    pub fn sort_key(self) -> Option<&'static str> {
        match self {
            Table::RunnerMetrics => Some("timestamp"),
            _ => None,
        }
    }

    /// Attributes with a secondary index (GSI on DynamoDB, an index on SQLite).
    pub fn indexed(self) -> &'static [&'static str] {
        match self {
            Table::Runners => &["egg_name", "state"],
            Table::GitLabJobs => &["status"],
            _ => &[],
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 3339 in UTC with microseconds: fixed width, so text order is time order.
pub mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats a timestamp the way the store keeps it.
    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// serde: write.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    /// serde: read.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    /// The same for optional timestamps.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        /// serde: write.
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::format(t)),
                None => s.serialize_none(),
            }
        }

        /// serde: read.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            text.map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
        }
    }
}

/// A record with the version it was read at (pass it back as [`Expect::Version`]).
///
/// [`Expect::Version`]: crate::Expect::Version
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    /// The record.
    pub item: T,
    /// Its `row_version`: 1 after the first write, +1 after each.
    pub version: u64,
}

/// `runners`: a runner (VM or serverless container).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    /// Primary key.
    pub id: String,
    /// The egg it belongs to (indexed).
    pub egg_name: String,
    /// `vm` or `serverless`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `creating`, `active`, `idle`, `busy`, `failed`, `terminated`… (indexed).
    pub state: String,
    /// `yandex` or `aws`.
    pub cloud_provider: String,
    /// Region or zone.
    pub region: String,
    /// GitLab's runner id.
    #[serde(default)]
    pub gitlab_runner_id: Option<i64>,
    /// The runner authentication token, encrypted (Property 34).
    #[serde(default)]
    pub gitlab_runner_token: Option<Sealed>,
    /// Created.
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
    /// Last heartbeat from the runner.
    #[serde(default, with = "ts::option")]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Failures so far.
    pub failure_count: u32,
    /// Anything else.
    #[serde(default)]
    pub metadata: Value,
    /// When `state` last changed.
    #[serde(default, with = "ts::option")]
    pub state_since: Option<DateTime<Utc>>,
    /// The warm pool it is in (`apex`, `nadir`), for pool runners.
    #[serde(default)]
    pub pool: Option<String>,
    /// A single-job runner, ended after its job (serverless runners are).
    #[serde(default)]
    pub ephemeral: bool,
    /// The provider's handle of its machine, once created.
    #[serde(default)]
    pub machine: Option<Value>,
    /// What it is told with the answer to its next heartbeat (`drain`, `stop`, …).
    #[serde(default)]
    pub instruction: Option<String>,
    /// The epoch of its credential (raised to revoke the credential).
    #[serde(default)]
    pub credential_epoch: u32,
    /// Jobs run so far.
    #[serde(default)]
    pub job_count: u64,
    /// When it last finished a job.
    #[serde(default, with = "ts::option")]
    pub last_job_at: Option<DateTime<Utc>>,
    /// The `gitlab_jobs` it was given, oldest first.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// The GitLab it is registered with.
    #[serde(default)]
    pub gitlab_url: Option<String>,
    /// The egg's `config_hash` it was made with.
    #[serde(default)]
    pub config_hash: String,
    /// Termination attempts that failed so far.
    #[serde(default)]
    pub termination_attempts: u32,
    /// A self-management job it runs instead of GitLab jobs (`gosling runner --job`).
    #[serde(default)]
    pub self_job: Option<String>,
    /// The `gitlab_jobs` counted against its capacity: given to it and not finished yet.
    #[serde(default)]
    pub open_jobs: Vec<String>,
}

impl Runner {
    /// A new record in state `provisioning`, created at `now`.
    pub fn new(
        id: impl Into<String>,
        egg_name: impl Into<String>,
        kind: impl Into<String>,
        cloud_provider: impl Into<String>,
        region: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Runner {
        Runner {
            id: id.into(),
            egg_name: egg_name.into(),
            kind: kind.into(),
            state: "provisioning".into(),
            cloud_provider: cloud_provider.into(),
            region: region.into(),
            gitlab_runner_id: None,
            gitlab_runner_token: None,
            created_at: now,
            updated_at: now,
            last_heartbeat: None,
            failure_count: 0,
            metadata: Value::Null,
            state_since: Some(now),
            pool: None,
            ephemeral: false,
            machine: None,
            instruction: None,
            credential_epoch: 0,
            job_count: 0,
            last_job_at: None,
            jobs: Vec::new(),
            gitlab_url: None,
            config_hash: String::new(),
            termination_attempts: 0,
            self_job: None,
            open_jobs: Vec::new(),
        }
    }
}

/// `gitlab_jobs`: a GitLab job (build) and the runner it got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GitLabJob {
    /// Primary key: [`GitLabJob::key`].
    pub id: String,
    /// The GitLab it runs on.
    pub gitlab_url: String,
    /// Its project.
    pub project_id: u64,
    /// Its job (build) id.
    pub build_id: u64,
    /// Where MotherGoose stands with it (indexed): `pending` (needs a runner),
    /// `provisioning`, `assigned` (a runner is there for it), `running`, `finished`,
    /// `unmatched` (no egg serves it), `failed` (no runner could be made).
    pub status: String,
    /// GitLab's last known status of the job.
    pub gitlab_status: String,
    /// The egg chosen for it.
    #[serde(default)]
    pub egg_name: Option<String>,
    /// The runner made or chosen for it.
    #[serde(default)]
    pub runner_id: Option<String>,
    /// The job's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Runners made for it so far (a replacement counts).
    #[serde(default)]
    pub attempts: u32,
    /// Of those, the runners GitLab gave another job: they did not fail it, so they do not
    /// count towards giving up.
    #[serde(default)]
    pub taken_by_others: u32,
    /// First seen.
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
    /// Why it is in its status, in words.
    #[serde(default)]
    pub reason: Option<String>,
}

impl GitLabJob {
    /// The key of a job: GitLab host, project and job id.
    pub fn key(gitlab_url: &str, project_id: u64, build_id: u64) -> String {
        let host = gitlab_url
            .split_once("://")
            .map_or(gitlab_url, |(_, rest)| rest)
            .trim_end_matches('/');
        format!("{host}/{project_id}/{build_id}")
    }
}

/// `webhook_events`: a webhook delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Primary key: the delivery id (`webhook-id`, `Idempotency-Key` or
    /// `X-Gitlab-Event-UUID`).
    pub id: String,
    /// `build`, `pipeline`, `push`, `merge_request`.
    pub kind: String,
    /// The project.
    pub project_id: u64,
    /// Received.
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
    /// `processing` or `done`.
    pub status: String,
    /// What it said and what was done.
    #[serde(default)]
    pub summary: Value,
}

/// `eggs`: an egg as deployed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EggRecord {
    /// Primary key: the egg's name.
    pub name: String,
    /// The egg's IR (`fly_ir::Egg` as JSON).
    pub config: Value,
    /// The egg's `config_hash` from the IR.
    pub config_hash: String,
    /// The deployment version that last changed it.
    pub deployment_version: u64,
    /// First deployed.
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
}

/// `jobs`: a cron job as deployed, with its schedule state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Primary key: the job's name.
    pub name: String,
    /// The cron expression.
    pub schedule: String,
    /// Last run.
    #[serde(default, with = "ts::option")]
    pub last_run: Option<DateTime<Utc>>,
    /// Next run.
    #[serde(default, with = "ts::option")]
    pub next_run: Option<DateTime<Utc>>,
    /// `scheduled`, `running`, `failed`…
    pub status: String,
    /// The job's IR (`fly_ir::Job` as JSON).
    pub config: Value,
    /// The job's `config_hash` from the IR.
    pub config_hash: String,
    /// The deployment version that last changed it.
    pub deployment_version: u64,
    /// The scheduled time of the run in progress or last run.
    #[serde(default, with = "ts::option")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Runs of that scheduled time so far (1 + retries after failures).
    #[serde(default)]
    pub attempt: u32,
    /// How the last run ended: `success`, `exit_code`, `timed_out`, `finished_at`,
    /// `runner_id`, `output_tail`.
    #[serde(default)]
    pub last_result: Option<Value>,
    /// Whether the `on_failure` recipients were told about the last failure.
    #[serde(default)]
    pub notified: bool,
}

/// `audit_logs`: one action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    /// Primary key (unique, time-ordered).
    pub id: String,
    /// When.
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    /// Who (`gosling@host`, `uglyfox`, …).
    pub actor: String,
    /// What (`deploy`, `rollback`, `terminate`, …).
    pub action: String,
    /// On what kind of thing.
    pub resource_type: String,
    /// On which.
    pub resource_id: String,
    /// Anything else.
    #[serde(default)]
    pub details: Value,
}

impl AuditLog {
    /// A new entry with a unique, time-ordered id.
    pub fn new(
        now: DateTime<Utc>,
        actor: impl Into<String>,
        action: impl Into<String>,
        resource_type: impl Into<String>,
        resource_id: impl Into<String>,
        details: Value,
    ) -> AuditLog {
        let nonce: [u8; 4] = rand_bytes();
        AuditLog {
            id: format!(
                "{}-{:02x}{:02x}{:02x}{:02x}",
                ts::format(&now),
                nonce[0],
                nonce[1],
                nonce[2],
                nonce[3]
            ),
            timestamp: now,
            actor: actor.into(),
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            details,
        }
    }
}

fn rand_bytes() -> [u8; 4] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut b = [0u8; 4];
    aes_gcm::aead::OsRng.fill_bytes(&mut b);
    b
}

/// Where a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Recorded, not yet applied.
    Pending,
    /// Applied (it is, or was, the current deployment).
    Applied,
    /// Applying failed; the previous deployment stayed current.
    Failed,
    /// It was current and a rollback replaced it.
    RolledBack,
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanStatus::Pending => "pending",
            PlanStatus::Applied => "applied",
            PlanStatus::Failed => "failed",
            PlanStatus::RolledBack => "rolled_back",
        })
    }
}

/// `deployment_plans`: one deployment version.
///
/// The IR and the plan themselves live in the [`ObjectStore`](crate::ObjectStore) under
/// `ir_key` and `plan_key` (a DynamoDB item is limited to 400 KB; a 1,000-egg IR is larger);
/// `config_hash` is the sha256 of the IR text, checked when it is read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// Primary key: the version, zero-padded (`000042`).
    pub id: String,
    /// The deployment version, 1, 2, 3…
    pub version: u64,
    /// The egg it concerns, for per-egg plans; `None` for a whole-Nest deployment.
    #[serde(default)]
    pub egg_name: Option<String>,
    /// `nest` (a whole-Nest deployment), `runner` or `rift` (OpenTofu plans).
    pub plan_type: String,
    /// Object key of the plan (JSON, or the OpenTofu plan binary).
    pub plan_key: String,
    /// Object key of the deployment IR.
    pub ir_key: String,
    /// sha256 (hex) of the IR text.
    pub config_hash: String,
    /// Recorded.
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    /// Applied, if it was.
    #[serde(default, with = "ts::option")]
    pub applied_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: PlanStatus,
    /// The deployment that was current before this one (what a rollback returns to).
    #[serde(default)]
    pub rollback_plan_id: Option<String>,
    /// Summary, actor, error message…
    #[serde(default)]
    pub metadata: Value,
}

impl DeploymentPlan {
    /// The primary key of version `v`.
    pub fn id_for(version: u64) -> String {
        format!("{version:06}")
    }
}

/// `tofu_versions`: an OpenTofu binary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TofuVersion {
    /// Primary key: sha256 of `sha256_hash + version + source`.
    pub version_id: String,
    /// Semantic version.
    pub version: String,
    /// `github` or `other`.
    pub source: String,
    /// When it was downloaded.
    #[serde(with = "ts")]
    pub downloaded_at: DateTime<Utc>,
    /// sha256 of the binary.
    pub sha256_hash: String,
    /// The version in use.
    pub active: bool,
}

impl TofuVersion {
    /// The design's `version_id`: sha256 (hex) of `sha256_hash + version + source`.
    pub fn make_id(sha256_hash: &str, version: &str, source: &str) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(sha256_hash.as_bytes());
        h.update(version.as_bytes());
        h.update(source.as_bytes());
        hex(&h.finalize())
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `runner_metrics`: one sample (partition `runner_id`, sort key `timestamp`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunnerMetric {
    /// Partition key.
    pub runner_id: String,
    /// Sort key.
    #[serde(with = "ts")]
    pub timestamp: DateTime<Utc>,
    /// `active`, `idle`, `busy`, `failed`.
    pub state: String,
    /// Jobs run so far.
    pub job_count: u64,
    /// CPU %.
    pub cpu_usage: f64,
    /// Memory %.
    pub memory_usage: f64,
    /// Disk %.
    pub disk_usage: f64,
    /// gitlab-runner version.
    pub agent_version: String,
    /// Failures so far.
    pub failure_count: u32,
    /// Last job.
    #[serde(default, with = "ts::option")]
    pub last_job_timestamp: Option<DateTime<Utc>>,
}

/// `meta` item `current_deployment`: which deployment is current.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrentDeployment {
    /// The `deployment_plans` id.
    pub plan_id: String,
    /// Its version.
    pub version: u64,
    /// Since when it is current.
    #[serde(with = "ts")]
    pub since: DateTime<Utc>,
}
