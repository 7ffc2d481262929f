//! The wire types of MotherGoose's HTTP API: what runners send and receive (heartbeats,
//! their configuration, self-management job results), what operators read (runners,
//! eggs), and what Rift asks. MotherGoose serves them; runner mode, Rift and the CLI are
//! clients. The OpenAPI document is generated from these types (utoipa).
#![warn(missing_docs)]

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What the agent on a runner is doing, as the runner reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// The agent is up and has run no job yet.
    Active,
    /// The agent is up and runs no job now.
    Idle,
    /// The agent runs at least one job.
    Busy,
    /// Finishing its jobs before stopping (draining, SIGTERM).
    Stopping,
    /// The agent stopped; the runner is about to exit.
    Stopped,
}

/// What a runner is told to do in the answer to its heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Instruction {
    /// Finish the current jobs, take no new one, stop the agent, report `stopped`, exit.
    Drain,
    /// Stop now, abandoning any job (forced termination).
    Stop,
    /// Fetch the configuration again and restart the agent between jobs.
    Reload,
    /// Stop taking new jobs but stay up (moved to the Nadir pool).
    Pause,
    /// Take jobs again (promoted to the Apex pool).
    Resume,
}

/// `POST /runners/{id}/heartbeat`: a runner's health (the design's `runner_metrics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// The agent's state.
    pub state: AgentState,
    /// Jobs running now.
    #[serde(default)]
    pub jobs_running: u32,
    /// Jobs run since the runner started.
    #[serde(default)]
    pub job_count: u64,
    /// CPU use, percent.
    #[serde(default)]
    pub cpu_usage: f64,
    /// Memory use, percent.
    #[serde(default)]
    pub memory_usage: f64,
    /// Disk use, percent.
    #[serde(default)]
    pub disk_usage: f64,
    /// gitlab-runner's version.
    #[serde(default)]
    pub agent_version: String,
    /// Agent crashes and failed jobs since the runner started.
    #[serde(default)]
    pub failure_count: u32,
    /// When the last job finished.
    #[serde(default)]
    pub last_job_at: Option<DateTime<Utc>>,
    /// The egg configuration hash the agent runs with.
    #[serde(default)]
    pub config_hash: Option<String>,
    /// When this was measured (heartbeats buffered during an outage arrive late).
    pub measured_at: DateTime<Utc>,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatReply {
    /// The runner's state as MotherGoose now records it.
    pub runner_state: String,
    /// What to do, if anything.
    #[serde(default)]
    pub instruction: Option<Instruction>,
    /// The egg's configuration hash in the deployment in force.
    #[serde(default)]
    pub config_hash: Option<String>,
}

/// A self-management job a runner is to run (`gosling runner --job NAME`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobAssignment {
    /// The job's name.
    pub name: String,
    /// The script (run with `sh`, or its `#!` interpreter).
    pub script: String,
    /// Its environment.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Longest run, seconds.
    pub timeout_s: u64,
    /// The scheduled time this run is for.
    pub scheduled_for: DateTime<Utc>,
}

/// Where a runner's cache is (Rift).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheConfig {
    /// Rift's S3 address (`host:port`).
    pub server_address: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix the runner's cache lives under (`[runners.cache] Path`): its egg's
    /// name, the only part of the bucket Rift lets it read or write.
    #[serde(default)]
    pub path: Option<String>,
    /// The runner's S3 access key.
    pub access_key: String,
    /// The runner's S3 secret key.
    pub secret_key: String,
    /// Plain HTTP (Rift without TLS).
    pub insecure: bool,
    /// PEM of the CA that signed Rift's certificate, if not publicly trusted.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The Docker API proxy (`tcp://host:port`), when on.
    #[serde(default)]
    pub docker_host: Option<String>,
    /// The token the Docker proxy and `/cache` want (`X-Rift-Token` / bearer):
    /// `<runner id>.<secret key>`.
    #[serde(default)]
    pub docker_token: Option<String>,
}

/// `GET /runners/{id}/config`: everything a runner needs, fetched with its own
/// credential (so a runner never holds database credentials).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunnerConfig {
    /// The runner's id.
    pub runner_id: String,
    /// Its egg, as deployed (the IR).
    #[schema(value_type = Object)]
    pub egg: fly_ir::Egg,
    /// The GitLab it serves.
    pub gitlab_url: String,
    /// Its GitLab runner authentication token (`glrt-…`); absent for job runners.
    #[serde(default)]
    pub gitlab_token: Option<String>,
    /// GitLab's version, when MotherGoose knows it (for the agent version).
    #[serde(default)]
    pub gitlab_version: Option<String>,
    /// A single-job runner: run one job, then exit.
    pub ephemeral: bool,
    /// When the runner must be done (serverless: 60 minutes after creation).
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    /// Seconds between heartbeats.
    pub heartbeat_interval_s: u64,
    /// The self-management job to run instead of taking GitLab jobs.
    #[serde(default)]
    pub job: Option<JobAssignment>,
    /// Its cache, when the egg uses Rift.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
}

/// `POST /runners/{id}/job-result`: how a self-management job ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobResult {
    /// The job.
    pub job: String,
    /// Whether it succeeded (exit status 0 within its timeout).
    pub success: bool,
    /// Its exit status, if it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Whether it was stopped at its timeout.
    #[serde(default)]
    pub timed_out: bool,
    /// The end of its output (at most 4 KiB).
    #[serde(default)]
    pub output_tail: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// A runner as operators see it (no secrets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunnerView {
    /// Its id.
    pub id: String,
    /// Its egg.
    pub egg_name: String,
    /// `vm` or `serverless`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its state.
    pub state: String,
    /// Its pool (`apex`, `nadir`), if any.
    #[serde(default)]
    pub pool: Option<String>,
    /// Cloud provider.
    pub cloud_provider: String,
    /// Region.
    pub region: String,
    /// GitLab's runner id.
    #[serde(default)]
    pub gitlab_runner_id: Option<i64>,
    /// Single-job runner.
    pub ephemeral: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last heartbeat.
    #[serde(default)]
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Failures.
    pub failure_count: u32,
    /// Jobs run.
    pub job_count: u64,
    /// The GitLab jobs it was given.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// The provider's handle of its machine.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub machine: Option<serde_json::Value>,
}

/// An egg as deployed, with its runners' counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EggView {
    /// The egg's name.
    pub name: String,
    /// Its configuration hash.
    pub config_hash: String,
    /// The deployment in force.
    pub deployment_version: u64,
    /// Live runners by state.
    pub runners: BTreeMap<String, u64>,
    /// The egg (IR).
    #[schema(value_type = Object)]
    pub config: fly_ir::Egg,
}

/// `POST /runners`: create a runner by hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateRunnerRequest {
    /// The egg.
    pub egg_name: String,
    /// A single-job runner (default: the egg's type decides; serverless runners are).
    #[serde(default)]
    pub ephemeral: Option<bool>,
}

/// An accepted request whose work happens in the background.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// What was queued or done.
    pub status: String,
    /// The runner concerned, if any.
    #[serde(default)]
    pub runner_id: Option<String>,
    /// The task id, if one was queued.
    #[serde(default)]
    pub task_id: Option<String>,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// What went wrong, in words.
    pub error: String,
}

/// `POST /rift/verify`: Rift asks whether a runner may use the cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RiftVerifyRequest {
    /// The runner id (the S3 access key, or the token's runner).
    pub runner_id: String,
}

/// The answer to [`RiftVerifyRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RiftVerifyReply {
    /// Whether the runner exists and is not terminated.
    pub allowed: bool,
    /// The runner's egg (its cache namespace), when allowed.
    #[serde(default)]
    pub egg_name: Option<String>,
    /// The runner's S3 secret key, when allowed.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Seconds Rift may cache this answer.
    pub ttl_s: u64,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the store or the queue is failing.
    pub status: String,
    /// The deployment in force.
    #[serde(default)]
    pub deployment_version: Option<u64>,
    /// What is failing, if anything.
    #[serde(default)]
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_read_with_defaults() {
        let hb: Heartbeat = serde_json::from_str(
            r#"{"state":"busy","measured_at":"2026-01-01T00:00:00Z","jobs_running":1}"#,
        )
        .unwrap();
        assert_eq!(hb.state, AgentState::Busy);
        assert_eq!(hb.jobs_running, 1);
        assert_eq!(hb.agent_version, "");
        let reply = HeartbeatReply {
            runner_state: "draining".into(),
            instruction: Some(Instruction::Drain),
            config_hash: None,
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.contains("\"instruction\":\"drain\""), "{text}");
    }
}
