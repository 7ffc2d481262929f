//! The whole system as a platform team runs it, on one machine: a Nest deployed by the
//! `gosling` binary, `mothergoose serve` and `uglyfox run` as processes on the embedded
//! store with the local provider, runner-mode processes (`gosling runner` with the fake
//! gitlab-runner, which takes its jobs from GitLab), and the GitLab stand-in in this
//! process so that tests can shape its events. [`check`] compares GitLab, the state store,
//! the audit log and the local processes at the end.
#![warn(missing_docs)]

pub mod check;
pub mod load;
pub mod procs;
pub mod sample;

use gosling_standins::gitlab::GitLab;
use gosling_state::{open_state, Cipher, OpenOptions, StateStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The GitLab token of the eggs and of `gosling deploy`.
pub const GITLAB_TOKEN: &str = "glpat-system-test";

/// One egg of the Nest: serverless (one job per runner), its own tag, a project.
#[derive(Clone, Debug)]
pub struct EggSpec {
    /// Its name; jobs for it carry the tag `NAME`.
    pub name: String,
    /// Its GitLab project.
    pub project: u64,
    /// `max_runners`.
    pub max_runners: u32,
}

impl EggSpec {
    /// `count` eggs `e0…` over `projects` projects, each with `max_runners`.
    pub fn many(count: usize, projects: u64, max_runners: u32) -> Vec<EggSpec> {
        (0..count)
            .map(|i| EggSpec {
                name: format!("e{i}"),
                project: 1 + i as u64 % projects,
                max_runners,
            })
            .collect()
    }

    fn fly(&self, gitlab: &str) -> String {
        format!(
            "egg \"{n}\" {{\n  type = \"serverless\"\n  cloud {{\n    provider = \"aws\"\n    region = \"eu-west-1\"\n  }}\n  resources {{\n    memory = 2048\n  }}\n  runner {{\n    tags = [\"{n}\"]\n    concurrent = 1\n    timeout = \"30m\"\n    max_runners = {m}\n  }}\n  gitlab {{\n    url = \"{gitlab}\"\n    project_id = {p}\n    token_secret = \"vault://gitlab/token\"\n  }}\n}}\n",
            n = self.name,
            m = self.max_runners,
            p = self.project
        )
    }
}

/// The workspace's binaries this harness runs.
#[derive(Clone, Debug)]
pub struct Bins {
    /// `gosling`.
    pub gosling: PathBuf,
    /// `mothergoose`.
    pub mothergoose: PathBuf,
    /// `uglyfox`.
    pub uglyfox: PathBuf,
    /// The fake `gitlab-runner`.
    pub agent: PathBuf,
}

impl Bins {
    /// The workspace's binaries beside this executable's profile folder (`cargo test
    /// --workspace` builds them all); when one is missing they are built now. After
    /// changing gosling, MotherGoose, UglyFox or the stand-ins, test with `--workspace`
    /// (or build them) so that these are not stale.
    pub fn build() -> Bins {
        let dir = target_dir();
        let bins = Bins {
            gosling: dir.join("gosling"),
            mothergoose: dir.join("mothergoose"),
            uglyfox: dir.join("uglyfox"),
            agent: dir.join("fake-gitlab-runner"),
        };
        let all = [&bins.gosling, &bins.mothergoose, &bins.uglyfox, &bins.agent];
        if all.iter().all(|b| b.is_file()) {
            return bins;
        }
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-q", "--bins"]);
        for p in ["gosling", "mothergoose", "uglyfox", "gosling-standins"] {
            cargo.args(["-p", p]);
        }
        if !cfg!(debug_assertions) {
            cargo.arg("--release");
        }
        assert!(
            cargo.status().expect("cargo runs").success(),
            "building the binaries failed"
        );
        bins
    }
}

/// `target/debug` (or the profile folder this executable runs from).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe folder");
    if dir.ends_with("deps") {
        dir.parent().expect("profile folder").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// How the services run.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Runner heartbeats (and UglyFox's `--metrics-interval`).
    pub heartbeat: Duration,
    /// MotherGoose's reconciler.
    pub reconcile: Duration,
    /// MotherGoose's task workers.
    pub workers: u32,
    /// UglyFox's pass interval (`check_interval` of the Nest).
    pub check_interval: &'static str,
    /// MotherGoose's `--task-lease`: how soon a killed MotherGoose's tasks are taken up.
    pub task_lease: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            heartbeat: Duration::from_secs(1),
            reconcile: Duration::from_secs(3),
            workers: 8,
            check_interval: "2s",
            task_lease: Duration::from_secs(3),
        }
    }
}

/// The most runners alive at once per egg, sampled while a test runs.
pub struct LimitWatch {
    peaks: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LimitWatch {
    /// Stops watching; the peaks by egg.
    pub fn finish(self) -> BTreeMap<String, usize> {
        self.task.abort();
        self.peaks.lock().unwrap().clone()
    }
}

/// Where the system keeps its state, deployments and task queue.
pub enum Backend {
    /// The embedded defaults: SQLite store and queue, a local folder of objects.
    Embedded,
    /// DynamoDB, S3 and SQS on `moto_server` (started here, stopped with the system).
    Moto,
    /// DynamoDB and S3 on `moto_server`, the embedded queue: a store that can be frozen
    /// ([`System::freeze_store`]) while the queue stays up.
    MotoStore,
}

/// The URLs of a backend's stores (`None`: the default beside an embedded state).
struct Urls {
    state: String,
    objects: Option<String>,
    queue: Option<String>,
    moto: Option<gosling_standins::Moto>,
}

impl Urls {
    async fn of(backend: Backend, nest: &Path) -> Urls {
        match backend {
            Backend::Embedded => Urls {
                state: format!("sqlite://{}", nest.join(".gosling/state.db").display()),
                objects: None,
                queue: None,
                moto: None,
            },
            Backend::Moto | Backend::MotoStore => {
                let moto = gosling_standins::Moto::start();
                let e = &moto.endpoint;
                let objects = format!("s3://gosling-objects/nest?endpoint={e}&region=us-east-1");
                let opts = OpenOptions {
                    read_only: false,
                    credentials: Some(gosling_standins::Moto::credentials()),
                };
                let s3 = gosling_state::open_s3(&objects, &opts)
                    .await
                    .expect("s3 url")
                    .expect("an s3 store");
                s3.create_bucket().await.expect("bucket");
                Urls {
                    state: format!("dynamodb://gosling?endpoint={e}&region=us-east-1"),
                    objects: Some(objects),
                    queue: Some(match backend {
                        Backend::MotoStore => {
                            format!("sqlite://{}", nest.with_file_name("queue.db").display())
                        }
                        _ => format!("sqs://gosling-tasks?endpoint={e}&region=us-east-1"),
                    }),
                    moto: Some(moto),
                }
            }
        }
    }
}

/// A deployed system with its services.
pub struct System {
    /// Everything it writes.
    pub dir: tempfile::TempDir,
    /// The GitLab stand-in.
    pub gitlab: GitLab,
    /// The binaries.
    pub bins: Bins,
    /// The eggs deployed.
    pub eggs: Vec<EggSpec>,
    /// The state store URL.
    pub state: String,
    objects: Option<String>,
    queue: Option<String>,
    moto: Option<gosling_standins::Moto>,
    /// The store, as the checker reads it.
    pub store: Arc<dyn StateStore>,
    /// MotherGoose's base URL.
    pub mothergoose_url: String,
    tuning: Tuning,
    key: String,
    port: u16,
    mothergoose: Option<Child>,
    uglyfox: Option<Child>,
}

impl System {
    /// Deploys `eggs` with `gosling` (secret set, deploy with the webhook at MotherGoose),
    /// then starts MotherGoose and UglyFox, on the embedded stores.
    pub async fn start(bins: Bins, eggs: Vec<EggSpec>, tuning: Tuning) -> System {
        System::start_on(Backend::Embedded, bins, eggs, tuning).await
    }

    /// [`start`](System::start) on `backend`.
    pub async fn start_on(
        backend: Backend,
        bins: Bins,
        eggs: Vec<EggSpec>,
        tuning: Tuning,
    ) -> System {
        let mut dir = tempfile::tempdir().expect("temp dir");
        if std::env::var_os("SYSTEM_KEEP").is_some() {
            // For a look afterwards: logs, store, queue and runner folders stay.
            dir.disable_cleanup(true);
            eprintln!("system folder (kept): {}", dir.path().display());
        }
        let gitlab = GitLab::start(GITLAB_TOKEN).await.expect("GitLab stand-in");
        let port = free_port();
        let nest = dir.path().join("nest");
        std::fs::create_dir_all(nest.join("Eggs")).unwrap();
        std::fs::create_dir_all(nest.join("UF")).unwrap();
        for e in &eggs {
            std::fs::write(
                nest.join(format!("Eggs/{}.fly", e.name)),
                e.fly(&gitlab.url),
            )
            .unwrap();
        }
        std::fs::write(nest.join("UF/uglyfox.fly"), uglyfox_fly(&tuning)).unwrap();
        let urls = Urls::of(backend, &nest).await;
        let state = urls.state.clone();
        let key = Cipher::generate_key();
        let opts = OpenOptions {
            read_only: false,
            credentials: urls
                .moto
                .as_ref()
                .map(|_| gosling_standins::Moto::credentials()),
        };
        let mut sys = System {
            store: Arc::from(open_state(&state, &opts).await.expect("state store")),
            objects: urls.objects,
            queue: urls.queue,
            moto: urls.moto,
            dir,
            gitlab,
            bins,
            eggs,
            state,
            mothergoose_url: format!("http://127.0.0.1:{port}"),
            tuning,
            key,
            port,
            mothergoose: None,
            uglyfox: None,
        };
        sys.gosling(&["secret", "set", "vault://gitlab/token"], GITLAB_TOKEN);
        let hook = format!("{}/webhooks/gitlab", sys.mothergoose_url);
        sys.gosling(
            &[
                "deploy",
                "-q",
                "--gitlab-token",
                GITLAB_TOKEN,
                "--webhook-url",
                &hook,
            ],
            "",
        );
        sys.start_mothergoose().await;
        sys.start_uglyfox();
        sys
    }

    fn nest(&self) -> PathBuf {
        self.dir.path().join("nest")
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file")
    }

    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("GOSLING_STATE_KEY", &self.key)
            .env("GOSLING_CONFIG", self.dir.path().join("gosling.toml"))
            .env("GOSLING_AGENT_PATH", &self.bins.agent)
            .env("FAKE_GITLAB_RUNNER_POLL_MS", "100")
            .env("FAKE_GITLAB_RUNNER_EVENTS_DIR", self.dir.path())
            .env("FAKE_GITLAB_RUNNER_VERSION", "17.5.0")
            .env_remove("FAKE_GITLAB_RUNNER_DIR")
            .env("GOSLING_LOG", "info")
            .env("MOTHERGOOSE_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        c
    }

    /// `--objects`, `--queue` (when not the defaults) and the runners' folder.
    fn store_args(&self, c: &mut Command, queue: bool, runners_flag: &str) {
        if let Some(o) = &self.objects {
            c.arg("--objects").arg(o);
        }
        if let (true, Some(q)) = (queue, &self.queue) {
            c.arg("--queue").arg(q);
        }
        if !runners_flag.is_empty() {
            c.arg(runners_flag).arg(self.dir.path().join("runners"));
        }
    }

    /// Runs `gosling ARGS` in the Nest with `input` on standard input; panics on failure.
    pub fn gosling(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        std::fs::write(self.dir.path().join("gosling.toml"), "").unwrap();
        let mut c = self.command(&self.bins.gosling);
        c.arg("--nest")
            .arg(self.nest())
            .arg("--state")
            .arg(&self.state);
        c.args(args);
        self.store_args(&mut c, false, "");
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("gosling starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gosling {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `mothergoose serve` and waits for its health endpoint.
    pub async fn start_mothergoose(&mut self) {
        assert!(self.mothergoose.is_none(), "MotherGoose runs already");
        let t = &self.tuning;
        let mut c = self.command(&self.bins.mothergoose);
        c.args(["serve", "--state", &self.state]);
        self.store_args(&mut c, true, "--runner-dir");
        c.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--heartbeat-interval")
            .arg(format!("{}ms", t.heartbeat.as_millis()))
            .arg("--reconcile-interval")
            .arg(format!("{}ms", t.reconcile.as_millis()))
            .arg("--task-lease")
            .arg(format!("{}ms", t.task_lease.as_millis()))
            .arg("--workers")
            .arg(t.workers.to_string())
            .stdout(self.log("mothergoose"))
            .stderr(self.log("mothergoose"));
        self.mothergoose = Some(c.spawn().expect("mothergoose starts"));
        let health = format!("{}/health", self.mothergoose_url);
        let http = reqwest::Client::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if http.get(&health).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("MotherGoose did not answer /health within 30 s");
    }

    /// A new MotherGoose admin token (`mothergoose token admin --rotate`).
    pub fn admin_token(&self) -> String {
        let out = self
            .command(&self.bins.mothergoose)
            .args(["token", "admin", "--rotate", "--state", &self.state])
            .output()
            .expect("mothergoose token runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The value of gauge `name` on MotherGoose's `/metrics` (read with `admin_token`).
    pub async fn mothergoose_gauge(&self, admin_token: &str, name: &str) -> Option<f64> {
        gauge(&self.mothergoose_url, admin_token, name).await
    }

    /// Starts `uglyfox run`.
    pub fn start_uglyfox(&mut self) {
        assert!(self.uglyfox.is_none(), "UglyFox runs already");
        let mut c = self.command(&self.bins.uglyfox);
        c.args(["run", "--state", &self.state]);
        self.store_args(&mut c, true, "--runners-dir");
        c.arg("--metrics-interval")
            .arg(format!("{}ms", self.tuning.heartbeat.as_millis()))
            .args(["--cron-every", "1s"])
            // A runner that never reported (it started and ended while MotherGoose was
            // down, its heartbeats lost with it) is ended after this, not after 15 min.
            .args(["--provisioning-timeout", "20s"])
            .stdout(self.log("uglyfox"))
            .stderr(self.log("uglyfox"));
        self.uglyfox = Some(c.spawn().expect("uglyfox starts"));
    }

    /// Freezes the state store's `moto_server` ([`Backend::MotoStore`]): its calls hang.
    pub fn freeze_store(&self) {
        self.moto.as_ref().expect("a store on moto").freeze();
    }

    /// Lets a [frozen](System::freeze_store) store answer again.
    pub fn thaw_store(&self) {
        self.moto.as_ref().expect("a store on moto").thaw();
    }

    /// Sends `signal` to MotherGoose and reaps it.
    pub fn stop_mothergoose(&mut self, signal: i32) {
        if let Some(c) = self.mothergoose.take() {
            procs::signal_and_reap(c, signal);
        }
    }

    /// Sends `signal` to UglyFox and reaps it.
    pub fn stop_uglyfox(&mut self, signal: i32) {
        if let Some(c) = self.uglyfox.take() {
            procs::signal_and_reap(c, signal);
        }
    }

    /// The pids of MotherGoose and UglyFox, when they run.
    pub fn service_pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.mothergoose.as_ref().map(Child::id),
            self.uglyfox.as_ref().map(Child::id),
        )
    }

    /// Whether `pid` is MotherGoose or UglyFox.
    pub fn is_service(&self, pid: i32) -> bool {
        let (m, u) = self.service_pids();
        [m, u].contains(&Some(pid as u32))
    }

    /// Watches the store every 100 ms: the most runners each egg had alive at once.
    pub fn watch_limits(&self) -> LimitWatch {
        let store = self.store.clone();
        let peaks = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
        let p = peaks.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(runners) = store.runners().await {
                    let mut now = BTreeMap::<String, usize>::new();
                    for r in runners.iter().filter(|r| r.item.state != "terminated") {
                        *now.entry(r.item.egg_name.clone()).or_default() += 1;
                    }
                    let mut peaks = p.lock().unwrap();
                    for (egg, n) in now {
                        let e = peaks.entry(egg).or_default();
                        *e = (*e).max(n);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        LimitWatch { peaks, task }
    }

    /// Creates a pending job for `egg` at GitLab (its hook is delivered); returns its id.
    pub async fn job(&self, egg: &EggSpec, duration_s: f64) -> (u64, String) {
        let job = self.gitlab.add_job(egg.project, "build", &[&egg.name]);
        self.gitlab.with(|w| {
            if let Some(j) = w.jobs.get_mut(&job.id) {
                j.duration_s = duration_s;
            }
        });
        let delivery = self.gitlab.deliver_job_hook(job.id).await;
        (job.id, delivery)
    }

    /// Polls until every GitLab job has ended and every runner is terminated.
    pub async fn settle(&self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let open: Vec<(u64, u64, String, Option<i64>)> = self.gitlab.with(|w| {
                w.jobs
                    .values()
                    .filter(|j| !matches!(j.status.as_str(), "success" | "failed" | "canceled"))
                    .map(|j| (j.id, j.project_id, j.status.clone(), j.runner_id))
                    .collect()
            });
            let open_jobs = open.len();
            let live: Vec<gosling_state::Runner> = self
                .store
                .runners()
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|r| r.item)
                .filter(|r| r.state != "terminated")
                .collect();
            if open_jobs == 0 && live.is_empty() {
                return Ok(());
            }
            if start.elapsed() > limit {
                let audit = self.store.audit_logs().await.map_err(|e| e.to_string())?;
                let stuck: Vec<String> = live
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} open {:?} jobs {:?}: {}",
                            r.id,
                            r.state,
                            r.open_jobs,
                            r.jobs,
                            check::history(&audit, &r.id)
                        )
                    })
                    .collect();
                let waiting = self.open_job_records(&open, &audit).await?;
                return Err(format!(
                    "after {limit:?}: {open_jobs} GitLab jobs not ended, {} runners not terminated:\n{}\n{}",
                    live.len(),
                    stuck.join("\n"),
                    waiting.join("\n")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// For a failure message: each job GitLab has not ended, with MotherGoose's record of
    /// it and the history of the runner that record names.
    async fn open_job_records(
        &self,
        open: &[(u64, u64, String, Option<i64>)],
        audit: &[gosling_state::AuditLog],
    ) -> Result<Vec<String>, String> {
        let records = self.store.gitlab_jobs().await.map_err(|e| e.to_string())?;
        Ok(open
            .iter()
            .map(|(id, project, status, taken_by)| {
                let record = records
                    .iter()
                    .find(|r| r.item.build_id == *id && r.item.project_id == *project);
                let Some(r) = record.map(|r| &r.item) else {
                    return format!("job {project}/{id} ({status} at GitLab): no record");
                };
                let runner = r.runner_id.as_deref().unwrap_or("-");
                format!(
                    "job {} ({status} at GitLab, taken by GitLab runner {taken_by:?}): {} runner {runner} attempts {} reason {:?} updated {}; job: {}; runner: {}",
                    r.id,
                    r.status,
                    r.attempts,
                    r.reason,
                    r.updated_at,
                    mentions(audit, &r.id),
                    check::history(audit, runner)
                )
            })
            .collect())
    }

    /// The tail of a service's log, for failure messages.
    pub fn tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.stop_uglyfox(libc::SIGKILL);
        self.stop_mothergoose(libc::SIGKILL);
        gosling_standins::procs::kill_all(self.dir.path());
    }
}

fn uglyfox_fly(t: &Tuning) -> String {
    format!(
        "uglyfox {{\n  pruning {{\n    failed_threshold = 3\n    max_age = \"24h\"\n    check_interval = \"{}\"\n  }}\n  apex {{\n    max_count = 10\n    min_count = 0\n  }}\n  nadir {{\n    max_count = 5\n    idle_timeout = \"30m\"\n  }}\n}}\n",
        t.check_interval
    )
}

/// The audit entries about job record `key` (its own, and the runners' that name it).
pub(crate) fn mentions(audit: &[gosling_state::AuditLog], key: &str) -> String {
    audit
        .iter()
        .filter(|a| {
            a.resource_id == key || a.details.get("job").and_then(|j| j.as_str()) == Some(key)
        })
        .map(|a| {
            let at = a.timestamp.format("%H:%M:%S%.3f");
            format!(
                "{at} {} {}:{} {}",
                a.resource_id, a.actor, a.action, a.details
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Gauge `name` on the `/metrics` of the service at `url`.
pub async fn gauge(url: &str, bearer: &str, name: &str) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(bearer)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))?
        .parse()
        .ok()
}
