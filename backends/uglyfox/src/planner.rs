//! The pass as a pure function: from a [`Snapshot`] (runners, latest samples, pending demand,
//! pool ledgers, the time) and the deployed IR to a [`Plan`] — a list of decisions, each with
//! its reason, including the decisions *not* to act because a guard held (Property 19).
//! Nothing here reads a clock or a store, so `uglyfox plan` shows exactly what `uglyfox run`
//! would do, and the properties are tested on generated fleets without I/O.
//!
//! Order within a pass, per runner (sorted by id; the first step that decides wins):
//! leaving runners (stale drains forced, removals retried) → runners of an egg that is no
//! longer deployed → `failure_count >= failed_threshold` (Property 17) → age > `max_age`
//! (Property 18) → health (heartbeat older than the limit, or never ready within the
//! provisioning timeout: marked failed) → the policy rules in order. Then, per VM egg, the
//! pools: Apex over `max_count` demoted (Property 14), idle Apex demoted (Property 16),
//! demand met by promoting Nadir before requesting new runners (Property 15), Nadir over its
//! `max_count` or idle past its `idle_timeout` ended.

use crate::policy;
use crate::snapshot::{Ledger, Request, Snapshot};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use fly_ir::{Action, Deployment, Egg, Metric, Metrics, RunnerKind, RunnerStateOrPool};
use gosling_fleet::tasks::runner_id_for;
use gosling_fleet::{state_of, RunnerState, TerminationPolicy};
use gosling_state::Runner;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// UglyFox's own settings (what the IR does not say).
#[derive(Clone, Debug)]
pub struct Config {
    /// How often runners report (`gosling runner --metrics-interval`, 30 s by default).
    pub metrics_interval: Duration,
    /// A runner whose last heartbeat is older than `heartbeat_factor × metrics_interval`
    /// is marked failed (4: three missed reports are tolerated, the fourth is not).
    pub heartbeat_factor: u32,
    /// How long a runner may stay `provisioning` before it is marked failed.
    pub provisioning_timeout: Duration,
    /// How long a runner may stay `terminating` before its removal is tried again.
    pub removal_grace: Duration,
    /// Removal retries and drain deadlines (shared with MotherGoose's `Lifecycle`).
    pub termination: TerminationPolicy,
    /// How long a pool request counts as on its way before it is given up.
    pub request_timeout: Duration,
    /// The pass interval when the deployment has no `uglyfox` block.
    pub default_check_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            metrics_interval: Duration::from_secs(30),
            heartbeat_factor: 4,
            provisioning_timeout: Duration::from_secs(15 * 60),
            removal_grace: Duration::from_secs(5 * 60),
            termination: TerminationPolicy::default(),
            request_timeout: Duration::from_secs(15 * 60),
            default_check_interval: Duration::from_secs(5 * 60),
        }
    }
}

impl Config {
    /// The heartbeat age beyond which a runner is unhealthy.
    pub fn heartbeat_limit(&self) -> Duration {
        self.metrics_interval
            .saturating_mul(self.heartbeat_factor.max(1))
    }
}

/// What a decision does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Mark the runner failed and count a failure.
    MarkFailed,
    /// End the runner (`Lifecycle::request`: drained when it may run a job).
    End,
    /// Stop a runner whose drain outlived its deadline (`Lifecycle::request`, forced).
    ForceEnd,
    /// Try removing the machine again (`Lifecycle::remove`).
    Remove,
    /// Apex → Nadir (instruction `pause`).
    Demote,
    /// Nadir → Apex (instruction `resume`).
    Promote,
    /// Restart the agent (instruction `reload`).
    Restart,
    /// Tell operators (audit + notifier).
    Notify,
    /// Ask MotherGoose for a new pool runner (`DeployRunner { job: "pool:<egg>:<nonce>" }`).
    Request,
    /// Not acting, because a guard holds.
    Hold,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 10] = [
        Kind::MarkFailed,
        Kind::End,
        Kind::ForceEnd,
        Kind::Remove,
        Kind::Demote,
        Kind::Promote,
        Kind::Restart,
        Kind::Notify,
        Kind::Request,
        Kind::Hold,
    ];

    /// Its name (audit actions, metrics labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MarkFailed => "mark_failed",
            Kind::End => "end",
            Kind::ForceEnd => "force_end",
            Kind::Remove => "remove",
            Kind::Demote => "demote",
            Kind::Promote => "promote",
            Kind::Restart => "restart",
            Kind::Notify => "notify",
            Kind::Request => "request",
            Kind::Hold => "hold",
        }
    }
}

/// Why a decision was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Its heartbeat is older than the limit.
    Heartbeat,
    /// It never became ready within the provisioning timeout.
    ProvisioningTimeout,
    /// `failure_count >= failed_threshold` (Property 17).
    FailedThreshold,
    /// Older than `max_age` (Property 18).
    MaxAge,
    /// A policy rule (named in `rule`).
    Rule,
    /// Its egg is no longer deployed.
    EggNotDeployed,
    /// Idle in Apex past the idle timeout (Property 16).
    IdleApex,
    /// Idle in Nadir past Nadir's idle timeout.
    IdleNadir,
    /// Apex holds more than `max_count` (Property 14).
    OverMaxApex,
    /// Nadir holds more than its `max_count`.
    OverMaxNadir,
    /// Pending jobs or busy runners need more Apex runners (Property 15).
    Demand,
    /// Apex is below its `min_count`.
    MinCount,
    /// A drain outlived its deadline.
    DrainDeadline,
    /// A removal stayed `terminating` past the removal grace.
    StuckTerminating,
    /// A failed removal's retry time has come.
    RetryRemoval,
}

impl Reason {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Heartbeat => "heartbeat",
            Reason::ProvisioningTimeout => "provisioning_timeout",
            Reason::FailedThreshold => "failed_threshold",
            Reason::MaxAge => "max_age",
            Reason::Rule => "rule",
            Reason::EggNotDeployed => "egg_not_deployed",
            Reason::IdleApex => "idle_apex",
            Reason::IdleNadir => "idle_nadir",
            Reason::OverMaxApex => "over_max_apex",
            Reason::OverMaxNadir => "over_max_nadir",
            Reason::Demand => "demand",
            Reason::MinCount => "min_count",
            Reason::DrainDeadline => "drain_deadline",
            Reason::StuckTerminating => "stuck_terminating",
            Reason::RetryRemoval => "retry_removal",
        }
    }
}

/// Why UglyFox did not act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// The pool would fall below its `min_count`.
    PoolMinimum,
    /// The egg has pending jobs and would be left without Apex runners for them.
    PendingJobs,
    /// The pass already created or ended as many runners as the throttle allows.
    Throttle,
    /// Nadir is at its `max_count`.
    NadirFull,
    /// Apex is at its `max_count`.
    ApexFull,
    /// The egg is at its `max_runners`.
    MaxRunners,
}

impl Guard {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::PoolMinimum => "pool_minimum",
            Guard::PendingJobs => "pending_jobs",
            Guard::Throttle => "throttle",
            Guard::NadirFull => "nadir_full",
            Guard::ApexFull => "apex_full",
            Guard::MaxRunners => "max_runners",
        }
    }
}

/// The runner as the snapshot read it (the applier acts only if it still is so).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Seen {
    /// Its `row_version`.
    pub version: u64,
    /// Its state.
    pub state: RunnerState,
    /// Its last heartbeat.
    pub last_heartbeat: Option<DateTime<Utc>>,
}

/// One decision of a pass.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// What it does.
    pub kind: Kind,
    /// The egg.
    pub egg: String,
    /// The runner (`None`: the egg, for requests and holds on requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Why.
    pub reason: Reason,
    /// The policy rule, for [`Reason::Rule`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For a hold: what was not done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wanted: Option<Kind>,
    /// For a hold: the guard that stopped it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// For a request: the task key `pool:<egg>:<nonce>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// In words.
    pub why: String,
    /// Made by the pool balance of the egg: applied only by the instance whose write of the
    /// egg's ledger succeeds.
    pub pool: bool,
    /// The runner as read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
}

/// A rule that could not be evaluated for some runners (a metric it reads is missing).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SkippedRule {
    /// Runners it was skipped for.
    pub runners: u64,
    /// The metrics that were missing.
    pub missing: Vec<&'static str>,
    /// The first few runners.
    pub examples: Vec<String>,
}

/// An egg's pools as the pass found and left them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EggPools {
    /// The egg.
    pub egg: String,
    /// Apex runners before → after.
    pub apex: (u32, u32),
    /// Nadir runners before → after.
    pub nadir: (u32, u32),
    /// Busy Apex runners.
    pub busy: u32,
    /// Runners on their way (provisioning, requested) before the pass.
    pub coming: u32,
    /// GitLab jobs waiting.
    pub pending: u32,
    /// Apex `min_count` in force now.
    pub min_apex: u32,
    /// Apex `max_count`.
    pub max_apex: u32,
    /// The Apex size the pass aims at.
    pub target: u32,
}

/// The egg ledger to write before the egg's pool decisions are applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerWrite {
    /// The version read (`None`: absent).
    pub seen: Option<u64>,
    /// The new content.
    pub ledger: Ledger,
}

/// What a pass would do, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The time of the pass.
    pub now: DateTime<Utc>,
    /// Seconds until the next pass.
    pub check_interval_s: u64,
    /// The deployment has an `uglyfox` block (pruning, pools and rules are on).
    pub policy: bool,
    /// Decisions, in the order they are applied.
    pub decisions: Vec<Decision>,
    /// Rules skipped for missing metrics, by rule name.
    pub skipped_rules: BTreeMap<String, SkippedRule>,
    /// Pools per VM egg.
    pub pools: Vec<EggPools>,
    /// Ledgers to write, per egg with pool decisions.
    #[serde(skip)]
    pub ledgers: BTreeMap<String, LedgerWrite>,
}

impl Plan {
    /// Decisions of one kind.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(move |d| d.kind == kind)
    }

    /// Decisions that act on a runner (everything but holds and notices).
    pub fn actions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions
            .iter()
            .filter(|d| !matches!(d.kind, Kind::Hold | Kind::Notify))
    }
}

/// The request key of a pool runner: `pool:<egg>:<nonce>`, the nonce from the pass time
/// and an index, so the same snapshot always plans the same keys.
pub fn request_key(egg: &str, now: DateTime<Utc>, n: usize) -> String {
    format!("pool:{egg}:{:x}-{n}", now.timestamp_millis().max(0))
}

fn secs(d: TimeDelta) -> i64 {
    d.num_seconds()
}

/// Seconds as a signed count (a value beyond `i64` reads as "forever").
fn s64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn meta_time(r: &Runner, key: &str) -> Option<DateTime<Utc>> {
    let text = r.metadata.get("uglyfox")?.get(key)?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// When the Nadir runner entered Nadir (recorded by the demotion).
pub fn nadir_since(r: &Runner) -> Option<DateTime<Utc>> {
    meta_time(r, "nadir_since")
}

/// When UglyFox last counted a failed health check of the runner.
pub fn failed_check_at(r: &Runner) -> Option<DateTime<Utc>> {
    meta_time(r, "failed_check_at")
}

/// Since when a ready runner has been waiting for jobs (`None`: busy or not ready).
pub fn idle_since(r: &Runner, state: RunnerState) -> Option<DateTime<Utc>> {
    if !matches!(state, RunnerState::Active | RunnerState::Idle) {
        return None;
    }
    let since = r.state_since.unwrap_or(r.created_at);
    Some(r.last_job_at.map_or(since, |j| j.max(since)))
}

/// Whether a runner belongs to its egg's pools: a VM runner that is not ephemeral and runs
/// no self-management job.
pub fn is_pool_runner(r: &Runner) -> bool {
    !r.ephemeral && r.kind == "vm" && r.self_job.is_none()
}

fn in_nadir(r: &Runner) -> bool {
    r.pool.as_deref() == Some("nadir")
}

/// A runner's metrics as policy conditions read them.
///
/// `state` is the runner's state in the words of the language (`provisioning`, `active` —
/// running jobs —, `idle` — up and waiting for jobs, whether or not it ran one —, `failed`)
/// plus its pool (`apex`, `nadir`). `idle_time` is missing for runners that are not up;
/// `last_heartbeat_age` for runners that never reported; `cpu_usage`, `memory_usage` and
/// `disk_usage` for runners without a sample.
#[derive(Clone, Debug)]
pub struct RunnerMetrics {
    numbers: [Option<f64>; 9],
    states: [RunnerStateOrPool; 2],
    n_states: usize,
}

fn slot(m: Metric) -> usize {
    match m {
        Metric::FailedCount => 0,
        Metric::Age => 1,
        Metric::IdleTime => 2,
        Metric::State => 3,
        Metric::JobCount => 4,
        Metric::CpuUsage => 5,
        Metric::MemoryUsage => 6,
        Metric::DiskUsage => 7,
        Metric::LastHeartbeatAge => 8,
    }
}

impl RunnerMetrics {
    /// The metrics of `r` at `now`, with its latest sample if any.
    pub fn of(r: &Runner, now: DateTime<Utc>, sample: Option<&crate::Sample>) -> RunnerMetrics {
        let state = state_of(r);
        let mut numbers = [None; 9];
        let dur = |t: DateTime<Utc>| Some(secs(now - t).max(0) as f64);
        numbers[slot(Metric::FailedCount)] = Some(r.failure_count as f64);
        numbers[slot(Metric::Age)] = dur(r.created_at);
        numbers[slot(Metric::IdleTime)] = match state {
            RunnerState::Busy => Some(0.0),
            s => idle_since(r, s).and_then(dur),
        };
        numbers[slot(Metric::JobCount)] = Some(r.job_count as f64);
        if let Some(s) = sample {
            numbers[slot(Metric::CpuUsage)] = Some(s.cpu);
            numbers[slot(Metric::MemoryUsage)] = Some(s.memory);
            numbers[slot(Metric::DiskUsage)] = Some(s.disk);
        }
        numbers[slot(Metric::LastHeartbeatAge)] = r.last_heartbeat.and_then(dur);
        let word = match state {
            RunnerState::Provisioning => Some(RunnerStateOrPool::Provisioning),
            RunnerState::Busy => Some(RunnerStateOrPool::Active),
            RunnerState::Active | RunnerState::Idle => Some(RunnerStateOrPool::Idle),
            RunnerState::Failed => Some(RunnerStateOrPool::Failed),
            RunnerState::Terminated => Some(RunnerStateOrPool::Terminated),
            _ => None,
        };
        let pool = (is_pool_runner(r)
            && matches!(
                state,
                RunnerState::Active | RunnerState::Idle | RunnerState::Busy
            ))
        .then(|| {
            if in_nadir(r) {
                RunnerStateOrPool::Nadir
            } else {
                RunnerStateOrPool::Apex
            }
        });
        let mut states = [RunnerStateOrPool::Terminated; 2];
        let mut n_states = 0;
        for s in [word, pool].into_iter().flatten() {
            states[n_states] = s;
            n_states += 1;
        }
        RunnerMetrics {
            numbers,
            states,
            n_states,
        }
    }
}

impl Metrics for RunnerMetrics {
    fn number(&self, metric: Metric) -> Option<f64> {
        self.numbers[slot(metric)]
    }

    fn states(&self) -> &[RunnerStateOrPool] {
        &self.states[..self.n_states]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Apex,
    Nadir,
}

#[derive(Default)]
struct PoolCount {
    apex: u32,
    nadir: u32,
    busy_apex: u32,
    provisioning: u32,
    live: u32,
    runners: Vec<usize>,
}

struct Planner<'a> {
    snap: &'a Snapshot,
    cfg: &'a Config,
    now: DateTime<Utc>,
    decisions: Vec<Decision>,
    taken: Vec<bool>,
    acted: Vec<bool>,
    member: Vec<Option<Member>>,
    counts: HashMap<&'a str, PoolCount>,
    ends_left: Option<u32>,
    creates_left: Option<u32>,
    skipped: BTreeMap<String, SkippedRule>,
}

struct Act<'r> {
    kind: Kind,
    reason: Reason,
    rule: Option<&'r str>,
    why: String,
    pool: bool,
}

impl<'a> Planner<'a> {
    fn runner(&self, i: usize) -> &'a Runner {
        &self.snap.runners[i].item
    }

    fn seen(&self, i: usize) -> Seen {
        let v = &self.snap.runners[i];
        Seen {
            version: v.version,
            state: state_of(&v.item),
            last_heartbeat: v.item.last_heartbeat,
        }
    }

    fn push(&mut self, i: usize, act: Act<'_>) {
        let r = self.runner(i);
        self.taken[i] = true;
        // A notice leaves the runner as it is: a pool limit may still act on it.
        self.acted[i] |= !matches!(act.kind, Kind::Hold | Kind::Notify);
        self.decisions.push(Decision {
            kind: act.kind,
            egg: r.egg_name.clone(),
            runner: Some(r.id.clone()),
            reason: act.reason,
            rule: act.rule.map(String::from),
            wanted: None,
            guard: None,
            key: None,
            why: act.why,
            pool: act.pool,
            seen: Some(self.seen(i)),
        });
    }

    fn hold(&mut self, i: usize, wanted: Kind, guard: Guard, act: Act<'_>) {
        self.push(
            i,
            Act {
                kind: Kind::Hold,
                ..act
            },
        );
        if let Some(d) = self.decisions.last_mut() {
            d.kind = Kind::Hold;
            d.wanted = Some(wanted);
            d.guard = Some(guard);
        }
    }

    fn count(&mut self, i: usize) -> Option<&mut PoolCount> {
        let egg = self.snap.runners[i].item.egg_name.as_str();
        self.counts.get_mut(egg)
    }

    /// Takes runner `i` out of its pool (it ends or fails).
    fn leave_pool(&mut self, i: usize) {
        let r = self.runner(i);
        let busy = state_of(r) == RunnerState::Busy;
        let coming = state_of(r) == RunnerState::Provisioning && is_pool_runner(r);
        let m = self.member[i].take();
        if let Some(c) = self.count(i) {
            if coming {
                c.provisioning = c.provisioning.saturating_sub(1);
            }
            match m {
                Some(Member::Apex) => {
                    c.apex -= 1;
                    if busy {
                        c.busy_apex -= 1;
                    }
                }
                Some(Member::Nadir) => c.nadir -= 1,
                None => {}
            }
        }
    }

    fn move_pool(&mut self, i: usize, to: Member) {
        let busy = state_of(self.runner(i)) == RunnerState::Busy;
        let from = self.member[i].replace(to);
        if let Some(c) = self.count(i) {
            match (from, to) {
                (Some(Member::Apex), Member::Nadir) => {
                    c.apex -= 1;
                    c.nadir += 1;
                    if busy {
                        c.busy_apex -= 1;
                    }
                }
                (Some(Member::Nadir), Member::Apex) => {
                    c.nadir -= 1;
                    c.apex += 1;
                    if busy {
                        c.busy_apex += 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// Ends runner `i`, unless the pass's termination throttle is spent.
    fn end(&mut self, i: usize, act: Act<'_>) {
        if self.ends_left == Some(0) {
            let why = format!(
                "{}; the termination throttle of this pass is spent",
                act.why
            );
            self.hold(i, Kind::End, Guard::Throttle, Act { why, ..act });
            return;
        }
        if let Some(n) = self.ends_left.as_mut() {
            *n -= 1;
        }
        let busy = state_of(self.runner(i)) == RunnerState::Busy;
        let why = if busy {
            format!("{} (busy: drained, it finishes its job first)", act.why)
        } else {
            act.why
        };
        self.leave_pool(i);
        self.push(
            i,
            Act {
                kind: Kind::End,
                why,
                ..act
            },
        );
    }
}

/// Plans one pass. `ir` is the deployment in force (`None`: nothing is deployed — health is
/// still checked and removals under way continue, but nothing is ended or created).
pub fn plan(snap: &Snapshot, ir: Option<&Deployment>, cfg: &Config) -> Plan {
    let now = snap.now;
    let uf = ir.and_then(|d| d.uglyfox.as_ref());
    let check_interval_s = uf
        .map(|u| u.pruning.check_interval_s)
        .unwrap_or(cfg.default_check_interval.as_secs())
        .max(1);
    let throttle = uf.map(policy::throttle).unwrap_or_default();
    let eggs: HashMap<&str, &Egg> = ir
        .map(|d| d.eggs.iter().map(|e| (e.name.as_str(), e)).collect())
        .unwrap_or_default();
    let n = snap.runners.len();
    let mut p = Planner {
        snap,
        cfg,
        now,
        decisions: Vec::new(),
        taken: vec![false; n],
        acted: vec![false; n],
        member: vec![None; n],
        counts: HashMap::new(),
        ends_left: throttle.terminate,
        creates_left: throttle.create,
        skipped: BTreeMap::new(),
    };
    // Pools: VM eggs, when there is a policy.
    if uf.is_some() {
        for e in eggs.values().filter(|e| e.kind == RunnerKind::Vm) {
            p.counts.insert(e.name.as_str(), PoolCount::default());
        }
    }
    for (i, v) in snap.runners.iter().enumerate() {
        let r = &v.item;
        let st = state_of(r);
        let Some(c) = p.counts.get_mut(r.egg_name.as_str()) else {
            continue;
        };
        if st.is_live() {
            c.live += 1;
        }
        if !is_pool_runner(r) {
            continue;
        }
        c.runners.push(i);
        match st {
            RunnerState::Provisioning => c.provisioning += 1,
            RunnerState::Active | RunnerState::Idle | RunnerState::Busy => {
                if in_nadir(r) {
                    c.nadir += 1;
                    p.member[i] = Some(Member::Nadir);
                } else {
                    c.apex += 1;
                    p.member[i] = Some(Member::Apex);
                    if st == RunnerState::Busy {
                        c.busy_apex += 1;
                    }
                }
            }
            _ => {}
        }
    }
    let before: HashMap<&str, (u32, u32)> = p
        .counts
        .iter()
        .map(|(k, c)| (*k, (c.apex, c.nadir)))
        .collect();

    let rules: Vec<(&fly_ir::Rule, Vec<Metric>)> = uf
        .map(|u| {
            u.policies
                .iter()
                .map(|r| (r, policy::condition_metrics(&r.condition)))
                .collect()
        })
        .unwrap_or_default();
    let limit = cfg.heartbeat_limit();
    let limit_s = s64(limit.as_secs());

    for i in 0..n {
        per_runner(&mut p, i, ir, uf, &eggs, &rules, limit_s, check_interval_s);
    }

    // Pools, egg by egg in name order.
    let mut pools = Vec::new();
    let mut ledgers = BTreeMap::new();
    if let Some(uf) = uf {
        let mut names: Vec<&str> = p.counts.keys().copied().collect();
        names.sort_unstable();
        for name in names {
            let Some(egg) = eggs.get(name).copied() else {
                continue;
            };
            let (summary, requests) = balance(&mut p, egg, uf, before[name]);
            pools.push(summary);
            ledgers.insert(
                name.to_string(),
                LedgerWrite {
                    seen: snap.ledgers.get(name).map(|l| l.version),
                    ledger: Ledger { requests },
                },
            );
        }
        // Only eggs with pool decisions are claimed.
        let claimed: HashSet<&str> = p
            .decisions
            .iter()
            .filter(|d| d.pool)
            .map(|d| d.egg.as_str())
            .collect();
        ledgers.retain(|egg, _| claimed.contains(egg.as_str()));
    }
    Plan {
        now,
        check_interval_s,
        policy: uf.is_some(),
        decisions: p.decisions,
        skipped_rules: p.skipped,
        pools,
        ledgers,
    }
}

#[allow(clippy::too_many_arguments)]
fn per_runner(
    p: &mut Planner<'_>,
    i: usize,
    ir: Option<&Deployment>,
    uf: Option<&fly_ir::UglyFox>,
    eggs: &HashMap<&str, &Egg>,
    rules: &[(&fly_ir::Rule, Vec<Metric>)],
    limit_s: i64,
    check_interval_s: u64,
) {
    let now = p.now;
    let cfg = p.cfg;
    let r = p.runner(i);
    let st = state_of(r);
    let egg = eggs.get(r.egg_name.as_str()).copied();
    let since = r.state_since.unwrap_or(r.updated_at);
    let act = |kind, reason, why: String| Act {
        kind,
        reason,
        rule: None,
        why,
        pool: false,
    };
    match st {
        RunnerState::Terminated => return,
        RunnerState::Draining => {
            let deadline = cfg.termination.drain_deadline(egg);
            let took = secs(now - since);
            if took > s64(deadline.as_secs()) {
                p.push(
                    i,
                    act(
                        Kind::ForceEnd,
                        Reason::DrainDeadline,
                        format!(
                            "draining for {took} s, past its deadline of {} s (job timeout + grace)",
                            deadline.as_secs()
                        ),
                    ),
                );
            }
            return;
        }
        RunnerState::Terminating => {
            let took = secs(now - since);
            if took >= s64(cfg.removal_grace.as_secs()) {
                p.push(
                    i,
                    act(
                        Kind::Remove,
                        Reason::StuckTerminating,
                        format!("terminating for {took} s: removing its machine again"),
                    ),
                );
            }
            return;
        }
        RunnerState::PendingTermination => {
            let wait = cfg.termination.retry_delay(r.termination_attempts);
            let due = r.updated_at.checked_add_signed(delta(wait));
            if due.is_some_and(|due| now >= due) {
                p.push(
                    i,
                    act(
                        Kind::Remove,
                        Reason::RetryRemoval,
                        format!(
                            "removal failed {} time(s); retry {} due",
                            r.termination_attempts,
                            r.termination_attempts + 1
                        ),
                    ),
                );
            }
            return;
        }
        _ => {}
    }
    if ir.is_some() && egg.is_none() && !r.ephemeral && r.self_job.is_none() {
        let why = format!("its egg `{}` is no longer deployed", r.egg_name);
        p.end(i, act(Kind::End, Reason::EggNotDeployed, why));
        return;
    }
    if let Some(uf) = uf {
        let threshold = uf.pruning.failed_threshold.max(1);
        if r.failure_count >= threshold {
            let why = format!(
                "failure_count {} >= failed_threshold {threshold}",
                r.failure_count
            );
            p.end(i, act(Kind::End, Reason::FailedThreshold, why));
            return;
        }
        let age = secs(now - r.created_at);
        if age > s64(uf.pruning.max_age_s) {
            let why = format!("age {age} s > max_age {} s", uf.pruning.max_age_s);
            p.end(i, act(Kind::End, Reason::MaxAge, why));
            return;
        }
    }
    // Health.
    let heard = r.last_heartbeat.unwrap_or(since);
    let silent = secs(now - heard);
    let health = match st {
        RunnerState::Active | RunnerState::Idle | RunnerState::Busy if silent > limit_s => Some((
            Reason::Heartbeat,
            format!("no heartbeat for {silent} s (limit {limit_s} s)"),
        )),
        RunnerState::Provisioning => {
            let waited = secs(now - r.created_at);
            (waited > s64(cfg.provisioning_timeout.as_secs())).then(|| {
                (
                    Reason::ProvisioningTimeout,
                    format!(
                        "not ready {waited} s after creation (limit {} s)",
                        cfg.provisioning_timeout.as_secs()
                    ),
                )
            })
        }
        RunnerState::Failed if silent > limit_s => {
            let last = failed_check_at(r).unwrap_or(since).max(since);
            (secs(now - last) >= s64((check_interval_s / 2).max(1))).then(|| {
                (
                    Reason::Heartbeat,
                    format!("failed and still no heartbeat for {silent} s"),
                )
            })
        }
        _ => None,
    };
    if let Some((reason, why)) = health {
        p.leave_pool(i);
        p.push(i, act(Kind::MarkFailed, reason, why));
        return;
    }
    if rules.is_empty() {
        return;
    }
    let metrics = RunnerMetrics::of(r, now, p.snap.samples.get(&r.id));
    for (rule, reads) in rules {
        let missing: Vec<&'static str> = reads
            .iter()
            .filter(|m| **m != Metric::State && metrics.number(**m).is_none())
            .map(|m| m.name())
            .collect();
        if !missing.is_empty() {
            let s = p.skipped.entry(rule.name.clone()).or_default();
            s.runners += 1;
            for m in missing {
                if !s.missing.contains(&m) {
                    s.missing.push(m);
                }
            }
            if s.examples.len() < 5 {
                s.examples.push(r.id.clone());
            }
            continue;
        }
        if !rule.condition.evaluate(&metrics) {
            continue;
        }
        apply_rule(p, i, rule, egg, uf);
        return;
    }
}

fn apply_rule(
    p: &mut Planner<'_>,
    i: usize,
    rule: &fly_ir::Rule,
    egg: Option<&Egg>,
    uf: Option<&fly_ir::UglyFox>,
) {
    let r = p.runner(i);
    let st = state_of(r);
    let why = format!("rule `{}`: {}", rule.name, rule.condition_source);
    let act = |kind, why: String, pool| Act {
        kind,
        reason: Reason::Rule,
        rule: Some(rule.name.as_str()),
        why,
        pool,
    };
    let up = matches!(
        st,
        RunnerState::Active | RunnerState::Idle | RunnerState::Busy
    );
    let pool = p.member[i];
    let pending = p.snap.pending.get(&r.egg_name).copied().unwrap_or(0);
    let (min_a, max_a, min_n, max_n) = match uf {
        Some(uf) => (
            policy::min_count_at(&uf.apex, p.now),
            uf.apex.max_count,
            uf.nadir.min_count,
            uf.nadir.max_count,
        ),
        None => (0, 0, 0, 0),
    };
    let counts = p.counts.get(r.egg_name.as_str()).map(|c| (c.apex, c.nadir));
    match rule.action {
        Action::Terminate => {
            if let (Some(m), Some((apex, nadir))) = (pool, counts) {
                let (left, min) = match m {
                    Member::Apex => (apex - 1, min_a),
                    Member::Nadir => (nadir - 1, min_n),
                };
                if left < min {
                    let w = format!("{why}; its pool would fall below min_count {min}");
                    p.hold(i, Kind::End, Guard::PoolMinimum, act(Kind::End, w, true));
                    return;
                }
                if m == Member::Apex && left == 0 && pending > 0 {
                    let w = format!("{why}; the egg has {pending} pending job(s)");
                    p.hold(i, Kind::End, Guard::PendingJobs, act(Kind::End, w, true));
                    return;
                }
            }
            p.end(i, act(Kind::End, why, pool.is_some()));
        }
        Action::DemoteToNadir => {
            let (Some(Member::Apex), Some((apex, nadir))) = (pool, counts) else {
                return;
            };
            if apex - 1 < min_a {
                let w = format!("{why}; Apex would fall below min_count {min_a}");
                p.hold(
                    i,
                    Kind::Demote,
                    Guard::PoolMinimum,
                    act(Kind::Demote, w, true),
                );
            } else if apex == 1 && pending > 0 {
                let w = format!("{why}; the egg has {pending} pending job(s)");
                p.hold(
                    i,
                    Kind::Demote,
                    Guard::PendingJobs,
                    act(Kind::Demote, w, true),
                );
            } else if nadir >= max_n {
                let w = format!("{why}; Nadir is full ({nadir}/{max_n})");
                p.hold(
                    i,
                    Kind::Demote,
                    Guard::NadirFull,
                    act(Kind::Demote, w, true),
                );
            } else {
                p.move_pool(i, Member::Nadir);
                p.push(i, act(Kind::Demote, why, true));
            }
        }
        Action::PromoteToApex => {
            let (Some(Member::Nadir), Some((apex, _))) = (pool, counts) else {
                return;
            };
            if apex >= max_a {
                let w = format!("{why}; Apex is full ({apex}/{max_a})");
                p.hold(
                    i,
                    Kind::Promote,
                    Guard::ApexFull,
                    act(Kind::Promote, w, true),
                );
            } else {
                p.move_pool(i, Member::Apex);
                p.push(i, act(Kind::Promote, why, true));
            }
        }
        Action::Restart => {
            if up && r.instruction.is_none() {
                p.push(i, act(Kind::Restart, why, false));
            }
        }
        Action::Notify => {
            let _ = egg;
            p.push(i, act(Kind::Notify, why, false));
        }
    }
}

fn by_idle(p: &Planner<'_>, i: usize) -> (bool, i64) {
    let r = p.runner(i);
    let st = state_of(r);
    match idle_since(r, st) {
        Some(t) => (false, t.timestamp()),
        None => (true, i64::MAX),
    }
}

fn balance(
    p: &mut Planner<'_>,
    egg: &Egg,
    uf: &fly_ir::UglyFox,
    before: (u32, u32),
) -> (EggPools, Vec<Request>) {
    let now = p.now;
    let name = egg.name.as_str();
    let min_a = policy::min_count_at(&uf.apex, now);
    let max_a = uf.apex.max_count;
    let min_n = uf.nadir.min_count.min(uf.nadir.max_count);
    let max_n = uf.nadir.max_count;
    let pending = p.snap.pending.get(name).copied().unwrap_or(0);
    let conc = egg.runner.concurrent.max(1);
    let runners = p
        .counts
        .get(name)
        .map(|c| c.runners.clone())
        .unwrap_or_default();
    // Requests still on their way: not timed out, not yet a runner (MotherGoose names the
    // runner of a request `runner_id_for(key, 1)`; a runner listing the key counts too).
    let timeout = delta(p.cfg.request_timeout);
    let mut requests: Vec<Request> = p
        .snap
        .ledgers
        .get(name)
        .map(|l| l.item.requests.clone())
        .unwrap_or_default();
    if !requests.is_empty() {
        let mut known: HashSet<&str> = HashSet::new();
        for &i in &runners {
            let r = p.runner(i);
            known.insert(r.id.as_str());
            known.extend(r.jobs.iter().map(String::as_str));
            known.extend(r.metadata.get("request").and_then(|v| v.as_str()));
        }
        requests.retain(|q| {
            q.at.checked_add_signed(timeout).is_none_or(|end| end > now)
                && q.at <= now
                && !known.contains(q.key.as_str())
                && !known.contains(runner_id_for(&q.key, 1).as_str())
        });
    }
    let c = &p.counts[name];
    let coming = c.provisioning + requests.len() as u32;
    let busy = c.busy_apex;
    let hold_egg = |p: &mut Planner<'_>, guard: Guard, why: String| {
        p.decisions.push(Decision {
            kind: Kind::Hold,
            egg: name.to_string(),
            runner: None,
            reason: Reason::Demand,
            rule: None,
            wanted: Some(Kind::Request),
            guard: Some(guard),
            key: None,
            why,
            pool: true,
            seen: None,
        });
    };
    let pool_act = |kind, reason, why: String| Act {
        kind,
        reason,
        rule: None,
        why,
        pool: true,
    };

    // Property 14: Apex above max_count → demote (idle first; pausing a busy runner lets it
    // finish its job). Nadir may overflow here; its surplus is ended below.
    let apex_now = p.counts[name].apex;
    if apex_now > max_a {
        // A runner only held by a guard so far (e.g. the termination throttle) is still
        // in Apex and may be demoted.
        let mut cands: Vec<usize> = runners
            .iter()
            .copied()
            .filter(|&i| !p.acted[i] && p.member[i] == Some(Member::Apex))
            .collect();
        cands.sort_by_key(|&i| by_idle(p, i));
        for i in cands {
            if p.counts[name].apex <= max_a {
                break;
            }
            let why = format!(
                "Apex holds {} runners, max_count is {max_a}",
                p.counts[name].apex
            );
            p.move_pool(i, Member::Nadir);
            p.push(i, pool_act(Kind::Demote, Reason::OverMaxApex, why));
        }
    }

    // Property 16: idle Apex runners past the idle timeout → Nadir (or ended, Nadir full).
    let want = busy.saturating_add(pending.div_ceil(conc));
    if let Some(limit) = policy::apex_idle_limit(uf) {
        let mut cands: Vec<(usize, i64)> = runners
            .iter()
            .copied()
            .filter(|&i| !p.taken[i] && p.member[i] == Some(Member::Apex))
            .filter_map(|i| {
                let r = p.runner(i);
                let idle = secs(now - idle_since(r, state_of(r))?);
                (idle > s64(limit)).then_some((i, idle))
            })
            .collect();
        cands.sort_by_key(|&(i, idle)| (std::cmp::Reverse(idle), i));
        for (i, idle) in cands {
            let c = &p.counts[name];
            let (apex, nadir) = (c.apex, c.nadir);
            let why = format!("idle in Apex for {idle} s (idle timeout {limit} s)");
            let floor_demand = want.max(u32::from(pending > 0)).min(max_a);
            if apex - 1 < min_a {
                let w = format!("{why}; Apex would fall below min_count {min_a}");
                p.hold(
                    i,
                    Kind::Demote,
                    Guard::PoolMinimum,
                    pool_act(Kind::Demote, Reason::IdleApex, w),
                );
            } else if pending > 0 && apex - 1 < floor_demand {
                let w = format!("{why}; the egg has {pending} pending job(s)");
                p.hold(
                    i,
                    Kind::Demote,
                    Guard::PendingJobs,
                    pool_act(Kind::Demote, Reason::IdleApex, w),
                );
            } else if nadir >= max_n {
                let w = format!("{why}; Nadir is full ({nadir}/{max_n}): ended instead");
                p.end(i, pool_act(Kind::End, Reason::IdleApex, w));
            } else {
                p.move_pool(i, Member::Nadir);
                p.push(i, pool_act(Kind::Demote, Reason::IdleApex, why));
            }
        }
    }

    // Property 15: demand → promote Nadir first, then request new runners.
    let target = min_a.max(want).min(max_a);
    let supply = p.counts[name].apex + coming;
    let mut new_requests = Vec::new();
    if target > supply {
        let mut deficit = target - supply;
        let reason = if want > min_a {
            Reason::Demand
        } else {
            Reason::MinCount
        };
        let mut cands: Vec<usize> = runners
            .iter()
            .copied()
            .filter(|&i| !p.taken[i] && p.member[i] == Some(Member::Nadir))
            .collect();
        // Warmest first: the most recently busy.
        cands.sort_by_key(|&i| {
            let (busy, t) = by_idle(p, i);
            (!busy, std::cmp::Reverse(t), i)
        });
        for i in cands {
            if deficit == 0 {
                break;
            }
            let why = format!(
                "Apex {} + {coming} on the way < target {target} ({pending} pending job(s), {busy} busy, min_count {min_a})",
                p.counts[name].apex
            );
            p.move_pool(i, Member::Apex);
            p.push(i, pool_act(Kind::Promote, reason, why));
            deficit -= 1;
        }
        if deficit > 0 {
            let live = p.counts[name].live + requests.len() as u32;
            let room = policy::max_runners(egg).map(|m| m.saturating_sub(live));
            let mut n = deficit;
            let mut guard = None;
            if let Some(room) = room.filter(|r| *r < n) {
                n = room;
                guard = Some(Guard::MaxRunners);
            }
            if let Some(left) = p.creates_left.filter(|l| *l < n) {
                n = left;
                guard = Some(Guard::Throttle);
            }
            for k in 0..n as usize {
                let key = request_key(name, now, k);
                new_requests.push(Request {
                    key: key.clone(),
                    at: now,
                });
                p.decisions.push(Decision {
                    kind: Kind::Request,
                    egg: name.to_string(),
                    runner: None,
                    reason,
                    rule: None,
                    wanted: None,
                    guard: None,
                    key: Some(key),
                    why: format!(
                        "Apex {} + {coming} on the way < target {target} and no Nadir runner left to promote",
                        p.counts[name].apex
                    ),
                    pool: true,
                    seen: None,
                });
            }
            if let Some(l) = p.creates_left.as_mut() {
                *l -= n;
            }
            if let Some(g) = guard {
                let what = match g {
                    Guard::MaxRunners => "the egg is at max_runners",
                    _ => "the creation throttle of this pass is spent",
                };
                hold_egg(
                    p,
                    g,
                    format!("{} more runner(s) wanted, {what}", deficit - n),
                );
            }
        }
    }

    // Nadir above max_count → end the surplus (idle first).
    if p.counts[name].nadir > max_n {
        let mut cands: Vec<usize> = runners
            .iter()
            .copied()
            .filter(|&i| !p.taken[i] && p.member[i] == Some(Member::Nadir))
            .collect();
        cands.sort_by_key(|&i| by_idle(p, i));
        for i in cands {
            let nadir = p.counts[name].nadir;
            if nadir <= max_n {
                break;
            }
            let why = format!("Nadir holds {nadir} runners, max_count is {max_n}");
            p.end(i, pool_act(Kind::End, Reason::OverMaxNadir, why));
        }
    }

    // Nadir runners idle past Nadir's idle timeout → ended, down to min_count.
    if let Some(limit) = uf.nadir.idle_timeout_s {
        let mut cands: Vec<(usize, i64)> = runners
            .iter()
            .copied()
            .filter(|&i| !p.taken[i] && p.member[i] == Some(Member::Nadir))
            .filter_map(|i| {
                let r = p.runner(i);
                let mut since = idle_since(r, state_of(r))?;
                if let Some(n) = nadir_since(r) {
                    since = since.max(n);
                }
                let idle = secs(now - since);
                (idle > s64(limit)).then_some((i, idle))
            })
            .collect();
        cands.sort_by_key(|&(i, idle)| (std::cmp::Reverse(idle), i));
        for (i, idle) in cands {
            let nadir = p.counts[name].nadir;
            let why = format!("idle in Nadir for {idle} s (idle timeout {limit} s)");
            if nadir - 1 < min_n {
                let w = format!("{why}; Nadir would fall below min_count {min_n}");
                p.hold(
                    i,
                    Kind::End,
                    Guard::PoolMinimum,
                    pool_act(Kind::End, Reason::IdleNadir, w),
                );
            } else {
                p.end(i, pool_act(Kind::End, Reason::IdleNadir, why));
            }
        }
    }

    let c = &p.counts[name];
    requests.extend(new_requests);
    (
        EggPools {
            egg: name.to_string(),
            apex: (before.0, c.apex),
            nadir: (before.1, c.nadir),
            busy,
            coming,
            pending,
            min_apex: min_a,
            max_apex: max_a,
            target,
        },
        requests,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn conditions_see_the_state_in_the_languages_words_and_the_pool() {
        let now = at("2026-03-02T12:00:00Z");
        let mut r = Runner::new("r", "app", "vm", "aws", "x", now - TimeDelta::hours(2));
        r.pool = Some("apex".into());
        let words = |r: &Runner| RunnerMetrics::of(r, now, None).states().to_vec();
        r.state = "busy".into();
        assert_eq!(
            words(&r),
            [RunnerStateOrPool::Active, RunnerStateOrPool::Apex]
        );
        r.state = "active".into();
        assert_eq!(
            words(&r),
            [RunnerStateOrPool::Idle, RunnerStateOrPool::Apex]
        );
        r.pool = Some("nadir".into());
        r.state = "idle".into();
        assert_eq!(
            words(&r),
            [RunnerStateOrPool::Idle, RunnerStateOrPool::Nadir]
        );
        r.state = "failed".into();
        assert_eq!(words(&r), [RunnerStateOrPool::Failed]);
        r.ephemeral = true;
        r.state = "busy".into();
        assert_eq!(words(&r), [RunnerStateOrPool::Active], "not a pool runner");
    }

    #[test]
    fn missing_metrics_are_missing_not_zero() {
        let now = at("2026-03-02T12:00:00Z");
        let mut r = Runner::new("r", "app", "vm", "aws", "x", now - TimeDelta::hours(2));
        let m = RunnerMetrics::of(&r, now, None);
        assert_eq!(m.number(Metric::Age), Some(7200.0));
        assert_eq!(m.number(Metric::CpuUsage), None);
        assert_eq!(m.number(Metric::LastHeartbeatAge), None);
        assert_eq!(m.number(Metric::IdleTime), None, "provisioning: not up");
        r.state = "idle".into();
        r.state_since = Some(now - TimeDelta::minutes(10));
        r.last_job_at = Some(now - TimeDelta::minutes(4));
        r.last_heartbeat = Some(now - TimeDelta::seconds(5));
        let s = crate::Sample {
            cpu: 50.0,
            memory: 1.0,
            disk: 2.0,
        };
        let m = RunnerMetrics::of(&r, now, Some(&s));
        assert_eq!(m.number(Metric::IdleTime), Some(240.0));
        assert_eq!(m.number(Metric::CpuUsage), Some(50.0));
        assert_eq!(m.number(Metric::LastHeartbeatAge), Some(5.0));
    }

    #[test]
    fn request_keys_follow_from_the_pass_time() {
        let now = at("2026-03-02T12:00:00Z");
        assert_eq!(request_key("app", now, 0), request_key("app", now, 0));
        assert_ne!(request_key("app", now, 0), request_key("app", now, 1));
        assert!(request_key("app", now, 3).starts_with("pool:app:"));
    }

    #[test]
    fn without_a_deployment_only_removals_under_way_continue() {
        let now = at("2026-03-02T12:00:00Z");
        let mut s = Snapshot::empty(now);
        let mut stuck = Runner::new("t", "app", "vm", "aws", "x", now - TimeDelta::hours(1));
        stuck.state = "terminating".into();
        stuck.state_since = Some(now - TimeDelta::hours(1));
        let mut silent = Runner::new("s", "app", "vm", "aws", "x", now - TimeDelta::days(9));
        silent.state = "idle".into();
        for r in [stuck, silent] {
            s.runners.push(gosling_state::Versioned {
                item: r,
                version: 1,
            });
        }
        let p = plan(&s, None, &Config::default());
        let kinds: Vec<_> = p
            .decisions
            .iter()
            .map(|d| (d.kind, d.runner.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Remove, Some("t".into())),
                (Kind::MarkFailed, Some("s".into()))
            ]
        );
        assert!(!p.policy);
    }
}
