//! The answers of the API, assembled from the store and the deployed IR.

use crate::app::App;
use crate::http::ApiErr;
use axum::http::StatusCode;
use gosling_api::{EggView, JobAssignment, RiftVerifyReply, RunnerConfig, RunnerView};
use gosling_fleet::{state_of, RunnerState};
use gosling_state::Runner;
use std::collections::BTreeMap;

/// The longest a serverless runner lives.
pub const SERVERLESS_LIFETIME: chrono::Duration = chrono::Duration::minutes(60);

/// The egg a runner belongs to: from the deployment in force, else as last deployed.
pub async fn egg_of(app: &App, name: &str) -> Result<Option<fly_ir::Egg>, ApiErr> {
    if let Some(e) = app.deployed.current().and_then(|d| d.egg(name).cloned()) {
        return Ok(Some(e));
    }
    Ok(app
        .store
        .egg(name)
        .await?
        .and_then(|r| serde_json::from_value(r.item.config).ok()))
}

/// A runner without its secrets.
pub fn runner_view(r: &Runner) -> RunnerView {
    RunnerView {
        id: r.id.clone(),
        egg_name: r.egg_name.clone(),
        kind: r.kind.clone(),
        state: r.state.clone(),
        pool: r.pool.clone(),
        cloud_provider: r.cloud_provider.clone(),
        region: r.region.clone(),
        gitlab_runner_id: r.gitlab_runner_id,
        ephemeral: r.ephemeral,
        created_at: r.created_at,
        last_heartbeat: r.last_heartbeat,
        failure_count: r.failure_count,
        job_count: r.job_count,
        jobs: r.jobs.clone(),
        machine: r.machine.clone(),
    }
}

/// What `GET /runners/{id}/config` answers.
pub async fn runner_config(app: &App, r: &Runner) -> Result<RunnerConfig, ApiErr> {
    let egg = egg_of(app, &r.egg_name).await?.ok_or_else(|| {
        ApiErr(
            StatusCode::GONE,
            format!("egg `{}` is no longer deployed", r.egg_name),
        )
    })?;
    let token = app
        .registry
        .token(r)
        .map_err(|e| ApiErr::unavailable(format!("opening the runner token: {e}")))?;
    let job = match &r.self_job {
        Some(name) => Some(job_assignment(app, r, name)?),
        None => None,
    };
    Ok(RunnerConfig {
        runner_id: r.id.clone(),
        gitlab_url: r
            .gitlab_url
            .clone()
            .unwrap_or_else(|| egg.gitlab.url.clone()),
        gitlab_token: token.map(|t| t.expose().to_string()),
        gitlab_version: crate::tasks::gitlab_version(app, &egg).await,
        ephemeral: r.ephemeral,
        deadline: (egg.kind == fly_ir::RunnerKind::Serverless)
            .then(|| r.created_at + SERVERLESS_LIFETIME),
        heartbeat_interval_s: app.settings.heartbeat_interval.as_secs().max(1),
        job,
        cache: crate::rift::cache_config(app, r, &egg),
        egg,
    })
}

fn job_assignment(app: &App, r: &Runner, name: &str) -> Result<JobAssignment, ApiErr> {
    let d = app
        .deployed
        .current()
        .ok_or_else(|| ApiErr(StatusCode::GONE, "nothing is deployed".into()))?;
    let job = d.ir.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
        ApiErr(
            StatusCode::GONE,
            format!("job `{name}` is no longer deployed"),
        )
    })?;
    let scheduled_for = r
        .metadata
        .get("scheduled_for")
        .and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(r.created_at);
    Ok(JobAssignment {
        name: job.name.clone(),
        script: job.script.clone(),
        environment: job.environment.clone(),
        timeout_s: job.timeout_s,
        scheduled_for,
    })
}

/// An egg with its live runners counted by state.
pub async fn egg_view(app: &App, name: &str) -> Result<EggView, ApiErr> {
    let d = app.deployed.current();
    let egg = d
        .as_ref()
        .and_then(|d| d.egg(name).cloned())
        .ok_or_else(|| ApiErr::not_found(format!("no egg `{name}` in the deployment in force")))?;
    let mut runners = BTreeMap::new();
    for r in app.store.runners_by_egg(name).await? {
        if state_of(&r.item) != RunnerState::Terminated {
            *runners.entry(r.item.state).or_insert(0) += 1;
        }
    }
    Ok(EggView {
        name: egg.name.clone(),
        config_hash: egg.config_hash.clone(),
        deployment_version: d.map(|d| d.version).unwrap_or(0),
        runners,
        config: egg,
    })
}

/// Whether a runner may use Rift now, and its S3 secret.
pub async fn rift_verdict(app: &App, runner_id: &str) -> Result<RiftVerifyReply, ApiErr> {
    let live = app
        .store
        .runner(runner_id)
        .await?
        .filter(|r| state_of(&r.item) != RunnerState::Terminated);
    Ok(match live {
        Some(r) => RiftVerifyReply {
            allowed: true,
            egg_name: Some(r.item.egg_name.clone()),
            secret_key: Some(crate::rift::s3_secret(app, runner_id).expose().to_string()),
            ttl_s: crate::rift::ALLOW_TTL_S,
        },
        None => RiftVerifyReply {
            allowed: false,
            egg_name: None,
            secret_key: None,
            ttl_s: crate::rift::DENY_TTL_S,
        },
    })
}
