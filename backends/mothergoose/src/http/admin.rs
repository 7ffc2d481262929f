//! Operators' endpoints (admin token), `/health` and `/metrics`, and the OpenAPI document.

use super::{require_admin, ApiErr};
use crate::app::App;
use crate::tasks;
use crate::views;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use gosling_api::{Accepted, CreateRunnerRequest, EggView, Health, RunnerView};
use gosling_fleet::{Step, Task};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;

/// The OpenAPI document of MotherGoose's API.
#[derive(OpenApi)]
#[openapi(
    info(title = "MotherGoose", description = "GitLab job events to queue to runners, on the deployed IR (Polar Gosling)."),
    paths(
        health, metrics, list_runners, get_runner, create_runner, delete_runner, list_eggs, trigger_job,
        super::webhook::gitlab, super::runner::heartbeat, super::runner::config, super::runner::job_result,
        super::runner::get_egg, super::runner::rift_verify,
    ),
    components(schemas(
        gosling_api::Heartbeat, gosling_api::HeartbeatReply, gosling_api::AgentState, gosling_api::Instruction,
        gosling_api::RunnerConfig, gosling_api::JobAssignment, gosling_api::CacheConfig, gosling_api::JobResult,
        gosling_api::RunnerView, gosling_api::EggView, gosling_api::CreateRunnerRequest, gosling_api::Accepted,
        gosling_api::ApiError, gosling_api::RiftVerifyRequest, gosling_api::RiftVerifyReply, gosling_api::Health,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        for name in ["admin_token", "runner_credential", "rift_token"] {
            c.add_security_scheme(
                name,
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// Liveness and what is failing (no authentication).
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if let Err(e) = app.store.current().await {
        problems.push(format!("state store: {e}"));
    }
    if let Err(e) = app.queue.stats().await {
        problems.push(format!("queue: {e}"));
    }
    let version = app.deployed.current().map(|d| d.version);
    if version.is_none() {
        problems.push("nothing is deployed yet (`gosling deploy`)".into());
    }
    let degraded = problems.iter().any(|p| !p.starts_with("nothing"));
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(Health {
            status: if degraded { "degraded" } else { "ok" }.into(),
            deployment_version: version,
            problems,
        }),
    )
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")), security(("admin_token" = [])))]
pub async fn metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiErr> {
    require_admin(&app, &headers).await?;
    let stats = app.queue.stats().await.unwrap_or_default();
    let text = app.metrics.render(&[
        (
            "mothergoose_queue_ready",
            "Tasks waiting to be run.",
            stats.ready as f64,
        ),
        (
            "mothergoose_queue_in_flight",
            "Tasks leased or delayed.",
            stats.in_flight as f64,
        ),
        (
            "mothergoose_queue_dead",
            "Dead-lettered tasks.",
            stats.dead as f64,
        ),
        (
            "mothergoose_deployment_version",
            "The deployment in force.",
            app.deployed.current().map_or(0.0, |d| d.version as f64),
        ),
        (
            "mothergoose_sqlite_memory_bytes",
            "Memory SQLite holds: the embedded store's and queue's page caches, each bounded.",
            gosling_state::sqlite_memory_used() as f64,
        ),
    ]);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    ))
}

/// Filters of `GET /runners`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RunnerFilter {
    /// Only runners of this egg.
    pub egg: Option<String>,
    /// Only runners in this state.
    pub state: Option<String>,
}

/// Every runner (optionally of one egg or in one state).
#[utoipa::path(get, path = "/runners", tag = "runners", params(RunnerFilter), responses((status = 200, body = Vec<RunnerView>), (status = 401, body = gosling_api::ApiError)), security(("admin_token" = [])))]
pub async fn list_runners(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(f): Query<RunnerFilter>,
) -> Result<Json<Vec<RunnerView>>, ApiErr> {
    require_admin(&app, &headers).await?;
    let runners = match (&f.egg, &f.state) {
        (Some(egg), _) => app.store.runners_by_egg(egg).await?,
        (None, Some(state)) => app.store.runners_by_state(state).await?,
        (None, None) => app.store.runners().await?,
    };
    Ok(Json(
        runners
            .iter()
            .filter(|r| f.state.as_ref().is_none_or(|s| &r.item.state == s))
            .map(|r| views::runner_view(&r.item))
            .collect(),
    ))
}

/// One runner.
#[utoipa::path(get, path = "/runners/{id}", tag = "runners", params(("id" = String, Path, description = "The runner")), responses((status = 200, body = RunnerView), (status = 401, body = gosling_api::ApiError), (status = 404, body = gosling_api::ApiError)), security(("admin_token" = [])))]
pub async fn get_runner(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<RunnerView>, ApiErr> {
    require_admin(&app, &headers).await?;
    let r = app
        .store
        .runner(&id)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("no runner `{id}`")))?;
    Ok(Json(views::runner_view(&r.item)))
}

/// Makes a runner of an egg by hand (queued).
#[utoipa::path(post, path = "/runners", tag = "runners", request_body = CreateRunnerRequest, responses((status = 202, body = Accepted), (status = 401, body = gosling_api::ApiError), (status = 404, body = gosling_api::ApiError)), security(("admin_token" = [])))]
pub async fn create_runner(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<CreateRunnerRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiErr> {
    require_admin(&app, &headers).await?;
    if app
        .deployed
        .current()
        .and_then(|d| d.egg(&req.egg_name).cloned())
        .is_none()
    {
        return Err(ApiErr::not_found(format!(
            "no egg `{}` in the deployment in force",
            req.egg_name
        )));
    }
    let key = format!("manual:{}:{:016x}", req.egg_name, rand::random::<u64>());
    let runner_id = tasks::deploy::runner_id_for(&key, 1);
    tasks::enqueue(
        &app,
        &Task::DeployRunner { job: key },
        Duration::ZERO,
        false,
    )
    .await
    .map_err(|e| ApiErr::unavailable(format!("{e:?}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "queued".into(),
            runner_id: Some(runner_id),
            task_id: None,
        }),
    ))
}

/// Options of `DELETE /runners/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteOptions {
    /// End it even if it runs a job (the job is abandoned).
    #[serde(default)]
    pub force: bool,
}

/// Ends a runner: drained first when it may run a job, unless `force`.
#[utoipa::path(delete, path = "/runners/{id}", tag = "runners", params(("id" = String, Path, description = "The runner"), DeleteOptions), responses((status = 202, body = Accepted), (status = 401, body = gosling_api::ApiError), (status = 404, body = gosling_api::ApiError)), security(("admin_token" = [])))]
pub async fn delete_runner(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(o): Query<DeleteOptions>,
) -> Result<(StatusCode, Json<Accepted>), ApiErr> {
    require_admin(&app, &headers).await?;
    let step = app
        .lifecycle
        .request(&id, "an operator asked", o.force)
        .await?;
    let status = match step {
        Step::Draining => "draining",
        Step::Terminated => "terminated",
        _ => "terminating",
    };
    if matches!(step, Step::Remove | Step::Draining) {
        let t = Task::TerminateRunner {
            runner_id: id.clone(),
            reason: "an operator asked".into(),
            force: o.force,
        };
        tasks::enqueue(&app, &t, Duration::ZERO, true)
            .await
            .map_err(|e| ApiErr::unavailable(format!("{e:?}")))?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: status.into(),
            runner_id: Some(id),
            task_id: None,
        }),
    ))
}

/// Every egg of the deployment in force.
#[utoipa::path(get, path = "/eggs", tag = "eggs", responses((status = 200, body = Vec<EggView>), (status = 401, body = gosling_api::ApiError)), security(("admin_token" = [])))]
pub async fn list_eggs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<Vec<EggView>>, ApiErr> {
    require_admin(&app, &headers).await?;
    let names: Vec<String> = app
        .deployed
        .current()
        .map(|d| d.ir.eggs.iter().map(|e| e.name.clone()).collect())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(views::egg_view(&app, &n).await?);
    }
    Ok(Json(out))
}

/// Runs a self-management job now (queued).
#[utoipa::path(post, path = "/jobs/{name}/trigger", tag = "jobs", params(("name" = String, Path, description = "The job")), responses((status = 202, body = Accepted), (status = 401, body = gosling_api::ApiError), (status = 404, body = gosling_api::ApiError)), security(("admin_token" = [])))]
pub async fn trigger_job(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Accepted>), ApiErr> {
    require_admin(&app, &headers).await?;
    if !app
        .deployed
        .current()
        .is_some_and(|d| d.ir.jobs.iter().any(|j| j.name == name))
    {
        return Err(ApiErr::not_found(format!(
            "no job `{name}` in the deployment in force"
        )));
    }
    let at = app.clock.now();
    let t = Task::ExecuteSelfManagementJob {
        job: name.clone(),
        scheduled_for: at,
    };
    tasks::enqueue(&app, &t, Duration::ZERO, false)
        .await
        .map_err(|e| ApiErr::unavailable(format!("{e:?}")))?;
    let runner_id = tasks::deploy::runner_id_for(&tasks::selfjob::run_key(&name, at), 1);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "queued".into(),
            runner_id: Some(runner_id),
            task_id: None,
        }),
    ))
}
