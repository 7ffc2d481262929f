//! A fake `gitlab-runner` for runner mode's tests: the same command line, the same
//! config.toml, the same signals and the same observable state as the real agent, with
//! "GitLab" replaced by a folder of job files.
//!
//! What it does, like the real one:
//! - `--version` prints the version block (`Version:      17.5.0`, …);
//! - `run --config F [--working-directory D] [--listen-address A]` reads F (refusing a
//!   missing or invalid file), takes up to `concurrent` jobs at once and serves Prometheus
//!   metrics on `listen_address` (`gitlab_runner_jobs`, `gitlab_runner_jobs_total`,
//!   `gitlab_runner_failed_jobs_total`);
//! - `run-single` with `-u URL -t TOKEN --executor E` or `--config F --runner NAME`, plus
//!   `--max-builds N` and `--wait-timeout S`: no metrics server; exits after N jobs, or
//!   when no job came for S seconds;
//! - logs `Checking for jobs... received job=NAME` when it takes a job;
//! - SIGQUIT: takes no new job, exits 0 once the running jobs finished; SIGTERM or SIGINT:
//!   aborts the running jobs and exits 0; SIGHUP: reads the config file again.
//!
//! Where jobs come from: with `FAKE_GITLAB_RUNNER_DIR` set, from that folder (below);
//! without it, from GitLab itself like the real agent: `POST {url}/api/v4/jobs/request`
//! with the runner's token every `FAKE_GITLAB_RUNNER_POLL_MS` (default 500; plain `http://`
//! only, e.g. gosling-standins' GitLab), the job's `FAKE_JOB_DURATION` and
//! `FAKE_JOB_EXIT_CODE` variables say how long it runs and how it ends, and
//! `PUT {url}/api/v4/jobs/{id}` with the job's token reports `success` or `failed`.
//!
//! A folder job is a file `NAME.job` of `key=value` lines:
//! `duration=SECONDS`, or `until=release` (runs until `NAME.release` exists), or
//! `until=never`; `exit=N` (the job's status, default 0); `crash=true` (the agent itself
//! dies with status 1 when it takes the job). Taking a job renames it to `NAME.taken` (so
//! two agents never take the same one) and writes `NAME.env`, the job's environment from
//! config.toml. Everything that happens is appended to `events.log` (in the folder, or in
//! `FAKE_GITLAB_RUNNER_EVENTS_DIR` when jobs come from GitLab), one line each:
//! `agent-start`, `signal name=QUIT|TERM|INT|HUP`, `job-start`, `job-end`, `job-abort`,
//! `crash`, `agent-exit`, each with `pid=`. `FAKE_GITLAB_RUNNER_VERSION` sets the version.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The folder the fake takes jobs from and records events to.
pub const DIR_ENV: &str = "FAKE_GITLAB_RUNNER_DIR";
/// The version the fake reports.
pub const VERSION_ENV: &str = "FAKE_GITLAB_RUNNER_VERSION";
/// Where `events.log` goes when jobs come from GitLab.
pub const EVENTS_DIR_ENV: &str = "FAKE_GITLAB_RUNNER_EVENTS_DIR";
/// Milliseconds between GitLab job requests (default 500).
pub const POLL_MS_ENV: &str = "FAKE_GITLAB_RUNNER_POLL_MS";
/// The version reported when [`VERSION_ENV`] is not set.
pub const DEFAULT_VERSION: &str = "17.5.0";

static QUIT: AtomicUsize = AtomicUsize::new(0);
static TERM: AtomicUsize = AtomicUsize::new(0);
static INT: AtomicUsize = AtomicUsize::new(0);
static HUP: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    let counter = match sig {
        libc::SIGQUIT => &QUIT,
        libc::SIGTERM => &TERM,
        libc::SIGINT => &INT,
        _ => &HUP,
    };
    counter.fetch_add(1, Ordering::SeqCst);
}

fn install_handlers() {
    for sig in [libc::SIGQUIT, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only touches atomics (async-signal-safe); the sigaction
        // struct is zeroed and then filled in before use.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

struct Events {
    file: Option<PathBuf>,
    pid: u32,
}

impl Events {
    fn record(&self, line: &str) {
        let Some(path) = &self.file else { return };
        let text = format!("{line} pid={}\n", self.pid);
        // One write(2) of a short line on an O_APPEND file: lines never interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

#[derive(Default)]
struct Config {
    concurrent: usize,
    listen_address: Option<String>,
    /// `[[runners]]`: name → (url, token, environment).
    runners: Vec<(String, String, String, Vec<String>)>,
}

fn read_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("loading config file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("parsing config file {}: {e}", path.display()))?;
    let concurrent = table
        .get("concurrent")
        .and_then(|v| v.as_integer())
        .unwrap_or(1)
        .max(1) as usize;
    let listen_address = table
        .get("listen_address")
        .and_then(|v| v.as_str())
        .map(String::from);
    let mut runners = Vec::new();
    if let Some(list) = table.get("runners").and_then(|v| v.as_array()) {
        for r in list {
            let s = |k: &str| {
                r.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let env = r
                .get("environment")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            runners.push((s("name"), s("url"), s("token"), env));
        }
    }
    Ok(Config {
        concurrent,
        listen_address,
        runners,
    })
}

#[derive(Clone, Debug)]
enum Until {
    Elapsed(Duration),
    Release,
    Never,
}

struct Job {
    name: String,
    started: Instant,
    until: Until,
    exit: i32,
    /// A GitLab job: its id and job token, to report how it ended.
    gitlab: Option<(u64, String)>,
}

impl Job {
    fn done(&self, dir: Option<&Path>) -> bool {
        match &self.until {
            Until::Elapsed(d) => self.started.elapsed() >= *d,
            Until::Release => {
                dir.is_some_and(|d| d.join(format!("{}.release", self.name)).exists())
            }
            Until::Never => false,
        }
    }
}

/// Where jobs come from.
enum Source {
    /// Job files in a folder.
    Folder(PathBuf),
    /// GitLab's runner API: base URL (`http://host:port`, no path) and runner token.
    GitLab {
        url: String,
        token: String,
        every: Duration,
        last_poll: Option<Instant>,
    },
}

/// One HTTP/1.1 request to a plain-http `url` base; returns status and body.
fn http(url: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let host = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("the fake agent talks plain http only, not {url}"))?
        .trim_end_matches('/');
    let mut stream =
        std::net::TcpStream::connect(host).map_err(|e| format!("connecting to {host}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no HTTP status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// Asks GitLab for a job (`POST /api/v4/jobs/request`).
fn request_gitlab_job(url: &str, token: &str) -> Option<(String, Spec, (u64, String))> {
    let body = serde_json::json!({ "token": token, "info": { "name": "fake-gitlab-runner" } });
    let (status, text) = match http(url, "POST", "/api/v4/jobs/request", &body.to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("WARNING: Checking for jobs... failed  error={e}");
            return None;
        }
    };
    if status != 201 {
        if status != 204 {
            eprintln!("WARNING: Checking for jobs... failed  status={status}");
        }
        return None;
    }
    let job: serde_json::Value = serde_json::from_str(&text).ok()?;
    let id = job.get("id")?.as_u64()?;
    let job_token = job.get("token")?.as_str()?.to_string();
    let var = |k: &str| {
        job.get("variables")?
            .as_array()?
            .iter()
            .find(|v| v.get("key").and_then(|x| x.as_str()) == Some(k))?
            .get("value")?
            .as_str()
            .map(String::from)
    };
    let mut spec_text = String::new();
    if let Some(d) = var("FAKE_JOB_DURATION") {
        spec_text.push_str(&format!("duration={d}\n"));
    }
    if let Some(e) = var("FAKE_JOB_EXIT_CODE") {
        spec_text.push_str(&format!("exit={e}\n"));
    }
    Some((
        format!("gitlab-{id}"),
        parse_spec(&spec_text),
        (id, job_token),
    ))
}

/// Reports a GitLab job's end (`PUT /api/v4/jobs/:id`), a few times if GitLab fails.
fn finish_gitlab_job(url: &str, id: u64, job_token: &str, exit: i32) {
    let state = if exit == 0 { "success" } else { "failed" };
    let body = serde_json::json!({ "token": job_token, "state": state });
    for attempt in 0..5 {
        match http(url, "PUT", &format!("/api/v4/jobs/{id}"), &body.to_string()) {
            Ok((200, _)) => return,
            Ok((status, _)) => {
                eprintln!("WARNING: Updating job... failed  job={id} status={status}")
            }
            Err(e) => eprintln!("WARNING: Updating job... failed  job={id} error={e}"),
        }
        std::thread::sleep(Duration::from_millis(200 << attempt));
    }
}

/// A job taken: its name, how it runs, and for a GitLab job its id and job token.
type Taken = (String, Spec, Option<(u64, String)>);

impl Source {
    fn take(&mut self) -> Option<Taken> {
        match self {
            Source::Folder(d) => take_job(d).map(|(n, s)| (n, s, None)),
            Source::GitLab {
                url,
                token,
                every,
                last_poll,
            } => {
                if last_poll.is_some_and(|t| t.elapsed() < *every) {
                    return None;
                }
                *last_poll = Some(Instant::now());
                request_gitlab_job(url, token).map(|(n, s, g)| (n, s, Some(g)))
            }
        }
    }

    fn folder(&self) -> Option<&Path> {
        match self {
            Source::Folder(d) => Some(d),
            Source::GitLab { .. } => None,
        }
    }
}

struct Spec {
    until: Until,
    exit: i32,
    crash: bool,
}

fn parse_spec(text: &str) -> Spec {
    let mut spec = Spec {
        until: Until::Elapsed(Duration::ZERO),
        exit: 0,
        crash: false,
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match (k.trim(), v.trim()) {
            ("duration", v) => {
                let secs = v.trim_end_matches('s').parse::<f64>().unwrap_or(0.0);
                spec.until = Until::Elapsed(Duration::from_secs_f64(secs.clamp(0.0, 1e6)));
            }
            ("until", "release") => spec.until = Until::Release,
            ("until", "never") => spec.until = Until::Never,
            ("exit", v) => spec.exit = v.parse().unwrap_or(1),
            ("crash", v) => spec.crash = v == "true",
            _ => {}
        }
    }
    spec
}

/// Takes the first waiting job (by name), if any.
fn take_job(dir: &Path) -> Option<(String, Spec)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".job"))
                .map(String::from)
        })
        .collect();
    names.sort();
    for name in names {
        let taken = dir.join(format!("{name}.taken"));
        if std::fs::rename(dir.join(format!("{name}.job")), &taken).is_ok() {
            let text = std::fs::read_to_string(&taken).unwrap_or_default();
            return Some((name, parse_spec(&text)));
        }
    }
    None
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    total: AtomicU64,
    failed: AtomicU64,
}

fn serve_metrics(listener: TcpListener, counters: Arc<Counters>, runner: String) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let running = counters.running.load(Ordering::SeqCst);
            let body = format!(
                "# HELP gitlab_runner_jobs The current number of running builds.\n\
                 # TYPE gitlab_runner_jobs gauge\n\
                 gitlab_runner_jobs{{executor_stage=\"idle\",runner=\"{runner}\",stage=\"idle\",state=\"idle\",system_id=\"s_fake\"}} 0\n\
                 gitlab_runner_jobs{{executor_stage=\"docker_run\",runner=\"{runner}\",stage=\"step_script\",state=\"running\",system_id=\"s_fake\"}} {running}\n\
                 # HELP gitlab_runner_jobs_total Total number of handled jobs\n\
                 # TYPE gitlab_runner_jobs_total counter\n\
                 gitlab_runner_jobs_total{{runner=\"{runner}\",system_id=\"s_fake\"}} {}\n\
                 # TYPE gitlab_runner_failed_jobs_total counter\n\
                 gitlab_runner_failed_jobs_total{{failure_reason=\"script_failure\",runner=\"{runner}\",system_id=\"s_fake\"}} {}\n",
                counters.total.load(Ordering::SeqCst),
                counters.failed.load(Ordering::SeqCst),
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
}

fn version_text() -> String {
    let v = std::env::var(VERSION_ENV).unwrap_or_else(|_| DEFAULT_VERSION.to_string());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "Version:      {v}\nGit revision: fa1ce000\nGit branch:   {v}-stable\nGO version:   go1.22.0\nBuilt:        2026-01-01T00:00:00+0000\nOS/Arch:      linux/{arch}\n"
    )
}

fn fatal(msg: &str) -> ExitCode {
    eprintln!("FATAL: {msg}");
    ExitCode::from(1)
}

struct Options {
    single: bool,
    config: Option<PathBuf>,
    runner: Option<String>,
    url: Option<String>,
    token: Option<String>,
    executor: Option<String>,
    listen: Option<String>,
    max_builds: usize,
    wait_timeout: Option<Duration>,
}

fn parse_args(command: &str, args: &[String]) -> Result<Options, String> {
    let single = command == "run-single";
    let mut o = Options {
        single,
        config: None,
        runner: None,
        url: None,
        token: None,
        executor: None,
        listen: None,
        max_builds: 0,
        wait_timeout: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        // Boolean flags first; every other flag takes a value.
        if single && flag == "--docker-privileged" {
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("flag needs an argument: {flag}"))
        };
        match (single, flag) {
            (_, "-c" | "--config") => o.config = Some(PathBuf::from(value()?)),
            (false, "--working-directory" | "-d" | "--user" | "-u") => {
                value()?;
            }
            (false, "--listen-address") => o.listen = Some(value()?),
            (true, "-r" | "--runner") => o.runner = Some(value()?),
            (true, "-u" | "--url") => o.url = Some(value()?),
            (true, "-t" | "--token") => o.token = Some(value()?),
            (true, "--executor") => o.executor = Some(value()?),
            (true, "--max-builds") => {
                o.max_builds = value()?.parse().map_err(|_| "bad --max-builds")?;
            }
            (true, "--wait-timeout") => {
                let s: u64 = value()?.parse().map_err(|_| "bad --wait-timeout")?;
                o.wait_timeout = (s > 0).then(|| Duration::from_secs(s));
            }
            (true, "--docker-image" | "--builds-dir" | "--env" | "--shutdown-timeout") => {
                value()?;
            }
            _ => return Err(format!("flag provided but not defined: {flag}")),
        }
    }
    Ok(o)
}

/// The fake's `main`: runs with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-v" | "version") => {
            print!("{}", version_text());
            ExitCode::SUCCESS
        }
        Some(cmd @ ("run" | "run-single")) => match parse_args(cmd, &args[1..]) {
            Ok(o) => run(o),
            Err(e) => fatal(&e),
        },
        Some(other) => fatal(&format!("unknown command {other}")),
        None => fatal("no command"),
    }
}

fn run(o: Options) -> ExitCode {
    install_handlers();
    let dir = std::env::var_os(DIR_ENV).map(PathBuf::from);
    let events_dir = dir
        .clone()
        .or_else(|| std::env::var_os(EVENTS_DIR_ENV).map(PathBuf::from));
    let events = Events {
        file: events_dir.map(|d| d.join("events.log")),
        pid: std::process::id(),
    };
    let mut config = match &o.config {
        Some(path) => match read_config(path) {
            Ok(c) => c,
            Err(e) => return fatal(&e),
        },
        None if o.single => Config::default(),
        None => return fatal("run needs --config"),
    };
    let mut environment = Vec::new();
    let (mut url, mut token) = (o.url.clone(), o.token.clone());
    if o.single {
        if let Some(name) = &o.runner {
            let Some(r) = config.runners.iter().find(|r| &r.0 == name) else {
                return fatal(&format!("Error loading runner by name: {name} not found"));
            };
            url = Some(r.1.clone());
            token = Some(r.2.clone());
            environment = r.3.clone();
        } else if o.executor.is_none() {
            return fatal("Missing Executor");
        }
        if url.as_deref().unwrap_or_default().is_empty() {
            return fatal("Missing URL");
        }
        if token.as_deref().unwrap_or_default().is_empty() {
            return fatal("Missing Token");
        }
    } else if let Some(r) = config.runners.first() {
        environment = r.3.clone();
        url = Some(r.1.clone());
        token = Some(r.2.clone());
    }
    let mut source = match &dir {
        Some(d) => Some(Source::Folder(d.clone())),
        None => url.zip(token).map(|(url, token)| Source::GitLab {
            url,
            token,
            every: Duration::from_millis(
                std::env::var(POLL_MS_ENV)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(500),
            ),
            last_poll: None,
        }),
    };
    let counters = Arc::new(Counters::default());
    if !o.single {
        if let Some(addr) = o.listen.clone().or(config.listen_address.clone()) {
            match TcpListener::bind(&addr) {
                Ok(l) => {
                    let name = config.runners.first().map(|r| r.0.clone());
                    serve_metrics(l, counters.clone(), name.unwrap_or_default());
                }
                Err(e) => eprintln!("ERROR: Failed to create listener for metrics server: {e}"),
            }
        }
    }
    let version = std::env::var(VERSION_ENV).unwrap_or_else(|_| DEFAULT_VERSION.to_string());
    events.record(&format!(
        "agent-start version={version} command={} config={}",
        if o.single { "run-single" } else { "run" },
        o.config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));
    eprintln!("Runtime platform  arch=fake version={version}");

    let mut jobs: Vec<Job> = Vec::new();
    let mut stopping = false;
    let mut builds_left = o.max_builds;
    let mut last_build = Instant::now();
    let exit = |code: u8| {
        events.record(&format!("agent-exit code={code}"));
        ExitCode::from(code)
    };
    loop {
        for (counter, name) in [
            (&QUIT, "QUIT"),
            (&TERM, "TERM"),
            (&INT, "INT"),
            (&HUP, "HUP"),
        ] {
            for _ in 0..counter.swap(0, Ordering::SeqCst) {
                events.record(&format!("signal name={name}"));
                match name {
                    "QUIT" => {
                        eprintln!("WARNING: Requested quit, waiting for builds to finish");
                        stopping = true;
                    }
                    "HUP" => {
                        if let Some(path) = &o.config {
                            if let Ok(c) = read_config(path) {
                                config = c;
                            }
                        }
                    }
                    _ => {
                        eprintln!("WARNING: Requested exit: {name}");
                        for job in &jobs {
                            events.record(&format!("job-abort name={}", job.name));
                        }
                        return exit(0);
                    }
                }
            }
        }
        if let Some(source) = &mut source {
            let mut i = 0;
            while i < jobs.len() {
                if jobs[i].done(source.folder()) {
                    let job = jobs.remove(i);
                    if let (Some((id, job_token)), Source::GitLab { url, .. }) =
                        (&job.gitlab, &*source)
                    {
                        finish_gitlab_job(url, *id, job_token, job.exit);
                    }
                    if job.exit != 0 {
                        counters.failed.fetch_add(1, Ordering::SeqCst);
                        eprintln!(
                            "ERROR: Job failed: exit code {}  job={}",
                            job.exit, job.name
                        );
                    } else {
                        eprintln!("Job succeeded  job={}", job.name);
                    }
                    events.record(&format!("job-end name={} exit={}", job.name, job.exit));
                    counters.running.store(jobs.len(), Ordering::SeqCst);
                    last_build = Instant::now();
                } else {
                    i += 1;
                }
            }
            let room = if o.single {
                jobs.is_empty() && (o.max_builds == 0 || builds_left > 0)
            } else {
                jobs.len() < config.concurrent
            };
            if !stopping && room {
                if let Some((name, spec, gitlab)) = source.take() {
                    eprintln!("Checking for jobs... received  job={name}");
                    if spec.crash {
                        events.record(&format!("crash name={name}"));
                        return exit(1);
                    }
                    if let Some(d) = source.folder() {
                        let _ = std::fs::write(
                            d.join(format!("{name}.env")),
                            environment
                                .iter()
                                .map(|e| format!("{e}\n"))
                                .collect::<String>(),
                        );
                    }
                    events.record(&format!("job-start name={name}"));
                    counters.total.fetch_add(1, Ordering::SeqCst);
                    builds_left = builds_left.saturating_sub(1);
                    jobs.push(Job {
                        name,
                        started: Instant::now(),
                        until: spec.until,
                        exit: spec.exit,
                        gitlab,
                    });
                    counters.running.store(jobs.len(), Ordering::SeqCst);
                }
            }
        }
        if jobs.is_empty() {
            if stopping {
                return exit(0);
            }
            if o.single {
                if o.max_builds > 0 && builds_left == 0 {
                    eprintln!("This runner has processed its build limit, so now exiting");
                    return exit(0);
                }
                if o.wait_timeout.is_some_and(|w| last_build.elapsed() > w) {
                    eprintln!("This runner has not received a job in time, so now exiting");
                    return exit(0);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `events.log` of a fake's folder as (event, fields) pairs, for tests.
pub fn read_events(dir: &Path) -> Vec<(String, BTreeMap<String, String>)> {
    std::fs::read_to_string(dir.join("events.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let event = parts.next()?.to_string();
            let fields = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some((event, fields))
        })
        .collect()
}
