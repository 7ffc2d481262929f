//! A MotherGoose on real sockets over an embedded store, a GitLab stand-in with the
//! project hooks `gosling deploy` registers, and a Nest deployed through `gosling`'s own
//! deploy code.

#![allow(dead_code)]

use gosling_fleet::local::LocalProvider;
use gosling_fleet::{Provider, Providers};
use gosling_standins::gitlab::GitLab;
use gosling_state::*;
use mothergoose::config::{ProviderChoice, Settings};
use mothergoose::{App, Overrides, Running};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The webhook secret the tests deploy with.
pub const SECRET: &str = "test-webhook-secret";
/// The GitLab token of the eggs (`token_secret = "vault://gitlab/token"`).
pub const GITLAB_TOKEN: &str = "glpat-test";

/// An egg of project `project` at the stand-in.
pub fn egg(name: &str, kind: &str, project: u64, tags: &[&str], gitlab: &str) -> String {
    let tags: Vec<String> = tags.iter().map(|t| format!("\"{t}\"")).collect();
    let resources = if kind == "serverless" {
        "\n  resources {\n    memory = 2048\n  }"
    } else {
        ""
    };
    format!(
        "egg \"{name}\" {{\n  type = \"{kind}\"\n  cloud {{\n    provider = \"aws\"\n    region = \"eu-west-1\"\n  }}{resources}\n  runner {{\n    tags = [{}]\n    concurrent = 1\n    timeout = \"30m\"\n    max_runners = 1000\n  }}\n  gitlab {{\n    url = \"{gitlab}\"\n    project_id = {project}\n    token_secret = \"vault://gitlab/token\"\n  }}\n  environment {{\n    STAGE = \"test\"\n  }}\n}}\n",
        tags.join(", ")
    )
}

/// Compiles files to the IR (panics with the diagnostics otherwise).
pub fn compile(files: &[(String, String)]) -> fly_ir::Deployment {
    let sources = files
        .iter()
        .map(|(p, t)| fly_types::SourceFile::new(p.clone(), t.clone()))
        .collect();
    let c = fly_types::compile(sources, &fly_types::Env::default());
    let d: Vec<String> = c
        .diagnostics()
        .map(|(p, d)| format!("{p}: {}", d.message))
        .collect();
    c.ir.unwrap_or_else(|| panic!("{d:?}"))
}

/// A command that stays up with the runner id in its command line (what the local
/// provider needs to recognise it), standing in for `gosling runner`.
pub fn idle_runner(dir: &Path) -> Arc<dyn Provider> {
    Arc::new(
        LocalProvider::new(
            dir.join("runners"),
            "/bin/sh",
            vec![
                "-c".into(),
                "while :; do sleep 1; done".into(),
                "runner".into(),
            ],
        )
        .with_grace(Duration::from_secs(2)),
    )
}

/// Everything a test needs.
pub struct Harness {
    /// The test's folder.
    pub dir: tempfile::TempDir,
    /// The GitLab stand-in.
    pub gitlab: GitLab,
    /// The state key (base64).
    pub key: String,
    /// The settings MotherGoose runs with.
    pub settings: Settings,
    /// The store, as the test sees it.
    pub store: Arc<dyn StateStore>,
    /// Where MotherGoose listens (fixed before it starts, so hooks can name it).
    pub listener: Option<std::net::TcpListener>,
    /// MotherGoose's base URL.
    pub base: String,
}

impl Drop for Harness {
    /// Runners the test left up (its provider's processes work in the test's folder).
    fn drop(&mut self) {
        gosling_standins::procs::kill_all(self.dir.path());
    }
}

impl Harness {
    /// A store, a stand-in GitLab and the settings; nothing deployed or running yet.
    pub async fn new() -> Harness {
        if std::env::var_os("MG_TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().unwrap();
        let gitlab = GitLab::start(GITLAB_TOKEN).await.unwrap();
        let key = Cipher::generate_key();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let state = format!("sqlite://{}", dir.path().join("state.db").display());
        let settings = Settings {
            state: state.clone(),
            objects: dir.path().join("objects").display().to_string(),
            queue: format!("sqlite://{}", dir.path().join("queue.db").display()),
            listen: addr,
            public_url: base.clone(),
            tls: None,
            state_key: Some(SecretString::new(key.clone())),
            state_key_file: dir.path().join("no-key-file"),
            provider: ProviderChoice::Local {
                dir: dir.path().join("runners"),
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
        };
        let store: Arc<dyn StateStore> =
            Arc::from(open_state(&state, &OpenOptions::default()).await.unwrap());
        // The eggs' GitLab token, as `gosling secret set vault://gitlab/token` stores it.
        let cipher = Cipher::from_base64(&key).unwrap();
        gosling_fleet::secrets::put_reference(
            &*store,
            &cipher,
            "vault://gitlab/token",
            &SecretString::new(GITLAB_TOKEN),
        )
        .await
        .unwrap();
        Harness {
            dir,
            gitlab,
            key,
            settings,
            store,
            listener: Some(listener),
            base,
        }
    }

    /// The webhook URL MotherGoose serves.
    pub fn hook_url(&self) -> String {
        format!("{}/webhooks/gitlab", self.base)
    }

    /// Deploys Nest files with `gosling`'s deploy: IR stored, eggs written, webhooks
    /// registered at the stand-in with the test secret.
    pub async fn deploy(&self, files: &[(String, String)]) -> u64 {
        let ir = compile(files);
        let objects = open_objects(&self.settings.objects, &OpenOptions::default())
            .await
            .unwrap();
        let quiet = |_: &str| {};
        let ctx = gosling::deploy::Context {
            store: &*self.store,
            objects: &*objects,
            nest: self.dir.path().join("nest"),
            gitlab_token: Some(SecretString::new(GITLAB_TOKEN)),
            webhook_url: Some(self.hook_url()),
            webhook_secret: Some(SecretString::new(SECRET)),
            state_key: Some(SecretString::new(self.key.clone())),
            state_key_file: self.dir.path().join("no-key-file"),
            retry: gosling::gitlab::Retry::default(),
            actor: "test".into(),
            progress: &quiet,
            note: &quiet,
        };
        match gosling::deploy::deploy(&ctx, &ir, false).await.unwrap() {
            gosling::deploy::DeployOutcome::Applied { version, .. } => version,
            other => panic!("{other:?}"),
        }
    }

    /// Opens MotherGoose with `providers` (and a clock, if given).
    pub async fn app(&self, providers: Providers, clock: Option<SharedClock>) -> Arc<App> {
        self.app_with(providers, clock, fast_retry()).await
    }

    /// [`app`](Harness::app) with its GitLab calls retried as `retry` says.
    pub async fn app_with(
        &self,
        providers: Providers,
        clock: Option<SharedClock>,
        retry: gosling::gitlab::Retry,
    ) -> Arc<App> {
        App::open(
            self.settings.clone(),
            Overrides {
                clock,
                providers: Some(providers),
                retry: Some(retry),
            },
        )
        .await
        .unwrap()
    }

    /// Starts MotherGoose (API, workers, reconciler) on the harness's port.
    pub async fn start(&mut self, app: Arc<App>) -> Running {
        let listener = self.listener.take().expect("started once");
        mothergoose::start(app, listener, true).await.unwrap()
    }

    /// A folder for runner processes.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// GitLab retries short enough for tests.
pub fn fast_retry() -> gosling::gitlab::Retry {
    gosling::gitlab::Retry {
        attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(10),
    }
}

/// Waits until `check` holds (polling), or panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runners of the store whose state is `state`.
pub async fn runners_in(store: &dyn StateStore, state: &str) -> Vec<Runner> {
    store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.item)
        .filter(|r| r.state == state)
        .collect()
}

/// A provider that only counts the machines it is asked to make, by runner id.
#[derive(Default)]
pub struct Counting {
    /// Machines asked for, by runner id.
    pub created: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
}

impl Counting {
    /// How many runners got a machine.
    pub fn made(&self) -> usize {
        self.created.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl Provider for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    async fn create(
        &self,
        spec: &gosling_fleet::RunnerSpec,
    ) -> Result<gosling_fleet::Handle, gosling_fleet::ProviderError> {
        *self
            .created
            .lock()
            .unwrap()
            .entry(spec.runner_id.clone())
            .or_default() += 1;
        Ok(gosling_fleet::Handle {
            provider: "counting".into(),
            id: spec.runner_id.clone(),
            details: Default::default(),
        })
    }
    async fn status(
        &self,
        _: &gosling_fleet::Handle,
    ) -> Result<gosling_fleet::MachineStatus, gosling_fleet::ProviderError> {
        Ok(gosling_fleet::MachineStatus::Running)
    }
    async fn terminate(
        &self,
        _: &gosling_fleet::Handle,
    ) -> Result<(), gosling_fleet::ProviderError> {
        Ok(())
    }
}
