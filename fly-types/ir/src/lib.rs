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
//!
//! # Compatibility
//!
//! [`IR_VERSION`] is still 1. Every field added since the first version 1 documents has a
//! serde default, so an IR stored by an older compiler still reads, with these values:
//! `RunnerSettings::max_runners` 10, `Cloud::provisioning` [`Provisioning::Sdk`],
//! `Cloud::image_id` / `Cloud::security_group_id` / `Egg::rift` absent, `Deployment::rifts`
//! empty, `Pool::scale` empty (the pool's `min_count` all the time) and `UglyFox::throttle`
//! 10 / 10 ([`Throttle::default`]). Documents written now contain these fields, so an older
//! reader (with `deny_unknown_fields`) refuses them: upgrade the executors before the
//! compiler.
#![warn(missing_docs)]

mod condition;
mod scale;
mod schedule;

/// The time zone database [`ScaleWindow`] reads its `timezone` with (re-exported so that
/// executors use the same version).
pub use chrono_tz;
pub use condition::{CmpOp, Condition, Metric, MetricType, Metrics, Operand, RunnerStateOrPool};
pub use scale::ScaleWindow;
pub use schedule::{Schedule, ScheduleError};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The IR version this crate reads and writes. Bumped on any incompatible change; fields
/// added with a serde default (see the crate docs) keep it at 1.
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
    /// Rift cache servers declared in the Nest, sorted by name (empty in documents written
    /// before Rift could be declared).
    #[serde(default)]
    pub rifts: Vec<Rift>,
    /// Where each item came from: `egg.NAME`, `job.NAME`, `rift.NAME`, `uglyfox`,
    /// `rule.NAME`.
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

    /// The Rift with this name.
    pub fn rift(&self, name: &str) -> Option<&Rift> {
        self.rifts.iter().find(|r| r.name == name)
    }

    /// The Rift the egg's runners use as their cache: `None` when the egg names none (its
    /// runners get no `[runners.cache]` section and never contact a Rift, Property 22), or
    /// names one this deployment does not declare (the compiler refuses that, so only a
    /// hand-written document can).
    pub fn rift_of(&self, egg: &Egg) -> Option<&Rift> {
        self.rift(egg.rift.as_deref()?)
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
    /// The name of the [`Rift`] its runners use as their cache (see
    /// [`Deployment::rift_of`]); `None`: no cache. Only the name is part of the egg, so a
    /// change of that Rift's settings changes the Rift's `config_hash`, not the egg's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rift: Option<String>,
    /// sha256 (hex) of the egg's canonical JSON without this field.
    pub config_hash: String,
}

/// How runners are created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provisioning {
    /// Native cloud API calls (the provider's SDK).
    #[default]
    Sdk,
    /// OpenTofu configurations rendered from templates.
    Tofu,
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
    /// How runners are created: cloud API calls or OpenTofu ([`Provisioning::Sdk`] when
    /// absent).
    #[serde(default)]
    pub provisioning: Provisioning,
    /// The boot image (an AMI id on AWS, an image id on Yandex Cloud), when given; else the
    /// provisioner's default image.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image_id: Option<String>,
    /// The security group of the runners' network interface, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub security_group_id: Option<String>,
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
    /// At most this many runners of the egg exist at once; jobs beyond them wait for a
    /// runner (10 when absent).
    #[serde(default = "default_max_runners")]
    pub max_runners: u32,
}

/// `RunnerSettings::max_runners` when the document does not say.
fn default_max_runners() -> u32 {
    10
}

/// A Rift cache server runners use for gitlab-runner's distributed cache (S3 API) and,
/// optionally, as their Docker Engine API proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rift {
    /// Unique name in the Nest (eggs refer to it by this name).
    pub name: String,
    /// Base URL of its S3 API, `http://` or `https://` (TLS), without a trailing `/`:
    /// gitlab-runner's `[runners.cache.s3] ServerAddress` (host and port) and `Insecure`
    /// (`http`) come from it.
    pub address: String,
    /// The S3 bucket name runners use (`BucketName`).
    pub bucket: String,
    /// PEM of the CA that signed Rift's certificate, when it is not a publicly trusted one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls_ca: Option<String>,
    /// Runners also use Rift's Docker Engine API proxy (`DOCKER_HOST`).
    pub docker_proxy: bool,
    /// The Docker proxy's address (`tcp://HOST:PORT`) when `docker_proxy`: as written, else
    /// `tcp://<host of address>:2375`. `None` when `docker_proxy` is false.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub docker_address: Option<String>,
    /// sha256 (hex) of the Rift's canonical JSON without this field.
    pub config_hash: String,
}

impl Rift {
    /// Whether runners reach it over TLS (`https://`).
    pub fn tls(&self) -> bool {
        self.address.starts_with("https://")
    }
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
    /// How many runners one UglyFox pass may create and terminate (10 / 10 when absent).
    #[serde(default)]
    pub throttle: Throttle,
}

/// Limits on what one UglyFox pass changes, so a bad policy or a burst cannot replace a
/// whole fleet at once. 0 means none in a pass (the pass only reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// Runners one pass may create (pool top-ups).
    pub create_per_pass: u32,
    /// Runners one pass may terminate (rules, pruning, pool trims).
    pub terminate_per_pass: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            create_per_pass: 10,
            terminate_per_pass: 10,
        }
    }
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
    /// Periods (such as working hours) with their own `min_count`, in source order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale: Vec<ScaleWindow>,
}

impl Pool {
    /// The pool's `min_count` in force at `at`: the largest `min_count` of the
    /// [`scale`](Pool::scale) windows that are on at `at` (which may be lower than the
    /// pool's own, so a window can also shrink the pool, e.g. at weekends), else
    /// `min_count`. The compiler guarantees every window's `min_count` ≤ `max_count`.
    pub fn min_count_at(&self, at: chrono::DateTime<chrono::Utc>) -> u32 {
        self.scale
            .iter()
            .filter(|w| w.is_on(at))
            .map(|w| w.min_count)
            .max()
            .unwrap_or(self.min_count)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An IR document as the compiler wrote it before max_runners, provisioning, image and
    /// security group, Rift, scale windows and the throttle existed.
    const OLD: &str = r#"{
  "ir_version": 1,
  "eggs": [
    {
      "name": "app",
      "type": "vm",
      "cloud": { "provider": "aws", "region": "eu-west-1", "preemptible": false },
      "resources": { "cpu": 2, "memory_mb": 2048, "disk_gb": 20 },
      "runner": {
        "tags": [], "concurrent": 1, "idle_timeout_s": 600, "timeout_s": 3600,
        "image": "alpine:3", "privileged": false, "run_untagged": false
      },
      "gitlab": { "url": "https://gitlab.com", "project_id": 7, "token_secret": "vault://t" },
      "environment": {},
      "config_hash": "00"
    }
  ],
  "jobs": [],
  "uglyfox": {
    "pruning": { "failed_threshold": 3, "max_age_s": 86400, "check_interval_s": 300 },
    "apex": { "max_count": 10, "min_count": 2 },
    "nadir": { "max_count": 5, "min_count": 0, "idle_timeout_s": 1800 },
    "policies": []
  },
  "source_map": {}
}"#;

    #[test]
    fn older_documents_read_with_the_defaults() {
        let d = Deployment::from_json(OLD).unwrap();
        let egg = &d.eggs[0];
        assert_eq!(egg.runner.max_runners, 10);
        assert_eq!(egg.cloud.provisioning, Provisioning::Sdk);
        assert_eq!(egg.cloud.image_id, None);
        assert_eq!(egg.cloud.security_group_id, None);
        assert_eq!(egg.rift, None);
        assert!(d.rifts.is_empty());
        assert_eq!(d.rift_of(egg), None);
        let uf = d.uglyfox.as_ref().unwrap();
        assert_eq!(uf.throttle, Throttle::default());
        assert_eq!(
            (uf.throttle.create_per_pass, uf.throttle.terminate_per_pass),
            (10, 10)
        );
        assert!(uf.apex.scale.is_empty());
        let now = chrono::Utc::now();
        assert_eq!(uf.apex.min_count_at(now), 2);
        // Written again, the defaults are explicit, and an empty scale list is left out.
        let json = d.to_json();
        assert!(json.contains("\"max_runners\": 10"), "{json}");
        assert!(json.contains("\"provisioning\": \"sdk\""), "{json}");
        assert!(json.contains("\"rifts\": []"), "{json}");
        assert!(json.contains("\"create_per_pass\": 10"), "{json}");
        assert!(!json.contains("\"scale\""), "{json}");
        assert!(!json.contains("\"rift\":"), "{json}");
        assert_eq!(Deployment::from_json(&json).unwrap(), d);
    }

    #[test]
    fn rifts_are_found_by_name_and_by_egg() {
        let mut d = Deployment::from_json(OLD).unwrap();
        d.rifts.push(Rift {
            name: "main".into(),
            address: "https://rift.internal:9443".into(),
            bucket: "runner-cache".into(),
            tls_ca: None,
            docker_proxy: true,
            docker_address: Some("tcp://rift.internal:2375".into()),
            config_hash: "11".into(),
        });
        assert!(d.rift("main").unwrap().tls());
        assert_eq!(d.rift("other"), None);
        assert_eq!(d.rift_of(&d.eggs[0]), None);
        d.eggs[0].rift = Some("main".into());
        assert_eq!(d.rift_of(&d.eggs[0]).map(|r| r.name.as_str()), Some("main"));
        d.eggs[0].rift = Some("gone".into());
        assert_eq!(d.rift_of(&d.eggs[0]), None);
        let back = Deployment::from_json(&d.to_json()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_partial_throttle_takes_the_default_for_the_rest() {
        let t: Throttle = serde_json::from_str(r#"{"create_per_pass": 3}"#).unwrap();
        assert_eq!(t.create_per_pass, 3);
        assert_eq!(t.terminate_per_pass, 10);
    }
}
