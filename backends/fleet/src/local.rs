//! The `local` provider: each runner is a child process on this machine (`gosling runner …`
//! by default), so the whole system runs without a cloud account.
//!
//! Every runner gets a folder `DIR/RUNNER_ID/` with its pid file and its output log, removed
//! when the runner is terminated. The process runs in its own process group, so it
//! outlives a MotherGoose that is killed (`kill -9`) and is found again after a restart
//! through its pid file; a pid is trusted only while `/proc/PID/cmdline` still names the
//! runner, so a reused pid is never killed.

use crate::provider::{Handle, MachineStatus, Provider, ProviderError, RunnerSpec};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const NAME: &str = "local";

/// Runners as local processes.
#[derive(Clone, Debug)]
pub struct LocalProvider {
    dir: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    grace: Duration,
}

impl LocalProvider {
    /// Runners are started as `program args… --runner-id ID --egg-name EGG` with the
    /// bootstrap environment, in folders under `dir`; `terminate` sends SIGTERM and, after
    /// `grace`, SIGKILL.
    pub fn new(dir: impl Into<PathBuf>, program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        LocalProvider {
            dir: dir.into(),
            program: program.into(),
            args,
            env: BTreeMap::new(),
            grace: Duration::from_secs(10),
        }
    }

    /// Extra environment for every runner process.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// How long `terminate` waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The folder of a runner.
    pub fn runner_dir(&self, runner_id: &str) -> PathBuf {
        self.dir.join(runner_id)
    }

    /// The folder of runner `runner_id` when the id names one folder right under `dir`
    /// (never `dir` itself, nor a path elsewhere).
    fn own_folder(&self, runner_id: &str) -> Option<PathBuf> {
        let mut parts = Path::new(runner_id).components();
        match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(_)), None) => Some(self.runner_dir(runner_id)),
            _ => None,
        }
    }

    fn failure(&self, what: &str, e: impl std::fmt::Display) -> ProviderError {
        ProviderError::retryable(NAME, format!("{what}: {e}"))
    }

    fn handle(&self, runner_id: &str, pid: u32) -> Handle {
        let mut details = BTreeMap::new();
        details.insert("runner_id".into(), runner_id.to_string());
        details.insert(
            "dir".into(),
            self.runner_dir(runner_id).display().to_string(),
        );
        Handle {
            provider: NAME.into(),
            id: pid.to_string(),
            details,
        }
    }
}

/// Whether `pid` is a live (not zombie) process whose command line names `runner_id`.
pub fn process_runs(pid: u32, runner_id: &str) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(proc.join("cmdline")) else {
        return false;
    };
    let names_it = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == runner_id.as_bytes());
    let zombie = std::fs::read_to_string(proc.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    names_it && !zombie
}

/// An exclusive `flock(2)` on `path` (created if missing), released when the file is
/// dropped — also when this process dies.
async fn lock_exclusive(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    loop {
        // SAFETY: flock(2) on a descriptor this function owns; no memory is touched.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn signal_group(pid: u32, signal: i32) {
    // The runner leads its own process group: signal the whole group (the agent too).
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        let dir = self.runner_dir(&spec.runner_id);
        std::fs::create_dir_all(&dir).map_err(|e| self.failure("creating the runner folder", e))?;
        // Held until the pid file is written: concurrent creates of one runner (two
        // workers, two MotherGoose processes) start one process.
        let _lock = lock_exclusive(&dir.join("create.lock"))
            .await
            .map_err(|e| self.failure("locking the runner folder", e))?;
        let pid_file = dir.join("runner.pid");
        if let Some(pid) = read_pid(&pid_file) {
            if process_runs(pid, &spec.runner_id) {
                return Ok(self.handle(&spec.runner_id, pid));
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("runner.log"))
            .map_err(|e| self.failure("opening the runner log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| self.failure("opening the runner log", e))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .arg("--runner-id")
            .arg(&spec.runner_id)
            .arg("--egg-name")
            .arg(&spec.egg.name)
            .current_dir(&dir)
            .envs(&self.env)
            .envs(spec.bootstrap.env(&spec.runner_id, &spec.egg.name))
            .envs(&spec.extra_env)
            .env("GOSLING_RUNNER_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(|e| {
            ProviderError::permanent(
                NAME,
                format!("cannot start `{}`: {e}", self.program.display()),
            )
        })?;
        let pid = child
            .id()
            .ok_or_else(|| self.failure("starting the runner", "it exited at once"))?;
        let tmp = dir.join("runner.pid.tmp");
        std::fs::write(&tmp, pid.to_string())
            .and_then(|_| std::fs::rename(&tmp, &pid_file))
            .map_err(|e| self.failure("writing the pid file", e))?;
        // Reap it when it exits (no zombie while this process lives).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(self.handle(&spec.runner_id, pid))
    }

    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError> {
        let pid: u32 = handle
            .id
            .parse()
            .map_err(|_| ProviderError::permanent(NAME, format!("bad pid `{}`", handle.id)))?;
        let runner = handle
            .details
            .get("runner_id")
            .map(String::as_str)
            .unwrap_or("");
        Ok(if process_runs(pid, runner) {
            MachineStatus::Running
        } else {
            MachineStatus::Gone
        })
    }

    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError> {
        let pid: u32 = handle
            .id
            .parse()
            .map_err(|_| ProviderError::permanent(NAME, format!("bad pid `{}`", handle.id)))?;
        let runner = handle.details.get("runner_id").cloned().unwrap_or_default();
        let dir = self.own_folder(&runner);
        // Held until the folder is gone: a create of this runner meanwhile starts nothing.
        let _lock = match &dir {
            Some(d) => match lock_exclusive(&d.join("create.lock")).await {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(self.failure("locking the runner folder", e)),
            },
            None => None,
        };
        if process_runs(pid, &runner) {
            signal_group(pid, libc::SIGTERM);
            let deadline = tokio::time::Instant::now() + self.grace;
            while process_runs(pid, &runner) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if process_runs(pid, &runner) {
                signal_group(pid, libc::SIGKILL);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The folder goes with the process, as a machine's disk goes with the machine: its
        // pid file, its log and its config (which holds the runner's token).
        match dir.map(std::fs::remove_dir_all) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Some(Err(e)) => Err(self.failure("removing the runner folder", e)),
        }
    }

    async fn terminate_unrecorded(&self, runner_id: &str) -> Result<(), ProviderError> {
        // Its pid file, if the process was started; pid 0 (no process) otherwise.
        let pid = self
            .own_folder(runner_id)
            .and_then(|d| read_pid(&d.join("runner.pid")))
            .unwrap_or(0);
        self.terminate(&self.handle(runner_id, pid)).await
    }
}
