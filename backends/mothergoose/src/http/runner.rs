//! The endpoints runners (and Rift) call, each with a credential that can act only as
//! itself: a runner's credential is bound to its id (a credential presented for another
//! runner is refused with 403, one that proves nothing with 401, a terminated runner's
//! with 401).

use super::{bearer, require_admin, ApiErr};
use crate::app::App;
use crate::views;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use gosling_api::{
    EggView, Heartbeat, HeartbeatReply, JobResult, RiftVerifyReply, RiftVerifyRequest, RunnerConfig,
};
use gosling_fleet::credentials::claimed_runner;
use gosling_fleet::{state_of, Edit, RunnerState, Task};
use gosling_state::{RunnerMetric, Versioned};
use std::sync::Arc;
use std::time::Duration;

/// Checks that the request carries runner `id`'s own, current credential.
pub async fn runner_auth(
    app: &App,
    headers: &HeaderMap,
    id: &str,
) -> Result<Versioned<gosling_state::Runner>, ApiErr> {
    let token =
        bearer(headers).ok_or_else(|| ApiErr::unauthorized("the runner's credential is needed"))?;
    let claimed =
        claimed_runner(token).ok_or_else(|| ApiErr::unauthorized("not a runner credential"))?;
    if claimed != id {
        // Authenticate the claim before saying anything about `id`.
        let valid = match app.store.runner(claimed).await? {
            Some(r) => app.keys.verify(claimed, r.item.credential_epoch, token),
            None => false,
        };
        return Err(if valid {
            ApiErr::forbidden("a runner may act only as itself")
        } else {
            ApiErr::unauthorized("the credential is not valid")
        });
    }
    let runner = app.store.runner(id).await?;
    match runner {
        Some(r) if app.keys.verify(id, r.item.credential_epoch, token) => {
            if state_of(&r.item) == RunnerState::Terminated {
                Err(ApiErr::unauthorized("the runner is terminated"))
            } else {
                Ok(r)
            }
        }
        _ => Err(ApiErr::unauthorized("the credential is not valid")),
    }
}

/// A runner reports its health; the answer may tell it what to do.
#[utoipa::path(
    post, path = "/runners/{id}/heartbeat", tag = "runners",
    params(("id" = String, Path, description = "The runner")),
    request_body = Heartbeat,
    responses(
        (status = 200, body = HeartbeatReply),
        (status = 401, description = "No valid credential, or the runner is terminated", body = gosling_api::ApiError),
        (status = 403, description = "Another runner's credential", body = gosling_api::ApiError),
    ),
    security(("runner_credential" = []))
)]
pub async fn heartbeat(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(hb): Json<Heartbeat>,
) -> Result<Json<HeartbeatReply>, ApiErr> {
    let result = heartbeat_inner(&app, &id, &headers, hb).await;
    app.metrics.inc(
        "mothergoose_heartbeats_total",
        match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.0.as_u16().to_string(),
        },
    );
    result.map(Json)
}

async fn heartbeat_inner(
    app: &App,
    id: &str,
    headers: &HeaderMap,
    hb: Heartbeat,
) -> Result<HeartbeatReply, ApiErr> {
    let runner = runner_auth(app, headers, id).await?;
    let egg_hash = app
        .deployed
        .current()
        .and_then(|d| d.egg(&runner.item.egg_name).map(|e| e.config_hash.clone()));
    let mut effect = None;
    let written = app
        .fleet
        .edit(id, |r, now| {
            let e = crate::heartbeat::apply(r, &hb, now, egg_hash.as_deref())?;
            let audit = e.audit.clone();
            effect = Some(e);
            Ok(Edit::Write(audit))
        })
        .await?;
    let metric = RunnerMetric {
        runner_id: id.to_string(),
        timestamp: hb.measured_at,
        state: format!("{:?}", hb.state).to_lowercase(),
        job_count: hb.job_count,
        cpu_usage: hb.cpu_usage,
        memory_usage: hb.memory_usage,
        disk_usage: hb.disk_usage,
        agent_version: hb.agent_version.clone(),
        failure_count: hb.failure_count,
        last_job_timestamp: hb.last_job_at,
    };
    if let Err(e) = app.store.put_metric(&metric).await {
        // A resent sample (same runner and time) is already there.
        if !matches!(e, gosling_state::StateError::Conflict { .. }) {
            tracing::warn!("storing a metric of {id}: {e}");
        }
    }
    let effect = effect.unwrap_or(crate::heartbeat::Effect {
        instruction: None,
        remove: false,
        audit: None,
    });
    if effect.remove {
        let task = Task::TerminateRunner {
            runner_id: id.to_string(),
            reason: "the runner stopped".into(),
            force: false,
        };
        if let Err(e) = app
            .queue
            .enqueue(&task.to_message(), task.options(Duration::ZERO, true))
            .await
        {
            tracing::warn!("queueing the removal of {id}: {e} (the reconciler will do it)");
        }
    }
    Ok(HeartbeatReply {
        runner_state: written.item.state,
        instruction: effect.instruction,
        config_hash: egg_hash,
    })
}

/// A runner fetches what it needs to run: its egg, its GitLab token, its job or cache.
#[utoipa::path(
    get, path = "/runners/{id}/config", tag = "runners",
    params(("id" = String, Path, description = "The runner")),
    responses(
        (status = 200, body = RunnerConfig),
        (status = 401, body = gosling_api::ApiError),
        (status = 403, body = gosling_api::ApiError),
        (status = 410, description = "The runner's egg is no longer deployed", body = gosling_api::ApiError),
    ),
    security(("runner_credential" = []))
)]
pub async fn config(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RunnerConfig>, ApiErr> {
    let runner = runner_auth(&app, &headers, &id).await?;
    views::runner_config(&app, &runner.item).await.map(Json)
}

/// A self-management job's runner reports how the job ended.
#[utoipa::path(
    post, path = "/runners/{id}/job-result", tag = "runners",
    params(("id" = String, Path, description = "The runner")),
    request_body = JobResult,
    responses(
        (status = 204, description = "Recorded"),
        (status = 401, body = gosling_api::ApiError),
        (status = 403, description = "Another runner's credential, or a job this runner does not run", body = gosling_api::ApiError),
    ),
    security(("runner_credential" = []))
)]
pub async fn job_result(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(result): Json<JobResult>,
) -> Result<StatusCode, ApiErr> {
    let runner = runner_auth(&app, &headers, &id).await?;
    if runner.item.self_job.as_deref() != Some(result.job.as_str()) {
        return Err(ApiErr::forbidden(format!(
            "runner {id} does not run job `{}`",
            result.job
        )));
    }
    crate::tasks::selfjob::record_result(&app, &runner.item, &result).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An egg as deployed (operators, or a runner of that egg).
#[utoipa::path(
    get, path = "/eggs/{name}", tag = "eggs",
    params(("name" = String, Path, description = "The egg")),
    responses(
        (status = 200, body = EggView),
        (status = 401, body = gosling_api::ApiError),
        (status = 403, description = "A runner of another egg", body = gosling_api::ApiError),
        (status = 404, body = gosling_api::ApiError),
    ),
    security(("admin_token" = []), ("runner_credential" = []))
)]
pub async fn get_egg(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<EggView>, ApiErr> {
    let as_runner = bearer(&headers).and_then(claimed_runner).map(String::from);
    match as_runner {
        Some(rid) => {
            let r = runner_auth(&app, &headers, &rid).await?;
            if r.item.egg_name != name {
                return Err(ApiErr::forbidden("a runner may read only its own egg"));
            }
        }
        None => require_admin(&app, &headers).await?,
    }
    views::egg_view(&app, &name).await.map(Json)
}

/// Rift asks whether a runner may use the cache, and for its S3 secret.
#[utoipa::path(
    post, path = "/rift/verify", tag = "rift",
    request_body = RiftVerifyRequest,
    responses(
        (status = 200, body = RiftVerifyReply),
        (status = 401, description = "Not Rift's token", body = gosling_api::ApiError),
    ),
    security(("rift_token" = []))
)]
pub async fn rift_verify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<RiftVerifyRequest>,
) -> Result<Json<RiftVerifyReply>, ApiErr> {
    let token = bearer(&headers).ok_or_else(|| ApiErr::unauthorized("Rift's token is needed"))?;
    if !app.token_ok(token, true).await {
        return Err(ApiErr::unauthorized("not Rift's token"));
    }
    Ok(Json(views::rift_verdict(&app, &req.runner_id).await?))
}
