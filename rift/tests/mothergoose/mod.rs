//! MotherGoose in the test process (real sockets, an SQLite store, the local provider, the
//! GitLab stand-in), with a Nest whose eggs `alpha` and `beta` use a Rift: runners are made
//! with `POST /runners` and ended with `DELETE /runners/{id}` as an operator would.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gosling_api::{CacheConfig, RunnerConfig};
use gosling_fleet::local::LocalProvider;
use gosling_fleet::Providers;
use gosling_standins::gitlab::GitLab;
use gosling_state::{Cipher, OpenOptions, SecretString, StateStore};
use mothergoose::config::{ProviderChoice, Settings};
use mothergoose::{App, Overrides};

/// The GitLab token of the eggs.
const GITLAB_TOKEN: &str = "glpat-rift-test";
/// The eggs' GitLab token reference.
const TOKEN_REF: &str = "vault://gitlab/token";

/// The Nest: a Rift with the Docker proxy, and two eggs using it.
fn nest(gitlab: &str) -> Vec<(String, String)> {
    let rift = "rift \"main\" {\n  address      = \"http://127.0.0.1:9000\"\n  bucket       = \"runner-cache\"\n  docker_proxy = true\n}\n";
    let egg = |name: &str, project: u64| {
        format!(
            "egg \"{name}\" {{\n  type = \"vm\"\n  rift = \"main\"\n  cloud {{\n    provider = \"aws\"\n    region   = \"eu-west-1\"\n  }}\n  runner {{\n    tags        = [\"docker\"]\n    concurrent  = 1\n    timeout     = \"30m\"\n    max_runners = 100\n  }}\n  gitlab {{\n    url          = \"{gitlab}\"\n    project_id   = {project}\n    token_secret = \"{TOKEN_REF}\"\n  }}\n}}\n"
        )
    };
    vec![
        ("Rift/main.fly".into(), rift.into()),
        ("Eggs/alpha.fly".into(), egg("alpha", 7)),
        ("Eggs/beta.fly".into(), egg("beta", 8)),
    ]
}

fn compile(files: Vec<(String, String)>) -> fly_ir::Deployment {
    let sources = files
        .into_iter()
        .map(|(p, t)| fly_types::SourceFile::new(p, t))
        .collect();
    let c = fly_types::compile(sources, &fly_types::Env::default());
    let problems: Vec<String> = c
        .diagnostics()
        .map(|(p, d)| format!("{p}: {}", d.message))
        .collect();
    c.ir.unwrap_or_else(|| panic!("the test Nest does not compile: {problems:?}"))
}

/// A MotherGoose serving a deployed Nest.
pub struct MotherGoose {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub store: Arc<dyn StateStore>,
    pub app: Arc<App>,
    pub admin: SecretString,
    /// Rift's token (`mothergoose token rift`).
    pub rift_token: SecretString,
    running: Option<mothergoose::Running>,
    _gitlab: GitLab,
    http: reqwest::Client,
}

impl MotherGoose {
    /// Deploys the Nest and starts MotherGoose with the local provider.
    pub async fn start() -> MotherGoose {
        let dir = tempfile::tempdir().unwrap();
        let gitlab = GitLab::start(GITLAB_TOKEN).await.unwrap();
        let key = Cipher::generate_key();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = settings(dir.path(), &base, &key, listener.local_addr().unwrap());
        let store: Arc<dyn StateStore> = Arc::from(
            gosling_state::open_state(&settings.state, &OpenOptions::default())
                .await
                .unwrap(),
        );
        let cipher = Cipher::from_base64(&key).unwrap();
        let token = SecretString::new(GITLAB_TOKEN);
        gosling_fleet::secrets::put_reference(&*store, &cipher, TOKEN_REF, &token)
            .await
            .unwrap();
        deploy(&*store, &settings, dir.path(), &key, &gitlab.url).await;
        let provider = LocalProvider::new(dir.path().join("runners"), "/bin/sh", runner_args())
            .with_grace(Duration::from_secs(2));
        let overrides = Overrides {
            clock: None,
            providers: Some(Providers::single(Arc::new(provider))),
            retry: Some(gosling::gitlab::Retry {
                attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_secs(2),
                attempt_timeout: Duration::from_secs(10),
            }),
        };
        let app = App::open(settings, overrides).await.unwrap();
        let running = mothergoose::start(Arc::clone(&app), listener, true)
            .await
            .unwrap();
        let admin = app.ensure_admin_token().await.unwrap().unwrap();
        let rift_token = gosling_fleet::credentials::RIFT_TOKEN
            .rotate(&*store)
            .await
            .unwrap();
        MotherGoose {
            dir,
            base,
            store,
            app,
            admin,
            rift_token,
            running: Some(running),
            _gitlab: gitlab,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// A new runner of `egg` (`POST /runners`), once it runs: its id and cache settings,
    /// as runner mode receives them.
    pub async fn runner(&self, egg: &str) -> CacheConfig {
        let r = self
            .http
            .post(format!("{}/runners", self.base))
            .bearer_auth(self.admin.expose())
            .json(&serde_json::json!({ "egg_name": egg }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let accepted: gosling_api::Accepted = r.json().await.unwrap();
        let id = accepted.runner_id.unwrap();
        let credential = self.app.keys.credential(&id, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let machine = self
                .store
                .runner(&id)
                .await
                .unwrap()
                .is_some_and(|r| r.item.machine.is_some());
            if machine {
                let config: RunnerConfig = self
                    .http
                    .get(format!("{}/runners/{id}/config", self.base))
                    .bearer_auth(credential.expose())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let cache = config.cache.expect("the egg names a Rift");
                assert_eq!(cache.access_key, id);
                return cache;
            }
            assert!(Instant::now() < deadline, "runner {id} not running in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends a runner as an operator (`DELETE /runners/{id}?force=true`); returns once
    /// MotherGoose has it terminated.
    pub async fn terminate(&self, id: &str) {
        let r = self
            .http
            .delete(format!("{}/runners/{id}?force=true", self.base))
            .bearer_auth(self.admin.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.store.runner(id).await.unwrap().unwrap().item.state != "terminated" {
            assert!(
                Instant::now() < deadline,
                "runner {id} not terminated in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops MotherGoose at once, like a crash.
    pub async fn kill(&mut self) {
        if let Some(r) = self.running.take() {
            r.kill().await;
        }
    }
}

impl Drop for MotherGoose {
    /// Ends the runner processes this test started (found by their pid files, and only
    /// while their command line still names their runner).
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(self.dir.path().join("runners")) else {
            return;
        };
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().into_owned();
            let Ok(pid) = std::fs::read_to_string(d.path().join("runner.pid")) else {
                continue;
            };
            let pid = pid.trim();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&id) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
        }
    }
}

/// Runner processes stand in for `gosling runner`: they idle (at most three minutes, should
/// a test die before ending them) with the runner id in their command line.
fn runner_args() -> Vec<String> {
    vec![
        "-c".into(),
        "i=0; while [ $i -lt 180 ]; do sleep 1; i=$((i+1)); done".into(),
        "runner".into(),
    ]
}

fn settings(dir: &Path, base: &str, key: &str, listen: std::net::SocketAddr) -> Settings {
    Settings {
        state: format!("sqlite://{}", dir.join("state.db").display()),
        objects: dir.join("objects").display().to_string(),
        queue: format!("sqlite://{}", dir.join("queue.db").display()),
        listen,
        public_url: base.to_string(),
        tls: None,
        state_key: Some(SecretString::new(key)),
        state_key_file: dir.join("no-key-file"),
        provider: ProviderChoice::Local {
            dir: dir.join("runners"),
            program: "/bin/true".into(),
            args: vec![],
        },
        workers: 4,
        max_body: 1 << 20,
        signing_secret: None,
        reconcile_interval: Duration::ZERO,
        heartbeat_interval: Duration::from_secs(30),
        max_attempts: 5,
        deployment_poll: Duration::from_millis(200),
        provisioning_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(5),
        lease: Duration::from_secs(60),
    }
}

/// Deploys the Nest with `gosling deploy`'s code (no webhooks: runners are made by hand).
async fn deploy(store: &dyn StateStore, settings: &Settings, dir: &Path, key: &str, gitlab: &str) {
    let ir = compile(nest(gitlab));
    let objects = gosling_state::open_objects(&settings.objects, &OpenOptions::default())
        .await
        .unwrap();
    let quiet = |_: &str| {};
    let ctx = gosling::deploy::Context {
        store,
        objects: &*objects,
        nest: dir.join("nest"),
        gitlab_token: None,
        webhook_url: None,
        webhook_secret: None,
        state_key: Some(SecretString::new(key)),
        state_key_file: dir.join("no-key-file"),
        retry: gosling::gitlab::Retry::default(),
        actor: "rift-test".into(),
        progress: &quiet,
        note: &quiet,
    };
    match gosling::deploy::deploy(&ctx, &ir, false).await.unwrap() {
        gosling::deploy::DeployOutcome::Applied { .. } => {}
        other => panic!("{other:?}"),
    }
}
