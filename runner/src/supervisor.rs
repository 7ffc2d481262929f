//! The supervisor: starts the agent, watches it, and answers signals, MotherGoose's
//! instructions, new agent versions, the deadline and silence.
//!
//! | event | what happens | exit |
//! | --- | --- | --- |
//! | SIGTERM | SIGQUIT to the agent (finish jobs, take none); after `--stop-timeout` SIGTERM, 10 s later SIGKILL | 0 (1 if it had to be forced) |
//! | SIGINT, `stop` | SIGTERM to the agent (jobs aborted and reported by it), SIGKILL after 10 s | 130 (SIGINT), 0 (`stop`) |
//! | SIGHUP, `reload` | configuration fetched again; if config.toml changes, the agent is restarted between jobs (SIGQUIT, then started again with the new file) | — |
//! | `drain` | SIGQUIT, no time limit, last heartbeat `stopped` | 0 |
//! | `pause` / `resume` | SIGQUIT and no restart (heartbeats say idle) / start again | — |
//! | new agent version installed | restart between jobs, as for a reload | — |
//! | agent exits on its own (`run`) | a failure counted, restart after 1 s, 2 s, … 60 s | — |
//! | agent exits (`run-single`) | the runner is done | 0, or 1 if the agent failed |
//! | deadline (single-job runners) | SIGQUIT `--deadline-grace` before it, SIGKILL at it (Property 12) | 0, or 1 if killed |
//! | no answer for `--max-silence`, or 401 | as SIGTERM | 1 |
//!
//! Every end sends a last heartbeat with state `stopped` (MotherGoose then removes the
//! machine), except after a 401.

use crate::agent::{Agent, AgentSpec, Mode};
use crate::agent_config::{self, config_path, create_private_dir, runner_name, AgentFiles};
use crate::args::Settings;
use crate::error::RunnerError;
use crate::health::Sampler;
use crate::heartbeat::{Backoff, Event, Heartbeats, Snapshot, Timing};
use crate::job;
use crate::observe::JobGauge;
use crate::version::{gitlab_version, installed_version, InstallError, Installer, Version};
use chrono::{DateTime, Utc};
use fly_ir::RunnerKind;
use gosling_api::{AgentState, Instruction, RunnerConfig};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// The longest a serverless runner lives when MotherGoose gives no deadline (Property 12).
pub const SERVERLESS_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// How long `run-single` waits for its job, at most.
pub const SINGLE_WAIT: Duration = Duration::from_secs(600);
/// Between SIGTERM to the agent and SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// How long the last heartbeat may take.
const LAST_HEARTBEAT: Duration = Duration::from_secs(10);
/// An agent up this long has its crash backoff reset.
const STABLE: Duration = Duration::from_secs(600);

/// How runner mode ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The process exit status.
    pub code: u8,
    /// Why, in words.
    pub reason: String,
}

impl Outcome {
    fn new(code: u8, reason: impl Into<String>) -> Outcome {
        Outcome {
            code,
            reason: reason.into(),
        }
    }
}

/// When a single-job runner's agent gets SIGQUIT and SIGKILL, from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlinePlan {
    /// Until SIGQUIT.
    pub quit_in: Duration,
    /// Until SIGKILL (the deadline itself).
    pub kill_in: Duration,
}

/// The deadline of a runner started at `started` (Property 12): MotherGoose's, else 60
/// minutes after the start for a serverless egg; none for other runners.
pub fn deadline_plan(
    now: DateTime<Utc>,
    started: DateTime<Utc>,
    config: &RunnerConfig,
    grace: Duration,
) -> Option<DeadlinePlan> {
    let lifetime = chrono::Duration::from_std(SERVERLESS_LIFETIME).unwrap_or_default();
    let deadline = config
        .deadline
        .or_else(|| (config.egg.kind == RunnerKind::Serverless).then(|| started + lifetime))?;
    let kill_in = (deadline - now).to_std().unwrap_or(Duration::ZERO);
    Some(DeadlinePlan {
        quit_in: kill_in.saturating_sub(grace),
        kill_in,
    })
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> Result<Signals, RunnerError> {
        let io = |source| RunnerError::Io {
            what: "installing the signal handlers",
            source,
        };
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(io)?,
            int: signal(SignalKind::interrupt()).map_err(io)?,
            hup: signal(SignalKind::hangup()).map_err(io)?,
        })
    }
}

/// Runner mode, from resolved settings to its outcome.
pub async fn main(s: Settings) -> Result<Outcome, RunnerError> {
    let mut sig = Signals::new()?;
    let started = Utc::now();
    let config = tokio::select! {
        c = load_with_retry(&s) => c?,
        _ = sig.term.recv() => return Ok(Outcome::new(0, "stopped by SIGTERM before it started")),
        _ = sig.int.recv() => return Ok(Outcome::new(130, "stopped by SIGINT before it started")),
    };
    let work_dir = s.args.work_dir.clone();
    create_private_dir(&work_dir)?;
    let (snap_tx, snap_rx) = watch::channel(Snapshot {
        config_hash: Some(config.egg.config_hash.clone()),
        ..Snapshot::default()
    });
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let hb = s.mothergoose.clone().map(|mg| {
        Heartbeats::spawn(
            Arc::new(mg),
            snap_rx,
            Sampler::new(&work_dir),
            Timing::new(s.heartbeat_interval(&config), s.args.max_silence),
            ev_tx,
        )
    });
    if let Some(name) = s.args.job.clone() {
        return job_mode(&s, &config, &name, hb, snap_tx, &mut sig).await;
    }
    let mut sup = Supervisor {
        installer: Installer::new(&s.args.agent_download_url, &s.args.agent_path)?,
        s,
        config,
        started,
        agent: None,
        phase: Phase::Running,
        restart_pending: false,
        staged: None,
        listen: None,
        files: None,
        snap: snap_tx,
        hb,
        events: ev_rx,
        gauge: JobGauge::default(),
        base_taken: 0,
        base_failed: 0,
        failures: 0,
        failed_targets: BTreeSet::new(),
        last_job_at: None,
        agent_version: String::new(),
        crash_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        restart_at: None,
        quit_at: None,
        kill_at: None,
        stop_deadline: None,
        force_kill_at: None,
        forced: false,
        gitlab: None,
        metrics_http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default(),
    };
    match sup.run(&mut sig).await {
        Ok(o) => Ok(o),
        Err(e) => {
            tracing::error!("{e}");
            if let Some(a) = sup.agent.take() {
                a.kill_group();
            }
            sup.failures += 1;
            sup.finish(1, "failed").await;
            Err(e)
        }
    }
}

/// Reads the configuration, retrying MotherGoose's transient failures with backoff for
/// up to `--max-silence`.
async fn load_with_retry(s: &Settings) -> Result<RunnerConfig, RunnerError> {
    let give_up = Instant::now() + s.args.max_silence;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        match s.load_config().await {
            Err(RunnerError::Api(e)) if e.is_transient() && Instant::now() < give_up => {
                let wait = backoff.next_delay();
                tracing::warn!("fetching the configuration: {e}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

async fn job_mode(
    s: &Settings,
    config: &RunnerConfig,
    name: &str,
    hb: Option<Heartbeats>,
    snap: watch::Sender<Snapshot>,
    sig: &mut Signals,
) -> Result<Outcome, RunnerError> {
    let Some(assigned) = config.job.clone() else {
        return Err(RunnerError::Mismatch(format!(
            "runner `{}` has no self-management job assigned (asked to run `{name}`)",
            config.runner_id
        )));
    };
    if assigned.name != name {
        return Err(RunnerError::Mismatch(format!(
            "runner `{}` is assigned job `{}`, not `{name}`",
            config.runner_id, assigned.name
        )));
    }
    snap.send_modify(|x| {
        x.state = AgentState::Busy;
        x.jobs_running = 1;
        x.job_count = 1;
    });
    if let Some(h) = &hb {
        h.poke();
    }
    let stop = async {
        tokio::select! {
            _ = sig.term.recv() => {}
            _ = sig.int.recv() => {}
        }
    };
    let result = job::run(&assigned, &s.args.work_dir, stop).await?;
    let mut posted = s.mothergoose.is_none();
    if let Some(mg) = &s.mothergoose {
        let give_up = Instant::now() + s.args.max_silence;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            match mg.job_result(&result).await {
                Ok(()) => {
                    posted = true;
                    break;
                }
                Err(e) if e.is_transient() && Instant::now() < give_up => {
                    let wait = backoff.next_delay();
                    tracing::warn!("reporting the job's result: {e}; trying again in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::error!("reporting the job's result: {e}");
                    break;
                }
            }
        }
    } else {
        tracing::info!(
            "job result: {}",
            serde_json::to_string(&result).unwrap_or_default()
        );
    }
    let last = Snapshot {
        state: AgentState::Stopped,
        jobs_running: 0,
        job_count: 1,
        failure_count: u32::from(!result.success),
        last_job_at: Some(result.finished_at),
        ..snap.borrow().clone()
    };
    if let Some(h) = hb {
        h.finish(last, LAST_HEARTBEAT).await;
    }
    let code = u8::from(!(result.success && posted));
    Ok(Outcome::new(
        code,
        format!(
            "job `{name}` {}{}",
            if result.success {
                "succeeded"
            } else {
                "failed"
            },
            if posted {
                ""
            } else {
                " (its result was not delivered)"
            }
        ),
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopWhy {
    Term,
    Drain,
    Deadline,
    Silent,
    Revoked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Paused,
    Stopping(StopWhy),
}

/// What the update check found.
enum Update {
    Installed(Version),
    Failed(String, String),
}

struct Supervisor {
    s: Settings,
    config: RunnerConfig,
    started: DateTime<Utc>,
    installer: Installer,
    agent: Option<Agent>,
    phase: Phase,
    /// Restart the agent when it exits (a reload or a new version).
    restart_pending: bool,
    /// A configuration to apply at the next start.
    staged: Option<(RunnerConfig, AgentFiles)>,
    listen: Option<String>,
    files: Option<AgentFiles>,
    snap: watch::Sender<Snapshot>,
    hb: Option<Heartbeats>,
    events: mpsc::UnboundedReceiver<Event>,
    gauge: JobGauge,
    base_taken: u64,
    base_failed: u64,
    failures: u32,
    failed_targets: BTreeSet<String>,
    last_job_at: Option<DateTime<Utc>>,
    agent_version: String,
    crash_backoff: Backoff,
    restart_at: Option<Instant>,
    quit_at: Option<Instant>,
    kill_at: Option<Instant>,
    stop_deadline: Option<Instant>,
    force_kill_at: Option<Instant>,
    forced: bool,
    gitlab: Option<watch::Sender<(String, Option<String>)>>,
    metrics_http: reqwest::Client,
}

/// Brings the agent in line with GitLab's version: `Ok(Some(v))` when `v` was installed.
async fn sync_agent(
    installer: &Installer,
    agent_path: &std::path::Path,
    gitlab_url: &str,
    known: Option<&str>,
) -> Result<Option<Version>, (String, InstallError)> {
    let gitlab = gitlab_version(installer.http(), known, gitlab_url)
        .await
        .map_err(|e| ("gitlab".to_string(), e))?;
    let installed = installed_version(agent_path)
        .await
        .and_then(|v| Version::parse(&v).ok());
    if installed.is_some_and(|v| v.serves(gitlab)) {
        return Ok(None);
    }
    let target = gitlab.agent_for_gitlab();
    tracing::info!(
        "GitLab is {gitlab}; installing gitlab-runner {target} (installed: {})",
        installed.map_or("none".to_string(), |v| v.to_string())
    );
    installer
        .install(target)
        .await
        .map_err(|e| (target.to_string(), e))?;
    tracing::info!("gitlab-runner {target} installed");
    Ok(Some(target))
}

async fn update_loop(
    installer: Installer,
    agent_path: std::path::PathBuf,
    every: Duration,
    mut gitlab: watch::Receiver<(String, Option<String>)>,
    tx: mpsc::UnboundedSender<Update>,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (url, known) = gitlab.borrow_and_update().clone();
        let update = match sync_agent(&installer, &agent_path, &url, known.as_deref()).await {
            Ok(None) => continue,
            Ok(Some(v)) => Update::Installed(v),
            Err((target, e)) => Update::Failed(target, e.to_string()),
        };
        if tx.send(update).is_err() {
            return;
        }
    }
}

/// The agent's exit, or never when there is none.
async fn wait_for(agent: &mut Option<Agent>) -> std::io::Result<std::process::ExitStatus> {
    match agent.as_mut() {
        Some(a) => a.wait().await,
        None => std::future::pending().await,
    }
}

fn free_local_port() -> Result<String, RunnerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| RunnerError::Io {
        what: "finding a port for the agent's metrics",
        source,
    })?;
    let addr = l.local_addr().map_err(|source| RunnerError::Io {
        what: "finding a port for the agent's metrics",
        source,
    })?;
    Ok(addr.to_string())
}

impl Supervisor {
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(100 * 365 * 86_400)
    }

    fn snapshot(&self) -> Snapshot {
        let running = self.gauge.running;
        let job_count = self.base_taken + self.gauge.taken;
        let state = match self.phase {
            Phase::Stopping(_) => AgentState::Stopping,
            _ if running > 0 => AgentState::Busy,
            Phase::Paused => AgentState::Idle,
            Phase::Running if job_count == 0 => AgentState::Active,
            Phase::Running => AgentState::Idle,
        };
        let failed = (self.base_failed + self.gauge.failed).min(u32::MAX as u64) as u32;
        Snapshot {
            state,
            jobs_running: running,
            job_count,
            failure_count: self.failures.saturating_add(failed),
            last_job_at: self.last_job_at,
            agent_version: self.agent_version.clone(),
            config_hash: Some(self.config.egg.config_hash.clone()),
        }
    }

    /// Publishes the snapshot; a heartbeat goes at once when the state changed.
    fn publish(&self) {
        let new = self.snapshot();
        let changed = {
            let old = self.snap.borrow();
            old.state != new.state || old.jobs_running != new.jobs_running
        };
        self.snap.send_replace(new);
        if changed {
            if let Some(h) = &self.hb {
                h.poke();
            }
        }
    }

    fn count_failure(&mut self, key: String, what: &str) {
        tracing::warn!("{what}");
        if self.failed_targets.insert(key) {
            self.failures += 1;
            self.publish();
        }
    }

    fn mode(&self) -> Result<Mode, RunnerError> {
        if self.config.ephemeral {
            let left = deadline_plan(
                Utc::now(),
                self.started,
                &self.config,
                self.s.args.deadline_grace,
            )
            .map_or(SINGLE_WAIT, |p| p.kill_in.min(SINGLE_WAIT));
            Ok(Mode::Single {
                wait_timeout: left.as_secs().max(1),
            })
        } else {
            Ok(Mode::Run {
                listen: self.listen.clone().unwrap_or_default(),
            })
        }
    }

    fn render(&self, config: &RunnerConfig) -> Result<AgentFiles, RunnerError> {
        Ok(agent_config::render(
            config,
            &agent_config::RenderOptions {
                work_dir: self.s.args.work_dir.clone(),
                listen_address: self.listen.clone(),
            },
        )?)
    }

    async fn start_agent(&mut self) -> Result<(), RunnerError> {
        if let Some((config, files)) = self.staged.take() {
            self.config = config;
            self.files = Some(files);
        }
        let files = match self.files.take() {
            Some(f) => f,
            None => self.render(&self.config)?,
        };
        files.write(&self.s.args.work_dir)?;
        self.files = Some(files);
        self.restart_pending = false;
        self.agent_version = installed_version(&self.s.args.agent_path)
            .await
            .unwrap_or_default();
        let spec = AgentSpec {
            program: self.s.args.agent_path.clone(),
            config: config_path(&self.s.args.work_dir),
            work_dir: self.s.args.work_dir.clone(),
            runner_name: runner_name(&self.config),
            mode: self.mode()?,
        };
        self.agent = Some(Agent::start(&spec).await?);
        self.publish();
        Ok(())
    }

    async fn run(&mut self, sig: &mut Signals) -> Result<Outcome, RunnerError> {
        if !self.config.ephemeral {
            self.listen = Some(free_local_port()?);
        }
        let agent_path = self.s.args.agent_path.clone();
        match sync_agent(
            &self.installer,
            &agent_path,
            &self.config.gitlab_url,
            self.config.gitlab_version.as_deref(),
        )
        .await
        {
            Ok(_) => {}
            Err((key, e)) if installed_version(&agent_path).await.is_some() => {
                self.count_failure(key, &format!("keeping the installed agent: {e}"));
            }
            Err((_, source)) => {
                return Err(RunnerError::NoAgent {
                    path: agent_path,
                    source,
                })
            }
        }
        let (up_tx, mut up_rx) = mpsc::unbounded_channel();
        if !self.config.ephemeral {
            let (tx, rx) = watch::channel((
                self.config.gitlab_url.clone(),
                self.config.gitlab_version.clone(),
            ));
            self.gitlab = Some(tx);
            tokio::spawn(update_loop(
                self.installer.clone(),
                agent_path,
                self.s.args.update_check_interval,
                rx,
                up_tx,
            ));
        } else {
            drop(up_tx);
        }
        if self.config.ephemeral {
            if let Some(plan) = deadline_plan(
                Utc::now(),
                self.started,
                &self.config,
                self.s.args.deadline_grace,
            ) {
                let now = Instant::now();
                self.quit_at = Some(now + plan.quit_in);
                self.kill_at = Some(now + plan.kill_in);
                tracing::info!(
                    "single-job runner: the agent gets SIGQUIT in {:.0?} and SIGKILL in {:.0?} (deadline)",
                    plan.quit_in,
                    plan.kill_in
                );
            }
        }
        self.start_agent().await?;
        let mut tick = tokio::time::interval(self.s.args.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let far = Self::far();
            let restart_at = self.restart_at;
            let quit_at = self.quit_at;
            let kill_at = self.kill_at;
            let stop_deadline = self.stop_deadline;
            let force_kill_at = self.force_kill_at;
            tokio::select! {
                _ = sig.term.recv() => {
                    tracing::info!("SIGTERM: finishing the running jobs, then stopping");
                    if let Some(o) = self.begin_stop(StopWhy::Term).await {
                        return Ok(o);
                    }
                }
                _ = sig.int.recv() => {
                    tracing::info!("SIGINT: stopping now");
                    return Ok(self.stop_now(130, "stopped by SIGINT").await);
                }
                _ = sig.hup.recv() => self.reload("SIGHUP").await?,
                Some(ev) = self.events.recv() => {
                    if let Some(o) = self.on_event(ev).await? {
                        return Ok(o);
                    }
                }
                Some(u) = up_rx.recv() => self.on_update(u),
                status = wait_for(&mut self.agent) => {
                    if let Some(o) = self.agent_exited(status).await? {
                        return Ok(o);
                    }
                }
                _ = tick.tick() => self.observe().await,
                _ = sleep_until(restart_at.unwrap_or(far)), if restart_at.is_some() => {
                    self.restart_at = None;
                    if self.phase == Phase::Running && self.agent.is_none() {
                        self.start_agent().await?;
                    }
                }
                _ = sleep_until(quit_at.unwrap_or(far)), if quit_at.is_some() => {
                    self.quit_at = None;
                    tracing::warn!("the single-job runner's deadline is near: stopping the agent");
                    if let Some(o) = self.begin_stop(StopWhy::Deadline).await {
                        return Ok(o);
                    }
                }
                _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    self.kill_at = None;
                    if let Some(a) = &self.agent {
                        tracing::warn!("deadline reached: killing the agent (SIGKILL)");
                        a.kill_group();
                        self.forced = true;
                    }
                }
                _ = sleep_until(stop_deadline.unwrap_or(far)), if stop_deadline.is_some() => {
                    self.stop_deadline = None;
                    if let Some(a) = &self.agent {
                        tracing::warn!(
                            "the agent did not finish within --stop-timeout ({:?}): aborting its jobs (SIGTERM)",
                            self.s.args.stop_timeout
                        );
                        a.signal(libc::SIGTERM);
                        self.forced = true;
                        self.force_kill_at = Some(Instant::now() + KILL_AFTER);
                    }
                }
                _ = sleep_until(force_kill_at.unwrap_or(far)), if force_kill_at.is_some() => {
                    self.force_kill_at = None;
                    if let Some(a) = &self.agent {
                        tracing::warn!("the agent is still there: SIGKILL");
                        a.kill_group();
                    }
                }
            }
        }
    }

    async fn observe(&mut self) {
        let Some(agent) = &self.agent else { return };
        if self.config.ephemeral {
            let received = agent.jobs_received();
            self.gauge = JobGauge {
                running: u32::from(received > 0),
                taken: received,
                failed: 0,
            };
        } else if let Some(g) = agent.scrape(&self.metrics_http).await {
            if g.running < self.gauge.running || g.taken > self.gauge.taken + u64::from(g.running) {
                self.last_job_at = Some(Utc::now());
            }
            self.gauge = g;
        }
        self.publish();
    }

    /// The agent's counts join the runner's when it exits.
    fn fold_gauge(&mut self) {
        if self.gauge.running > 0 {
            self.last_job_at = Some(Utc::now());
        }
        self.base_taken += self.gauge.taken;
        self.base_failed += self.gauge.failed;
        self.gauge = JobGauge::default();
    }

    async fn agent_exited(
        &mut self,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> Result<Option<Outcome>, RunnerError> {
        self.observe().await;
        let agent = self.agent.take();
        self.fold_gauge();
        let ok = status.as_ref().is_ok_and(|s| s.success());
        let shown = match &status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::info!("the agent exited ({shown})");
        match self.phase {
            Phase::Stopping(why) => {
                let bad = self.forced || matches!(why, StopWhy::Silent | StopWhy::Revoked);
                let reason = match why {
                    StopWhy::Term => "stopped by SIGTERM",
                    StopWhy::Drain => "drained",
                    StopWhy::Deadline if self.forced => "killed at the deadline",
                    StopWhy::Deadline => "stopped at the deadline",
                    StopWhy::Silent => "stopped: MotherGoose was silent too long",
                    StopWhy::Revoked => "stopped: MotherGoose refused the credential",
                };
                let forced = if self.forced && why != StopWhy::Deadline {
                    " (the agent had to be forced)"
                } else {
                    ""
                };
                if self.forced {
                    self.failures += 1;
                }
                Ok(Some(
                    self.finish(u8::from(bad), &format!("{reason}{forced}"))
                        .await,
                ))
            }
            Phase::Paused => {
                self.publish();
                Ok(None)
            }
            Phase::Running if self.restart_pending => {
                self.start_agent().await?;
                Ok(None)
            }
            Phase::Running if self.config.ephemeral => {
                if !ok {
                    self.failures += 1;
                }
                let reason = if ok {
                    "the single-job agent finished"
                } else {
                    "the single-job agent failed"
                };
                Ok(Some(self.finish(u8::from(!ok), reason).await))
            }
            Phase::Running => {
                self.failures += 1;
                if agent.is_some_and(|a| a.started.elapsed() >= STABLE) {
                    self.crash_backoff.reset();
                }
                let wait = self.crash_backoff.next_delay();
                tracing::warn!(
                    "the agent stopped unexpectedly ({shown}); restarting it in {wait:?}"
                );
                self.restart_at = Some(Instant::now() + wait);
                self.publish();
                Ok(None)
            }
        }
    }

    /// Graceful stop; `Some` when there was no agent to wait for.
    async fn begin_stop(&mut self, why: StopWhy) -> Option<Outcome> {
        if let Phase::Stopping(_) = self.phase {
            return None;
        }
        self.phase = Phase::Stopping(why);
        self.restart_at = None;
        if matches!(why, StopWhy::Term | StopWhy::Silent | StopWhy::Revoked) {
            self.stop_deadline = Some(Instant::now() + self.s.args.stop_timeout);
        }
        match self.agent.as_mut() {
            Some(a) => {
                a.quit();
                self.publish();
                None
            }
            None => {
                let code = u8::from(matches!(why, StopWhy::Silent | StopWhy::Revoked));
                Some(self.finish(code, "stopped (no agent was running)").await)
            }
        }
    }

    /// Immediate stop: the agent aborts its jobs (SIGTERM), SIGKILL after 10 s.
    async fn stop_now(&mut self, code: u8, reason: &str) -> Outcome {
        self.phase = Phase::Stopping(StopWhy::Term);
        if let Some(mut a) = self.agent.take() {
            a.signal(libc::SIGTERM);
            if tokio::time::timeout(KILL_AFTER, a.wait()).await.is_err() {
                a.kill_group();
                let _ = a.wait().await;
            }
        }
        self.observe().await;
        self.fold_gauge();
        self.finish(code, reason).await
    }

    /// The last heartbeat, then the outcome.
    async fn finish(&mut self, code: u8, reason: &str) -> Outcome {
        let mut last = self.snapshot();
        last.state = AgentState::Stopped;
        last.jobs_running = 0;
        if let Some(h) = self.hb.take() {
            if !h.finish(last, LAST_HEARTBEAT).await {
                tracing::warn!("the last heartbeat (stopped) was not delivered");
            }
        }
        tracing::info!("{reason}");
        Outcome::new(code, reason)
    }

    async fn on_event(&mut self, ev: Event) -> Result<Option<Outcome>, RunnerError> {
        match ev {
            Event::Instruction(i) => self.obey(i).await,
            Event::Revoked(message) => {
                tracing::error!("MotherGoose refused the runner's credential: {message}");
                Ok(self.begin_stop(StopWhy::Revoked).await)
            }
            Event::Silent(d) => {
                tracing::error!("no answer from MotherGoose for {d:.0?}: stopping");
                Ok(self.begin_stop(StopWhy::Silent).await)
            }
        }
    }

    async fn obey(&mut self, i: Instruction) -> Result<Option<Outcome>, RunnerError> {
        let single = self.config.ephemeral;
        match i {
            Instruction::Drain => {
                if !matches!(self.phase, Phase::Stopping(_)) {
                    tracing::info!("MotherGoose: drain (finish the jobs, then stop)");
                }
                Ok(self.begin_stop(StopWhy::Drain).await)
            }
            Instruction::Stop => {
                tracing::info!("MotherGoose: stop now");
                Ok(Some(self.stop_now(0, "stopped as instructed").await))
            }
            Instruction::Reload if !single => {
                self.reload("MotherGoose's reload").await?;
                Ok(None)
            }
            Instruction::Pause if !single && self.phase == Phase::Running => {
                tracing::info!("MotherGoose: pause (finish the jobs, take no new one)");
                self.phase = Phase::Paused;
                self.restart_at = None;
                self.restart_pending = false;
                if let Some(a) = self.agent.as_mut() {
                    a.quit();
                }
                self.publish();
                Ok(None)
            }
            Instruction::Resume if !single && self.phase == Phase::Paused => {
                tracing::info!("MotherGoose: resume");
                self.phase = Phase::Running;
                if self.agent.is_some() {
                    self.restart_pending = true;
                } else {
                    self.start_agent().await?;
                }
                self.publish();
                Ok(None)
            }
            other => {
                tracing::info!("MotherGoose: {other:?} does not apply now; ignored");
                Ok(None)
            }
        }
    }

    fn on_update(&mut self, u: Update) {
        match u {
            Update::Installed(v) => {
                tracing::info!("gitlab-runner {v} installed: the agent restarts between jobs");
                self.restart_pending = true;
                if self.phase == Phase::Running {
                    if let Some(a) = self.agent.as_mut() {
                        a.quit();
                    }
                }
            }
            Update::Failed(target, message) => {
                self.count_failure(
                    target,
                    &format!("agent update failed, keeping the running agent: {message}"),
                );
            }
        }
    }

    async fn reload(&mut self, why: &str) -> Result<(), RunnerError> {
        if self.config.ephemeral {
            tracing::info!("{why}: a single-job runner keeps its configuration");
            return Ok(());
        }
        if matches!(self.phase, Phase::Stopping(_)) {
            return Ok(());
        }
        let config = match self.s.load_config().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("{why}: the configuration could not be read again ({e}); keeping the current one");
                return Ok(());
            }
        };
        let files = match self.render(&config) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(
                    "{why}: the new configuration is not usable ({e}); keeping the current one"
                );
                return Ok(());
            }
        };
        if let Some(tx) = &self.gitlab {
            tx.send_replace((config.gitlab_url.clone(), config.gitlab_version.clone()));
        }
        let current = self.staged.as_ref().map(|(_, f)| f).or(self.files.as_ref());
        if current == Some(&files) {
            tracing::info!("{why}: config.toml is unchanged");
            self.config = config;
            self.publish();
            return Ok(());
        }
        self.staged = Some((config, files));
        match (self.phase, self.agent.as_mut()) {
            (Phase::Running, Some(a)) => {
                tracing::info!("{why}: new config.toml; the agent restarts between jobs");
                self.restart_pending = true;
                a.quit();
            }
            (_, Some(_)) => {
                tracing::info!("{why}: new config.toml, applied when the agent starts again");
            }
            (_, None) => {
                if let Some((config, files)) = self.staged.take() {
                    files.write(&self.s.args.work_dir)?;
                    self.config = config;
                    self.files = Some(files);
                }
                tracing::info!("{why}: new config.toml written");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: &str, deadline: Option<&str>) -> RunnerConfig {
        let mut v = serde_json::json!({
            "runner_id": "r1",
            "egg": {
                "name": "e", "type": kind,
                "cloud": {"provider": "yandex", "region": "ru-central1-a", "preemptible": false},
                "resources": {"cpu": 2, "memory_mb": 2048, "disk_gb": 20},
                "runner": {"tags": [], "concurrent": 1, "idle_timeout_s": 600, "timeout_s": 3600,
                           "image": "alpine:3", "privileged": false, "run_untagged": false},
                "gitlab": {"url": "https://gitlab.example.com", "project_id": 1, "token_secret": "vault://x/y"},
                "environment": {}, "config_hash": "h"
            },
            "gitlab_url": "https://gitlab.example.com",
            "ephemeral": true,
            "heartbeat_interval_s": 30
        });
        if let Some(d) = deadline {
            v["deadline"] = serde_json::json!(d);
        }
        serde_json::from_value(v).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    // Property 12: a serverless runner is stopped 60 minutes after it started at the
    // latest (its agent gets SIGQUIT the grace before, SIGKILL at it), or at MotherGoose's
    // deadline when given.
    #[test]
    fn property_12_serverless_runners_end_within_60_minutes() {
        let grace = Duration::from_secs(30);
        let start = at("2026-01-01T10:00:00Z");
        let p = deadline_plan(
            at("2026-01-01T10:00:00Z"),
            start,
            &config("serverless", None),
            grace,
        )
        .unwrap();
        assert_eq!(p.kill_in, Duration::from_secs(3600));
        assert_eq!(p.quit_in, Duration::from_secs(3570));
        let p = deadline_plan(
            at("2026-01-01T10:59:50Z"),
            start,
            &config("serverless", None),
            grace,
        )
        .unwrap();
        assert_eq!(
            (p.quit_in, p.kill_in),
            (Duration::ZERO, Duration::from_secs(10))
        );
        let p = deadline_plan(
            at("2026-01-01T12:00:00Z"),
            start,
            &config("serverless", None),
            grace,
        )
        .unwrap();
        assert_eq!(p.kill_in, Duration::ZERO, "past the deadline: at once");
        let given = config("serverless", Some("2026-01-01T10:20:00Z"));
        let p = deadline_plan(at("2026-01-01T10:05:00Z"), start, &given, grace).unwrap();
        assert_eq!(
            p.kill_in,
            Duration::from_secs(900),
            "MotherGoose's deadline wins"
        );
        assert_eq!(
            deadline_plan(start, start, &config("vm", None), grace),
            None
        );
    }
}
