//! The deployment IR: what a compiled Nest is, for every executor.
//!
//! The Fly compiler (`fly-types`) produces a [`Deployment`]; the gosling CLI stores it,
//! MotherGoose provisions from it, UglyFox applies its policies, runners compare their
//! `config_hash` with it. Executors depend on this crate only, never on the compiler.
//!
//! Everything here is resolved: defaults applied, interpolations substituted, durations in
//! seconds, cron schedules expanded, policy conditions compiled to trees. Secrets are
//! references (`vault://…`), never values. The JSON form is deterministic (sorted maps and
//! lists), so the same Nest always gives the same bytes.
#![warn(missing_docs)]

mod condition;
mod schedule;

pub use condition::{CmpOp, Condition, Metric, MetricType, Metrics, Operand, RunnerStateOrPool};
pub use schedule::{Schedule, ScheduleError};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The IR version this crate reads and writes. Bumped on any incompatible change.
pub const IR_VERSION: u32 = 1;

/// A compiled Nest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Always [`IR_VERSION`] for documents this crate writes.
    pub ir_version: u32,
    /// Runner pools, sorted by name.
    pub eggs: Vec<Egg>,
    /// Self-management jobs, sorted by name.
    pub jobs: Vec<Job>,
    /// The pruning and pool policy, if the Nest has one.
    pub uglyfox: Option<UglyFox>,
    /// Where each item came from: `egg.NAME`, `job.NAME`, `uglyfox`, `rule.NAME`.
    pub source_map: BTreeMap<String, SourceLocation>,
}

/// Errors reading an IR document.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    /// Not JSON of the expected shape.
    #[error("invalid deployment IR: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by another version of the compiler.
    #[error(
        "deployment IR version {found} is not supported (this build reads version {IR_VERSION})"
    )]
    Version {
        /// The version the document declares.
        found: u32,
    },
}

impl Deployment {
    /// Reads a document, checking its version first so an old or new IR gets a clear error.
    pub fn from_json(text: &str) -> Result<Deployment, IrError> {
        #[derive(Deserialize)]
        struct Probe {
            ir_version: u32,
        }
        let probe: Probe = serde_json::from_str(text)?;
        if probe.ir_version != IR_VERSION {
            return Err(IrError::Version {
                found: probe.ir_version,
            });
        }
        Ok(serde_json::from_str(text)?)
    }

    /// The canonical JSON text (pretty, stable key order, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("the IR always serialises");
        s.push('\n');
        s
    }

    /// The egg with this name.
    pub fn egg(&self, name: &str) -> Option<&Egg> {
        self.eggs.iter().find(|e| e.name == name)
    }

    /// The JSON Schema of the IR document.
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Deployment);
        let mut s = serde_json::to_string_pretty(&schema).expect("schemas serialise");
        s.push('\n');
        s
    }
}

/// A place in the Nest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceLocation {
    /// Path relative to the Nest root, `/`-separated.
    pub file: String,
    /// 1-based line.
    pub line: u32,
}

/// VM or serverless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunnerKind {
    /// A virtual machine, for long or heavy jobs.
    Vm,
    /// A serverless container, for jobs under 60 minutes.
    Serverless,
}

/// Cloud provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Yandex Cloud.
    Yandex,
    /// Amazon Web Services.
    Aws,
}

/// A runner pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Egg {
    /// Unique name in the Nest.
    pub name: String,
    /// VM or serverless.
    #[serde(rename = "type")]
    pub kind: RunnerKind,
    /// Where it runs.
    pub cloud: Cloud,
    /// Size of each runner.
    pub resources: Resources,
    /// gitlab-runner settings.
    pub runner: RunnerSettings,
    /// The GitLab project it serves.
    pub gitlab: GitLab,
    /// Environment variables set for every job.
    pub environment: BTreeMap<String, String>,
    /// sha256 (hex) of the egg's canonical JSON without this field.
    pub config_hash: String,
}

/// Cloud placement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    /// Provider.
    pub provider: Provider,
    /// Region or zone.
    pub region: String,
    /// Yandex Cloud folder, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub folder_id: Option<String>,
    /// Subnet, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subnet_id: Option<String>,
    /// Preemptible / spot capacity.
    pub preemptible: bool,
}

/// Runner size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// vCPUs.
    pub cpu: u32,
    /// Memory in MB.
    pub memory_mb: u64,
    /// Disk in GB.
    pub disk_gb: u64,
}

/// gitlab-runner settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerSettings {
    /// Job tags this pool takes, sorted and deduplicated.
    pub tags: Vec<String>,
    /// Jobs run at once per runner.
    pub concurrent: u32,
    /// Seconds an idle runner is kept.
    pub idle_timeout_s: u64,
    /// Longest job, in seconds.
    pub timeout_s: u64,
    /// Docker image jobs run in by default.
    pub image: String,
    /// Privileged Docker (docker-in-docker).
    pub privileged: bool,
    /// Take jobs without tags.
    pub run_untagged: bool,
}

/// GitLab connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitLab {
    /// GitLab base URL.
    pub url: String,
    /// Project id.
    pub project_id: u64,
    /// Where the runner-creation token lives (a reference, never the token).
    pub token_secret: String,
}

/// A cron self-management job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Unique name in the Nest.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// Runner it needs.
    pub runner: JobRunner,
    /// The script.
    pub script: String,
    /// Longest run, in seconds.
    pub timeout_s: u64,
    /// What happens on failure.
    pub on_failure: OnFailure,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// sha256 (hex) of the job's canonical JSON without this field.
    pub config_hash: String,
}

/// The runner a job needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRunner {
    /// VM or serverless.
    #[serde(rename = "type")]
    pub kind: RunnerKind,
    /// Required tags, sorted.
    pub tags: Vec<String>,
}

/// Failure handling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnFailure {
    /// Addresses to notify.
    pub notify: Vec<String>,
    /// Retries before giving up.
    pub retry: u32,
}

/// The UglyFox policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UglyFox {
    /// Pruning thresholds.
    pub pruning: Pruning,
    /// The hot pool.
    pub apex: Pool,
    /// The cold pool.
    pub nadir: Pool,
    /// Rules in source order (first match wins).
    pub policies: Vec<Rule>,
}

/// Pruning thresholds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pruning {
    /// Failures before a runner is terminated.
    pub failed_threshold: u32,
    /// Oldest a runner may get, in seconds.
    pub max_age_s: u64,
    /// Seconds between health checks.
    pub check_interval_s: u64,
}

/// Pool size limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// At most this many runners.
    pub max_count: u32,
    /// At least this many runners.
    pub min_count: u32,
    /// Seconds idle before leaving the pool, if limited.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub idle_timeout_s: Option<u64>,
}

/// A pruning rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Rule name.
    pub name: String,
    /// The condition as written.
    pub condition_source: String,
    /// The compiled condition.
    pub condition: Condition,
    /// What to do when it holds.
    pub action: Action,
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Terminate the runner.
    Terminate,
    /// Move it from Apex to Nadir.
    DemoteToNadir,
    /// Move it from Nadir to Apex.
    PromoteToApex,
    /// Restart it.
    Restart,
    /// Only notify.
    Notify,
}

impl Action {
    /// Every action's Fly spelling.
    pub const NAMES: &'static [&'static str] = &[
        "terminate",
        "demote_to_nadir",
        "promote_to_apex",
        "restart",
        "notify",
    ];
}
