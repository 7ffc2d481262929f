//! The gitlab-runner process.
//!
//! Started in a process group of its own, so that a signal to runner mode's group (the
//! local provider's SIGTERM, a terminal's Ctrl-C) reaches runner mode only, which decides
//! what the agent gets: SIGQUIT (finish the running jobs, take no new one, exit), SIGTERM
//! (abort the jobs, report them, exit) or SIGKILL to its whole group. The agent gets
//! SIGTERM if runner mode itself dies (`PR_SET_PDEATHSIG`), and SIGKILL to its group if
//! the [`Agent`] is dropped unreaped, so no agent outlives runner mode. Its output is
//! passed on to runner mode's log; `run-single`'s job lines are counted
//! ([`crate::observe`]). The runner's credential is not passed on.

use crate::observe::{parse_metrics, received_job, JobGauge};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::Instant;

/// Environment variables the agent must not inherit.
pub const WITHHELD_ENV: &[&str] = &["GOSLING_RUNNER_CREDENTIAL"];

/// How gitlab-runner runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `run`: a long-lived agent taking jobs, with metrics on `listen`.
    Run {
        /// `host:port` of its metrics.
        listen: String,
    },
    /// `run-single --max-builds 1`: one job, then exit.
    Single {
        /// Seconds to wait for the job.
        wait_timeout: u64,
    },
}

/// What to start.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// The gitlab-runner binary.
    pub program: PathBuf,
    /// config.toml.
    pub config: PathBuf,
    /// The runner's folder.
    pub work_dir: PathBuf,
    /// The `[[runners]]` name in config.toml.
    pub runner_name: String,
    /// run or run-single.
    pub mode: Mode,
}

impl AgentSpec {
    /// gitlab-runner's arguments.
    pub fn args(&self) -> Vec<String> {
        let config = self.config.display().to_string();
        match &self.mode {
            Mode::Run { .. } => vec![
                "run".into(),
                "--config".into(),
                config,
                "--working-directory".into(),
                self.work_dir.display().to_string(),
            ],
            Mode::Single { wait_timeout } => vec![
                "run-single".into(),
                "--config".into(),
                config,
                "--runner".into(),
                self.runner_name.clone(),
                "--max-builds".into(),
                "1".into(),
                "--wait-timeout".into(),
                wait_timeout.to_string(),
            ],
        }
    }
}

/// The agent could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the agent `{program}`: {source}")]
pub struct SpawnError {
    /// The binary.
    pub program: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// A running agent.
pub struct Agent {
    child: tokio::process::Child,
    pid: i32,
    received: Arc<AtomicU64>,
    metrics_url: Option<String>,
    /// When it started.
    pub started: Instant,
    /// Whether it was told to stop taking jobs (SIGQUIT).
    pub quitting: bool,
    reaped: bool,
}

async fn forward(stream: impl AsyncRead + Unpin, received: Arc<AtomicU64>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if received_job(&line) {
            received.fetch_add(1, Ordering::SeqCst);
        }
        tracing::info!(target: "agent", "{line}");
    }
}

impl Agent {
    /// Starts the agent of `spec`.
    pub async fn start(spec: &AgentSpec) -> Result<Agent, SpawnError> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(spec.args())
            .current_dir(&spec.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        for k in WITHHELD_ENV {
            cmd.env_remove(k);
        }
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        // A binary just written may be briefly "busy" (ETXTBSY) while another thread forks.
        let mut attempt = 0;
        let mut child = loop {
            match cmd.spawn() {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(source) => {
                    return Err(SpawnError {
                        program: spec.program.clone(),
                        source,
                    })
                }
            }
        };
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let received = Arc::new(AtomicU64::new(0));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, received.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, received.clone()));
        }
        let metrics_url = match &spec.mode {
            Mode::Run { listen } => Some(format!("http://{listen}/metrics")),
            Mode::Single { .. } => None,
        };
        tracing::info!(
            "agent started (pid {pid}): {} {}",
            spec.program.display(),
            spec.args().join(" ")
        );
        Ok(Agent {
            child,
            pid,
            received,
            metrics_url,
            started: Instant::now(),
            quitting: false,
            reaped: false,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the agent process.
    pub fn signal(&self, signal: i32) {
        if self.pid > 0 && !self.reaped {
            // SAFETY: kill(2) on the pid of our own unreaped child: it cannot be reused.
            unsafe {
                libc::kill(self.pid, signal);
            }
        }
    }

    /// SIGQUIT once: finish the running jobs, take no new one, exit.
    pub fn quit(&mut self) {
        if !self.quitting {
            tracing::info!("asking the agent to finish its jobs and stop (SIGQUIT)");
            self.signal(libc::SIGQUIT);
            self.quitting = true;
        }
    }

    /// SIGKILL to the agent's whole process group.
    pub fn kill_group(&self) {
        if self.pid > 0 && !self.reaped {
            // SAFETY: the agent leads its own group (process_group(0)), still unreaped.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
    }

    /// Waits for it to exit (cancel-safe).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        if status.is_ok() {
            // Leave nothing of its group behind.
            self.kill_group();
            self.reaped = true;
        }
        status
    }

    /// Jobs its log says it was handed.
    pub fn jobs_received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Its job counts from its metrics (`run` only); `None` when they cannot be read.
    pub async fn scrape(&self, http: &reqwest::Client) -> Option<JobGauge> {
        let url = self.metrics_url.as_ref()?;
        let resp = http.get(url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        parse_metrics(&resp.text().await.ok()?)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
            let _ = self.child.start_kill();
        }
    }
}
