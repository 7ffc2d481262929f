//! What runner mode's process tests share: the built binaries, a MotherGoose stand-in and
//! a download server (axum on loopback), runner configurations, and waiting for events.
#![allow(dead_code)]

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gosling_api::{Heartbeat, HeartbeatReply, Instruction, JobResult};
use gosling_standins::fake_gitlab_runner::{read_events, DIR_ENV};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any awaited event may take (generous: the machine is shared).
pub const PATIENCE: Duration = Duration::from_secs(90);
pub const RUNNER_ID: &str = "r1";
pub const CREDENTIAL: &str = "gsr_r1.test-credential";
pub const TOKEN: &str = "glrt-test-token-123";

/// An example binary of this package (`cargo test` builds them beside the tests).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let debug = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = debug.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p gosling-runner` builds it (or `cargo build -p gosling-runner --examples`)",
        path.display()
    );
    path
}

/// Waits until `cond` holds, or panics with `what` and `context()`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > PATIENCE {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shell script standing for gitlab-runner `version` (the fake, reporting it).
pub fn agent_script(version: &str) -> String {
    format!(
        "#!/bin/sh\nFAKE_GITLAB_RUNNER_VERSION={version} exec '{}' \"$@\"\n",
        example("fake-gitlab-runner").display()
    )
}

pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An egg of the IR, as JSON (so that fields added to the IR later keep their defaults).
pub fn egg(kind: &str, environment: Value, hash: &str) -> Value {
    json!({
        "name": "my-app",
        "type": kind,
        "cloud": {"provider": "yandex", "region": "ru-central1-a", "preemptible": false},
        "resources": {"cpu": 2, "memory_mb": 4096, "disk_gb": 20},
        "runner": {"tags": ["docker"], "concurrent": 2, "idle_timeout_s": 600, "timeout_s": 3600,
                   "image": "alpine:3.20", "privileged": kind == "vm", "run_untagged": false},
        "gitlab": {"url": "https://gitlab.example.com", "project_id": 42, "token_secret": "vault://gitlab/runner-token"},
        "environment": environment,
        "config_hash": hash
    })
}

/// A runner configuration (MotherGoose's `GET /runners/{id}/config`) as JSON.
pub fn runner_config(kind: &str, ephemeral: bool) -> Value {
    json!({
        "runner_id": RUNNER_ID,
        "egg": egg(kind, json!({"APP_ENV": "ci"}), "hash-1"),
        "gitlab_url": "https://gitlab.example.com",
        "gitlab_token": TOKEN,
        "gitlab_version": "17.5.3-ee",
        "ephemeral": ephemeral,
        "heartbeat_interval_s": 30
    })
}

/// What the MotherGoose stand-in does and saw.
#[derive(Default)]
pub struct Mg {
    pub config: Mutex<Option<Value>>,
    /// Heartbeats accepted, with when they arrived.
    pub heartbeats: Mutex<Vec<(Instant, Heartbeat)>>,
    /// Heartbeat requests, answered or not.
    pub attempts: AtomicUsize,
    /// Answer 503 to everything.
    pub down: AtomicBool,
    /// Answer 401 to everything (the runner was terminated).
    pub revoked: AtomicBool,
    /// The instruction for the next heartbeat.
    pub instruction: Mutex<Option<Instruction>>,
    pub results: Mutex<Vec<JobResult>>,
}

impl Mg {
    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        self.heartbeats
            .lock()
            .unwrap()
            .iter()
            .map(|(_, h)| h.clone())
            .collect()
    }

    pub fn instruct(&self, i: Instruction) {
        *self.instruction.lock().unwrap() = Some(i);
    }
}

/// The refusal to answer with, if the request may not go on.
fn check(mg: &Mg, headers: &HeaderMap, id: &str) -> Option<Response> {
    if mg.down.load(Ordering::SeqCst) {
        return Some((StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response());
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {CREDENTIAL}") || mg.revoked.load(Ordering::SeqCst) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "the credential is not valid"})),
            )
                .into_response(),
        );
    }
    if id != RUNNER_ID {
        return Some(
            (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "a runner may act only as itself"})),
            )
                .into_response(),
        );
    }
    None
}

async fn config(
    State(mg): State<Arc<Mg>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = check(&mg, &headers, &id) {
        return r;
    }
    match mg.config.lock().unwrap().clone() {
        Some(c) => Json(c).into_response(),
        None => StatusCode::GONE.into_response(),
    }
}

async fn heartbeat(
    State(mg): State<Arc<Mg>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Json(hb): Json<Heartbeat>,
) -> Response {
    mg.attempts.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = check(&mg, &headers, &id) {
        return r;
    }
    mg.heartbeats.lock().unwrap().push((Instant::now(), hb));
    let instruction = mg.instruction.lock().unwrap().take();
    Json(HeartbeatReply {
        runner_state: "active".into(),
        instruction,
        config_hash: None,
    })
    .into_response()
}

async fn job_result(
    State(mg): State<Arc<Mg>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Json(r): Json<JobResult>,
) -> Response {
    if let Some(resp) = check(&mg, &headers, &id) {
        return resp;
    }
    mg.results.lock().unwrap().push(r);
    StatusCode::NO_CONTENT.into_response()
}

fn serve(app: Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    url
}

/// Starts a MotherGoose stand-in; its URL.
pub fn start_mothergoose(mg: Arc<Mg>) -> String {
    serve(
        Router::new()
            .route("/runners/{id}/config", get(config))
            .route("/runners/{id}/heartbeat", post(heartbeat))
            .route("/runners/{id}/job-result", post(job_result))
            .with_state(mg),
    )
}

/// A download server: path → (status, body); anything else 404.
#[derive(Default)]
pub struct Files(pub Mutex<HashMap<String, (u16, Vec<u8>)>>);

async fn file(State(files): State<Arc<Files>>, UrlPath(path): UrlPath<String>) -> Response {
    match files.0.lock().unwrap().get(&format!("/{path}")) {
        Some((status, body)) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub fn start_downloads(files: Arc<Files>) -> String {
    serve(Router::new().route("/{*path}", get(file)).with_state(files))
}

/// One runner-mode test: a folder with the fake's jobs, the runner's folder, the agent.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub jobs: PathBuf,
    pub work: PathBuf,
    pub agent: PathBuf,
    pub config_file: PathBuf,
    pub mg: Arc<Mg>,
    pub mg_url: String,
}

impl Rig {
    /// A rig with `config` in a file, the fake agent (17.5.0) installed, MotherGoose up.
    pub fn new(config: &Value) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("gitlab");
        std::fs::create_dir_all(&jobs).unwrap();
        let agent = dir.path().join("bin/gitlab-runner");
        write_executable(&agent, &agent_script("17.5.0"));
        let config_file = dir.path().join("runner.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mg = Arc::new(Mg::default());
        *mg.config.lock().unwrap() = Some(config.clone());
        let mg_url = start_mothergoose(mg.clone());
        Rig {
            work: dir.path().join("work"),
            dir,
            jobs,
            agent,
            config_file,
            mg,
            mg_url,
        }
    }

    pub fn set_config(&self, config: &Value) {
        std::fs::write(&self.config_file, config.to_string()).unwrap();
        *self.mg.config.lock().unwrap() = Some(config.clone());
    }

    /// Puts a job for the fake to take.
    pub fn add_job(&self, name: &str, spec: &str) {
        let tmp = self.jobs.join(format!("{name}.tmp"));
        std::fs::write(&tmp, spec).unwrap();
        std::fs::rename(tmp, self.jobs.join(format!("{name}.job"))).unwrap();
    }

    pub fn release(&self, name: &str) {
        std::fs::write(self.jobs.join(format!("{name}.release")), "").unwrap();
    }

    pub fn events(&self) -> Vec<(String, BTreeMap<String, String>)> {
        read_events(&self.jobs)
    }

    pub fn has_event(&self, event: &str, field: (&str, &str)) -> bool {
        self.count_events(event, field) > 0
    }

    pub fn count_events(&self, event: &str, (k, v): (&str, &str)) -> usize {
        self.events()
            .iter()
            .filter(|(e, f)| {
                e == event && (k.is_empty() || f.get(k).map(String::as_str) == Some(v))
            })
            .count()
    }

    pub fn config_toml(&self) -> String {
        std::fs::read_to_string(self.work.join("config.toml")).unwrap_or_default()
    }

    /// Starts runner mode with the configuration file, heartbeats to the stand-in, and
    /// `extra` options.
    pub fn start(&self, extra: &[&str]) -> Runner {
        let mut args: Vec<String> = vec![
            "--config".into(),
            self.config_file.display().to_string(),
            "--runner-id".into(),
            RUNNER_ID.into(),
            "--egg-name".into(),
            "my-app".into(),
            "--mothergoose-url".into(),
            self.mg_url.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.start_with(&args)
    }

    /// Starts runner mode with exactly `args` (plus the agent, folder and poll options).
    pub fn start_with(&self, args: &[String]) -> Runner {
        let log = self.dir.path().join(format!("runner-{}.log", now_ms()));
        let mut cmd = Command::new(example("gosling-runner"));
        cmd.args(args)
            .args(["--agent-path", &self.agent.display().to_string()])
            .args(["--work-dir", &self.work.display().to_string()])
            .args(["--poll-interval", "100ms"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GOSLING_RUNNER_CREDENTIAL", CREDENTIAL)
            .env("GOSLING_LOG", "info")
            .env(DIR_ENV, &self.jobs)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        Runner {
            child: Some(cmd.spawn().expect("starting runner mode")),
            log,
        }
    }

    /// Everything a failed wait should show.
    pub fn context(&self, runner: &Runner) -> String {
        format!(
            "--- runner log ---\n{}\n--- fake events ---\n{}\n--- heartbeats ---\n{:?}",
            runner.log_text(),
            std::fs::read_to_string(self.jobs.join("events.log")).unwrap_or_default(),
            self.mg
                .heartbeats()
                .iter()
                .map(|h| (h.state, h.jobs_running, h.job_count, h.failure_count))
                .collect::<Vec<_>>()
        )
    }

    /// Waits for the fake to record `event` with `field`.
    pub fn wait_event(&self, runner: &Runner, event: &str, field: (&str, &str)) {
        wait_for(
            &format!("event {event} {field:?}"),
            || self.has_event(event, field),
            || self.context(runner),
        );
    }

    /// Waits for a heartbeat satisfying `pred`.
    pub fn wait_heartbeat(&self, runner: &Runner, what: &str, pred: impl Fn(&Heartbeat) -> bool) {
        wait_for(
            &format!("a heartbeat: {what}"),
            || self.mg.heartbeats().iter().any(&pred),
            || self.context(runner),
        );
    }

    /// Waits for runner mode to exit.
    pub fn wait_exit(&self, runner: &mut Runner) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = runner.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > PATIENCE {
                panic!("runner mode did not exit\n{}", self.context(runner));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent pids the fake recorded, in start order.
    pub fn agent_pids(&self) -> Vec<i32> {
        self.events()
            .iter()
            .filter(|(e, _)| e == "agent-start")
            .filter_map(|(_, f)| f.get("pid")?.parse().ok())
            .collect()
    }
}

pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Whether process `pid` is alive (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A runner-mode process, killed when dropped.
pub struct Runner {
    child: Option<Child>,
    log: PathBuf,
}

impl Runner {
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    pub fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
