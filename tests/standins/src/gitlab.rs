//! A GitLab stand-in: the REST calls Polar Gosling makes (version, projects, jobs, runners,
//! project hooks — authenticated with `PRIVATE-TOKEN`), the two calls a runner agent makes
//! to take and finish jobs (`POST /api/v4/jobs/request`, `PUT /api/v4/jobs/:id`, with the
//! runner's `glrt-` token), and real-shaped Job, Pipeline and Push hooks delivered to the
//! registered project hooks with `X-Gitlab-Token` and, when a signing token is set,
//! Standard Webhooks signatures.
//!
//! Tests and the local demo drive it through [`GitLab`] (in-process) or the control API
//! under `/-/` (`gitlab-standin` binary): create jobs, finish them, inject faults.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A job as the stand-in keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Job id.
    pub id: u64,
    /// Project.
    pub project_id: u64,
    /// Pipeline.
    pub pipeline_id: u64,
    /// Name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// `pending`, `running`, `success`, `failed`, `canceled`.
    pub status: String,
    /// The runner that took it.
    pub runner_id: Option<i64>,
    /// Seconds the "script" runs (for a fake agent).
    pub duration_s: f64,
    /// Exit status the "script" ends with (for a fake agent).
    pub exit_code: i32,
}

/// A registered runner.
#[derive(Clone, Debug, PartialEq)]
pub struct Runner {
    /// Id.
    pub id: i64,
    /// Its `glrt-` token.
    pub token: String,
    /// Its project.
    pub project_id: u64,
    /// Tags.
    pub tags: Vec<String>,
    /// Takes untagged jobs.
    pub run_untagged: bool,
    /// Description.
    pub description: String,
    /// Paused.
    pub paused: bool,
}

/// A project hook.
#[derive(Clone, Debug, PartialEq)]
pub struct Hook {
    /// Id.
    pub id: u64,
    /// Project.
    pub project_id: u64,
    /// Target.
    pub url: String,
    /// `X-Gitlab-Token`.
    pub token: String,
    /// Events subscribed (`job_events`, …).
    pub events: BTreeMap<String, bool>,
}

/// A fault to answer with instead of the real answer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Fault {
    /// Status to answer.
    pub status: u16,
    /// `Retry-After` seconds, for 429.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Wait this long before answering (a timeout, when long enough).
    #[serde(default)]
    pub delay_ms: u64,
}

/// Everything the stand-in knows.
#[derive(Debug, Default)]
pub struct World {
    /// `PRIVATE-TOKEN`s it accepts.
    pub tokens: Vec<String>,
    /// Project job timeouts (`build_timeout`), by project.
    pub build_timeouts: BTreeMap<u64, u64>,
    /// Jobs by id.
    pub jobs: BTreeMap<u64, Job>,
    /// Runners by id.
    pub runners: BTreeMap<i64, Runner>,
    /// Hooks by id.
    pub hooks: BTreeMap<u64, Hook>,
    /// Faults to answer the next API calls with (the runner and control APIs are spared).
    pub faults: VecDeque<Fault>,
    /// Standard Webhooks signing secret (`whsec_…`), when hooks are signed.
    pub signing_token: Option<String>,
    /// The version `GET /version` answers.
    pub version: String,
    /// Every API call: method and path.
    pub calls: Vec<String>,
    /// Webhook deliveries made: (url, status answered or error).
    pub deliveries: Vec<(String, String)>,
    next_id: u64,
}

impl World {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// A running stand-in.
#[derive(Clone)]
pub struct GitLab {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    world: Arc<Mutex<World>>,
    http: reqwest::Client,
}

type Shared = (Arc<Mutex<World>>, reqwest::Client, String);

fn lock(w: &Arc<Mutex<World>>) -> std::sync::MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl GitLab {
    /// Starts one on a free local port accepting `token` as a `PRIVATE-TOKEN`.
    pub async fn start(token: &str) -> std::io::Result<GitLab> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, token).await
    }

    /// Serves on `listener`.
    pub async fn serve(listener: tokio::net::TcpListener, token: &str) -> std::io::Result<GitLab> {
        let url = format!("http://{}", listener.local_addr()?);
        let world = Arc::new(Mutex::new(World {
            tokens: vec![token.to_string()],
            version: "17.5.1-ee".into(),
            ..World::default()
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let shared: Shared = (world.clone(), http.clone(), url.clone());
        let app = router(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(GitLab { url, world, http })
    }

    /// Reads or changes what it knows.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut lock(&self.world))
    }

    /// Answers the next `n` API calls with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.with(|w| w.faults.extend(std::iter::repeat_n(fault, n)));
    }

    /// Creates a pending job (without sending a hook).
    pub fn add_job(&self, project_id: u64, name: &str, tags: &[&str]) -> Job {
        self.with(|w| {
            let id = w.id();
            let job = Job {
                id,
                project_id,
                pipeline_id: 1000 + id,
                name: name.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                status: "pending".into(),
                runner_id: None,
                duration_s: 0.2,
                exit_code: 0,
            };
            w.jobs.insert(id, job.clone());
            job
        })
    }

    /// Creates a pending job and delivers its Job Hook; returns the job and the delivery
    /// id (the same id is sent again by [`redeliver`](Self::redeliver)).
    pub async fn create_job(&self, project_id: u64, name: &str, tags: &[&str]) -> (Job, String) {
        let job = self.add_job(project_id, name, tags);
        let id = self.deliver_job_hook(job.id).await;
        (job, id)
    }

    /// Sets a job's status and delivers its Job Hook; returns the delivery id.
    pub async fn set_status(&self, job_id: u64, status: &str) -> String {
        self.with(|w| {
            if let Some(j) = w.jobs.get_mut(&job_id) {
                j.status = status.into();
            }
        });
        self.deliver_job_hook(job_id).await
    }

    /// Delivers the Job Hook of a job as it stands now; returns the delivery id.
    pub async fn deliver_job_hook(&self, job_id: u64) -> String {
        let delivery = format!("{:032x}", rand_u128());
        deliver_job(
            &(self.world.clone(), self.http.clone(), self.url.clone()),
            job_id,
            &delivery,
        )
        .await;
        delivery
    }

    /// Delivers a stale Job Hook: the job as it stands but with `status` (an event that
    /// arrives late, after newer ones); the job itself is not changed.
    pub async fn deliver_stale(&self, job_id: u64, status: &str) {
        let delivery = format!("{:032x}", rand_u128());
        let shared = (self.world.clone(), self.http.clone(), self.url.clone());
        let (targets, body) = {
            let w = lock(&self.world);
            let Some(j) = w.jobs.get(&job_id) else { return };
            let mut stale = j.clone();
            stale.status = status.into();
            (hooks_of(&w, j.project_id), job_hook(&w, &stale, &self.url))
        };
        for h in targets {
            send_hook(&shared, &h, "Job Hook", &delivery, &body).await;
        }
    }

    /// Delivers a job's hook again under the same delivery id (GitLab's retry).
    pub async fn redeliver(&self, job_id: u64, delivery: &str) {
        deliver_job(
            &(self.world.clone(), self.http.clone(), self.url.clone()),
            job_id,
            delivery,
        )
        .await;
    }

    /// A job.
    pub fn job(&self, id: u64) -> Option<Job> {
        self.with(|w| w.jobs.get(&id).cloned())
    }
}

fn rand_u128() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (t << 20) ^ n ^ ((std::process::id() as u128) << 96)
}

/// The Job Hook payload of a job, shaped like GitLab's.
pub fn job_hook(w: &World, j: &Job, base: &str) -> Value {
    let runner = j.runner_id.and_then(|id| w.runners.get(&id)).map(|r| {
        json!({ "id": r.id, "description": r.description, "active": !r.paused, "is_shared": false,
                "runner_type": "project_type", "tags": r.tags })
    });
    json!({
        "object_kind": "build",
        "ref": "main",
        "tag": false,
        "before_sha": "0000000000000000000000000000000000000000",
        "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f",
        "build_id": j.id,
        "build_name": j.name,
        "build_stage": "test",
        "build_status": j.status,
        "build_created_at": "2026-12-06 10:00:00 UTC",
        "build_started_at": null,
        "build_finished_at": null,
        "build_duration": null,
        "build_queued_duration": 0.5,
        "build_allow_failure": false,
        "build_failure_reason": if j.status == "failed" { "script_failure" } else { "unknown_failure" },
        "retries_count": 0,
        "pipeline_id": j.pipeline_id,
        "project_id": j.project_id,
        "project_name": format!("group / project-{}", j.project_id),
        "user": { "id": 1, "name": "Administrator", "username": "root" },
        "commit": { "id": j.pipeline_id, "sha": "2293ada6b400935a1378653304eaf6221e0fdb8f", "status": j.status },
        "repository": { "name": format!("project-{}", j.project_id), "homepage": format!("{base}/group/project-{}", j.project_id) },
        "project": { "id": j.project_id, "name": format!("project-{}", j.project_id), "path_with_namespace": format!("group/project-{}", j.project_id), "web_url": format!("{base}/group/project-{}", j.project_id) },
        "runner": runner,
        "environment": null
    })
}

/// The hooks of `project` that want job events.
fn hooks_of(w: &World, project: u64) -> Vec<Hook> {
    w.hooks
        .values()
        .filter(|h| h.project_id == project && h.events.get("job_events").copied().unwrap_or(false))
        .cloned()
        .collect()
}

async fn deliver_job(s: &Shared, job_id: u64, delivery: &str) {
    let (targets, body) = {
        let w = lock(&s.0);
        let Some(j) = w.jobs.get(&job_id) else { return };
        (hooks_of(&w, j.project_id), job_hook(&w, j, &s.2))
    };
    for h in targets {
        send_hook(s, &h, "Job Hook", delivery, &body).await;
    }
}

/// Delivers a payload to a hook like GitLab does (headers included); records the answer.
async fn send_hook(s: &Shared, h: &Hook, event: &str, delivery: &str, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let signing = lock(&s.0).signing_token.clone();
    let mut req =
        s.1.post(&h.url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "GitLab/17.5.1-ee")
            .header("X-Gitlab-Event", event)
            .header("X-Gitlab-Token", &h.token)
            .header("X-Gitlab-Instance", &s.2)
            .header("X-Gitlab-Webhook-UUID", format!("{:032x}", h.id))
            .header("X-Gitlab-Event-UUID", delivery)
            .header("Idempotency-Key", delivery);
    if let Some(secret) = signing {
        if let Ok(key) = gosling_gitlab::SigningKey::parse(&secret) {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            req = req
                .header("webhook-id", delivery)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", key.sign(delivery, ts, &bytes));
        }
    }
    let outcome = match req.body(bytes).send().await {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => format!("error: {e}"),
    };
    lock(&s.0).deliveries.push((h.url.clone(), outcome));
}

fn err(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// Checks `PRIVATE-TOKEN` and applies an injected fault, if any.
async fn api_gate(s: &Shared, headers: &HeaderMap, call: String) -> Result<(), Response> {
    let fault = {
        let mut w = lock(&s.0);
        w.calls.push(call);
        w.faults.pop_front()
    };
    if let Some(f) = fault {
        tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
        if f.status >= 400 {
            let mut r = err(
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected fault",
            );
            if let Some(after) = f.retry_after {
                if let Ok(v) = after.to_string().parse() {
                    r.headers_mut().insert("Retry-After", v);
                }
            }
            return Err(r);
        }
    }
    let token = headers
        .get("PRIVATE-TOKEN")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !lock(&s.0).tokens.iter().any(|t| t == token) {
        return Err(err(StatusCode::UNAUTHORIZED, "401 Unauthorized"));
    }
    Ok(())
}

fn job_json(w: &World, j: &Job) -> Value {
    json!({
        "id": j.id, "status": j.status, "stage": "test", "name": j.name, "ref": "main",
        "tag_list": j.tags, "pipeline": { "id": j.pipeline_id, "project_id": j.project_id, "status": j.status },
        "runner": j.runner_id.and_then(|id| w.runners.get(&id)).map(|r| json!({ "id": r.id, "description": r.description })),
        "duration": null,
    })
}

fn router(s: Shared) -> Router {
    Router::new()
        .route("/api/v4/version", get(version))
        .route("/api/v4/projects/{id}", get(project))
        .route("/api/v4/projects/{id}/jobs", get(pending_jobs))
        .route("/api/v4/projects/{id}/jobs/{job}", get(one_job))
        .route("/api/v4/user/runners", post(create_runner))
        .route("/api/v4/runners/{id}", delete(delete_runner))
        .route(
            "/api/v4/projects/{id}/hooks",
            get(list_hooks).post(add_hook),
        )
        .route(
            "/api/v4/projects/{id}/hooks/{hook}",
            put(edit_hook).delete(remove_hook),
        )
        .route("/api/v4/jobs/request", post(request_job))
        .route("/api/v4/jobs/{id}", put(update_job))
        .route("/-/jobs", post(control_create_job))
        .route("/-/jobs/{id}/status", post(control_status))
        .route("/-/faults", post(control_faults))
        .route("/-/state", get(control_state))
        .with_state(s)
}

async fn version(State(s): State<Shared>, h: HeaderMap) -> Response {
    if let Err(r) = api_gate(&s, &h, "GET /version".into()).await {
        return r;
    }
    let v = lock(&s.0).version.clone();
    Json(json!({ "version": v, "revision": "6c9a8a1b" })).into_response()
}

async fn project(State(s): State<Shared>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("GET /projects/{id}")).await {
        return r;
    }
    let timeout = lock(&s.0).build_timeouts.get(&id).copied().unwrap_or(3600);
    Json(json!({ "id": id, "path_with_namespace": format!("group/project-{id}"), "build_timeout": timeout })).into_response()
}

async fn pending_jobs(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(id): Path<u64>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("GET /projects/{id}/jobs")).await {
        return r;
    }
    let scope: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "scope[]" || k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    let page: usize = q
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1);
    let per: usize = q
        .iter()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(20)
        .min(100);
    let w = lock(&s.0);
    let all: Vec<Value> = w
        .jobs
        .values()
        .filter(|j| j.project_id == id && (scope.is_empty() || scope.contains(&j.status.as_str())))
        .map(|j| job_json(&w, j))
        .collect();
    let items: Vec<Value> = all
        .into_iter()
        .skip((page.max(1) - 1) * per)
        .take(per)
        .collect();
    Json(items).into_response()
}

async fn one_job(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((id, job)): Path<(u64, u64)>,
) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("GET /projects/{id}/jobs/{job}")).await {
        return r;
    }
    let w = lock(&s.0);
    match w.jobs.get(&job).filter(|j| j.project_id == id) {
        Some(j) => Json(job_json(&w, j)).into_response(),
        None => err(StatusCode::NOT_FOUND, "404 Job Not Found"),
    }
}

#[derive(Deserialize)]
struct NewRunner {
    runner_type: String,
    project_id: Option<u64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tag_list: Vec<String>,
    #[serde(default)]
    run_untagged: bool,
    #[serde(default)]
    paused: bool,
}

async fn create_runner(
    State(s): State<Shared>,
    h: HeaderMap,
    Json(r): Json<NewRunner>,
) -> Response {
    if let Err(resp) = api_gate(&s, &h, "POST /user/runners".into()).await {
        return resp;
    }
    let (Some(project_id), "project_type") = (r.project_id, r.runner_type.as_str()) else {
        return err(
            StatusCode::BAD_REQUEST,
            "project_id is required for project_type runners",
        );
    };
    let mut w = lock(&s.0);
    let id = w.id() as i64;
    let token = format!("glrt-{:020x}", rand_u128() & 0xffff_ffff_ffff_ffff_ffff);
    w.runners.insert(
        id,
        Runner {
            id,
            token: token.clone(),
            project_id,
            tags: r.tag_list,
            run_untagged: r.run_untagged,
            description: r.description,
            paused: r.paused,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "token": token, "token_expires_at": null })),
    )
        .into_response()
}

async fn delete_runner(State(s): State<Shared>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("DELETE /runners/{id}")).await {
        return r;
    }
    match lock(&s.0).runners.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => err(StatusCode::NOT_FOUND, "404 Runner Not Found"),
    }
}

fn hook_json(h: &Hook) -> Value {
    let mut v = json!({ "id": h.id, "url": h.url, "project_id": h.project_id, "token_present": !h.token.is_empty() });
    for (k, on) in &h.events {
        v[k] = json!(on);
    }
    v
}

async fn list_hooks(State(s): State<Shared>, h: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("GET /projects/{id}/hooks")).await {
        return r;
    }
    let w = lock(&s.0);
    Json(
        w.hooks
            .values()
            .filter(|x| x.project_id == id)
            .map(hook_json)
            .collect::<Vec<_>>(),
    )
    .into_response()
}

fn hook_from(id: u64, project_id: u64, body: &Value) -> Hook {
    let events = [
        "job_events",
        "pipeline_events",
        "push_events",
        "merge_requests_events",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            body.get(*k)
                .and_then(Value::as_bool)
                .unwrap_or(*k == "push_events"),
        )
    })
    .collect();
    Hook {
        id,
        project_id,
        url: body
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        token: body
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        events,
    }
}

async fn add_hook(
    State(s): State<Shared>,
    h: HeaderMap,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("POST /projects/{id}/hooks")).await {
        return r;
    }
    let mut w = lock(&s.0);
    let hid = w.id();
    let hook = hook_from(hid, id, &body);
    let out = hook_json(&hook);
    w.hooks.insert(hid, hook);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn edit_hook(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((id, hook)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("PUT /projects/{id}/hooks/{hook}")).await {
        return r;
    }
    let mut w = lock(&s.0);
    if !w.hooks.contains_key(&hook) {
        return err(StatusCode::NOT_FOUND, "404 Not found");
    }
    let new = hook_from(hook, id, &body);
    let out = hook_json(&new);
    w.hooks.insert(hook, new);
    Json(out).into_response()
}

async fn remove_hook(
    State(s): State<Shared>,
    h: HeaderMap,
    Path((id, hook)): Path<(u64, u64)>,
) -> Response {
    if let Err(r) = api_gate(&s, &h, format!("DELETE /projects/{id}/hooks/{hook}")).await {
        return r;
    }
    match lock(&s.0).hooks.remove(&hook) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => err(StatusCode::NOT_FOUND, "404 Not found"),
    }
}

/// `POST /api/v4/jobs/request` (what gitlab-runner calls to take a job): the oldest pending
/// job of the runner's project whose tags the runner has becomes running on it.
async fn request_job(State(s): State<Shared>, Json(body): Json<Value>) -> Response {
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (job_id, payload) = {
        let mut w = lock(&s.0);
        let Some(runner) = w.runners.values().find(|r| r.token == token).cloned() else {
            return err(StatusCode::FORBIDDEN, "403 Forbidden");
        };
        if runner.paused {
            return StatusCode::NO_CONTENT.into_response();
        }
        let fits = |j: &Job| {
            j.status == "pending"
                && j.project_id == runner.project_id
                && if j.tags.is_empty() {
                    runner.run_untagged
                } else {
                    j.tags.iter().all(|t| runner.tags.contains(t))
                }
        };
        let Some(id) = w.jobs.values().find(|j| fits(j)).map(|j| j.id) else {
            return StatusCode::NO_CONTENT.into_response();
        };
        let job = w.jobs.get_mut(&id).expect("found above");
        job.status = "running".into();
        job.runner_id = Some(runner.id);
        let j = job.clone();
        let payload = json!({
            "id": j.id, "token": format!("job-token-{}", j.id),
            "job_info": { "id": j.id, "name": j.name, "stage": "test", "project_id": j.project_id },
            "variables": [{ "key": "FAKE_JOB_DURATION", "value": j.duration_s.to_string() }, { "key": "FAKE_JOB_EXIT_CODE", "value": j.exit_code.to_string() }],
        });
        (id, payload)
    };
    let delivery = format!("{:032x}", rand_u128());
    deliver_job(&s, job_id, &delivery).await;
    (StatusCode::CREATED, Json(payload)).into_response()
}

/// `PUT /api/v4/jobs/:id` (what gitlab-runner calls to finish a job): `state` success or
/// failed, authenticated by the job's token.
async fn update_job(
    State(s): State<Shared>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    let state = body
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let token = body.get("token").and_then(Value::as_str).unwrap_or("");
    if token != format!("job-token-{id}") {
        return err(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    if !matches!(state.as_str(), "success" | "failed" | "running") {
        return err(
            StatusCode::BAD_REQUEST,
            "state must be running, success or failed",
        );
    }
    {
        let mut w = lock(&s.0);
        let Some(j) = w.jobs.get_mut(&id) else {
            return err(StatusCode::NOT_FOUND, "404 Not found");
        };
        j.status = state.clone();
    }
    if state != "running" {
        let delivery = format!("{:032x}", rand_u128());
        deliver_job(&s, id, &delivery).await;
    }
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
struct ControlJob {
    project_id: u64,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    exit_code: Option<i32>,
}

fn default_name() -> String {
    "test".into()
}

async fn control_create_job(State(s): State<Shared>, Json(c): Json<ControlJob>) -> Response {
    let job = {
        let mut w = lock(&s.0);
        let id = w.id();
        let job = Job {
            id,
            project_id: c.project_id,
            pipeline_id: 1000 + id,
            name: c.name,
            tags: c.tags,
            status: "pending".into(),
            runner_id: None,
            duration_s: c.duration_s.unwrap_or(0.2),
            exit_code: c.exit_code.unwrap_or(0),
        };
        w.jobs.insert(id, job.clone());
        job
    };
    let delivery = format!("{:032x}", rand_u128());
    deliver_job(&s, job.id, &delivery).await;
    (
        StatusCode::CREATED,
        Json(json!({ "id": job.id, "delivery": delivery })),
    )
        .into_response()
}

async fn control_status(
    State(s): State<Shared>,
    Path(id): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("success")
        .to_string();
    if let Some(j) = lock(&s.0).jobs.get_mut(&id) {
        j.status = status;
    }
    let delivery = format!("{:032x}", rand_u128());
    deliver_job(&s, id, &delivery).await;
    StatusCode::OK.into_response()
}

async fn control_faults(State(s): State<Shared>, Json(faults): Json<Vec<Fault>>) -> Response {
    lock(&s.0).faults.extend(faults);
    StatusCode::OK.into_response()
}

async fn control_state(State(s): State<Shared>) -> Response {
    let w = lock(&s.0);
    Json(json!({
        "jobs": w.jobs.values().map(|j| json!({ "id": j.id, "project_id": j.project_id, "status": j.status, "tags": j.tags, "runner_id": j.runner_id })).collect::<Vec<_>>(),
        "runners": w.runners.values().map(|r| json!({ "id": r.id, "project_id": r.project_id, "tags": r.tags, "description": r.description })).collect::<Vec<_>>(),
        "hooks": w.hooks.values().map(hook_json).collect::<Vec<_>>(),
        "deliveries": w.deliveries.len(),
    }))
    .into_response()
}
