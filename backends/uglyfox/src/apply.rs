//! Carrying out a [`Plan`] through the shared machinery: runner changes through
//! [`Fleet::edit`] (versioned, with their audit entry in the same transaction), endings
//! through [`Lifecycle`], new pool runners as `DeployRunner` tasks, holds and notifications
//! as audit entries. Each decision is re-checked on fresh data, so a second UglyFox instance
//! acting on the same snapshot changes nothing twice; pool decisions are applied only after
//! the egg's ledger write (the claim) succeeded.

use crate::metrics::Metrics;
use crate::notify::{Notification, Notifier};
use crate::planner::{failed_check_at, is_pool_runner, Decision, Kind, Plan};
use crate::snapshot::ledger_name;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use gosling_api::Instruction;
use gosling_fleet::lifecycle::parse_instruction;
use gosling_fleet::{set_state, state_of, Edit, Fleet, Lifecycle, RunnerState, Step, Task};
use gosling_queue::Queue;
use gosling_state::{Expect, Runner, StateError};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What became of a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    /// Done.
    Done,
    /// Not done: the runner changed since the snapshot, another instance claimed the egg,
    /// or an unchanged hold was recorded recently.
    Skipped(String),
    /// Failed (logged; the next pass decides again).
    Failed(String),
}

/// What a pass did: one outcome per decision, in plan order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Outcomes.
    pub outcomes: Vec<Outcome>,
    /// Eggs whose pool decisions were left to another instance.
    pub lost_claims: Vec<String>,
}

impl Report {
    /// How many decisions were done.
    pub fn done(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| **o == Outcome::Done)
            .count()
    }
}

/// Everything the applier acts through.
pub struct Applier {
    /// Runner records, as actor `uglyfox`.
    pub fleet: Fleet,
    /// Ending runners.
    pub lifecycle: Lifecycle,
    /// Where `DeployRunner` and cron tasks go.
    pub queue: Arc<dyn Queue>,
    /// How operators are told.
    pub notifier: Arc<dyn Notifier>,
    /// Operators' addresses for rule notifications.
    pub alert_to: Vec<String>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Decisions applied at once.
    pub concurrency: usize,
    /// An unchanged hold or notification of a runner is recorded again after this long.
    pub repeat_every: Duration,
    recent: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Applier({:?})", self.fleet)
    }
}

fn up(s: RunnerState) -> bool {
    matches!(
        s,
        RunnerState::Active | RunnerState::Idle | RunnerState::Busy
    )
}

fn set_meta(r: &mut Runner, key: &str, value: Option<DateTime<Utc>>) {
    if !r.metadata.is_object() {
        if !r.metadata.is_null() {
            return;
        }
        r.metadata = json!({});
    }
    let Some(m) = r.metadata.as_object_mut() else {
        return;
    };
    let fox = m.entry("uglyfox").or_insert_with(|| json!({}));
    if let Some(f) = fox.as_object_mut() {
        match value {
            Some(t) => {
                f.insert(key.into(), Value::String(gosling_state::ts::format(&t)));
            }
            None => {
                f.remove(key);
            }
        }
    }
}

fn details(d: &Decision, plan: &Plan) -> Value {
    json!({
        "reason": d.reason.as_str(),
        "rule": d.rule,
        "why": d.why,
        "wanted": d.wanted.map(|k| k.as_str()),
        "guard": d.guard.map(|g| g.as_str()),
        "key": d.key,
        "pass": gosling_state::ts::format(&plan.now),
    })
}

/// The words passed to `Lifecycle::request` (stored as the audit entry's `reason`).
pub fn reason_text(d: &Decision) -> String {
    match &d.rule {
        Some(rule) => format!("rule {rule}: {}", d.why),
        None => format!("{}: {}", d.reason.as_str(), d.why),
    }
}

impl Applier {
    /// An applier; `fleet` should act as `uglyfox`.
    pub fn new(
        fleet: Fleet,
        lifecycle: Lifecycle,
        queue: Arc<dyn Queue>,
        notifier: Arc<dyn Notifier>,
        metrics: Arc<Metrics>,
    ) -> Applier {
        Applier {
            fleet,
            lifecycle,
            queue,
            notifier,
            alert_to: Vec::new(),
            metrics,
            concurrency: 8,
            repeat_every: Duration::from_secs(3600),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Applies `plan`; `ir` gives the eggs' token references for GitLab unregistration.
    pub async fn apply(&self, plan: &Plan, ir: Option<&fly_ir::Deployment>) -> Report {
        let mut claimed = HashSet::new();
        let mut lost = Vec::new();
        for (egg, w) in &plan.ledgers {
            let value = serde_json::to_value(&w.ledger).unwrap_or(Value::Null);
            let expect = w.seen.map_or(Expect::Absent, Expect::Version);
            match self
                .fleet
                .store
                .put_meta_value(&ledger_name(egg), value, expect)
                .await
            {
                Ok(_) => {
                    claimed.insert(egg.as_str());
                }
                Err(e) => {
                    if !matches!(e, StateError::Conflict { .. }) {
                        tracing::warn!("claiming the pools of egg {egg}: {e}");
                    }
                    self.metrics.claims_lost.fetch_add(1, Ordering::Relaxed);
                    lost.push(egg.clone());
                }
            }
        }
        let skipped: u64 = plan.skipped_rules.values().map(|s| s.runners).sum();
        self.metrics
            .rules_skipped
            .fetch_add(skipped, Ordering::Relaxed);
        for (rule, s) in &plan.skipped_rules {
            tracing::warn!(
                rule = rule.as_str(),
                runners = s.runners,
                missing = ?s.missing,
                "rule skipped: a metric it reads is missing (e.g. {})",
                s.examples.join(", ")
            );
        }
        let claimed = &claimed;
        let outcomes: Vec<(usize, Outcome)> = stream::iter(plan.decisions.iter().enumerate())
            .map(|(n, d)| self.apply_one(n, d, plan, ir, claimed))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut ordered = vec![Outcome::Skipped(String::new()); plan.decisions.len()];
        for (n, o) in outcomes {
            ordered[n] = o;
        }
        Report {
            outcomes: ordered,
            lost_claims: lost,
        }
    }

    async fn apply_one(
        &self,
        n: usize,
        d: &Decision,
        plan: &Plan,
        ir: Option<&fly_ir::Deployment>,
        claimed: &HashSet<&str>,
    ) -> (usize, Outcome) {
        let o = if d.pool && !claimed.contains(d.egg.as_str()) {
            Outcome::Skipped("another UglyFox instance claimed the egg's pools".into())
        } else {
            match self.one(d, plan, ir).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(
                        "{} {}: {e}",
                        d.kind.as_str(),
                        d.runner.as_deref().unwrap_or(&d.egg)
                    );
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    Outcome::Failed(e.to_string())
                }
            }
        };
        if o == Outcome::Done {
            self.metrics.decided(d.kind);
        }
        (n, o)
    }

    /// Whether `key` was recorded less than `repeat_every` ago (and remembers it now).
    fn recently(&self, key: String, now: DateTime<Utc>) -> bool {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let every = chrono::Duration::from_std(self.repeat_every).unwrap_or(chrono::Duration::MAX);
        if m.len() > 100_000 {
            m.retain(|_, t| now - *t < every);
        }
        match m.get(&key) {
            Some(t) if now - *t < every && *t <= now => true,
            _ => {
                m.insert(key, now);
                false
            }
        }
    }

    async fn one(
        &self,
        d: &Decision,
        plan: &Plan,
        ir: Option<&fly_ir::Deployment>,
    ) -> Result<Outcome, crate::Error> {
        let id = d.runner.as_deref().unwrap_or("");
        let token = ir
            .and_then(|i| i.egg(&d.egg))
            .map(|e| e.gitlab.token_secret.clone());
        match d.kind {
            Kind::MarkFailed => self.mark_failed(d, plan).await,
            Kind::End | Kind::ForceEnd => {
                if let Some(seen) = &d.seen {
                    let fresh = self.fleet.store.runner(id).await?;
                    if fresh.as_ref().map(|r| state_of(&r.item)) != Some(seen.state) {
                        return Ok(Outcome::Skipped("changed since the snapshot".into()));
                    }
                }
                let step = self
                    .lifecycle
                    .request(id, &reason_text(d), d.kind == Kind::ForceEnd)
                    .await?;
                self.metrics.terminations.fetch_add(1, Ordering::Relaxed);
                if step == Step::Remove {
                    self.remove(id, token.as_deref()).await?;
                }
                Ok(Outcome::Done)
            }
            Kind::Remove => {
                self.remove(id, token.as_deref()).await?;
                Ok(Outcome::Done)
            }
            Kind::Demote | Kind::Promote | Kind::Restart => self.pool_edit(d, plan).await,
            Kind::Notify => {
                if self.recently(format!("notify\0{id}\0{:?}", d.rule), plan.now) {
                    return Ok(Outcome::Skipped("notified recently".into()));
                }
                let n = Notification {
                    subject: format!("UglyFox: runner {id} ({})", d.why),
                    body: format!(
                        "UglyFox rule {} holds for runner {id} of egg {}:\n{}\n",
                        d.rule.as_deref().unwrap_or("?"),
                        d.egg,
                        d.why
                    ),
                    recipients: self.alert_to.clone(),
                    details: details(d, plan),
                };
                let delivered = match self.notifier.notify(&n).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!("notifying about runner {id}: {e}");
                        self.metrics.notify_failures.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                };
                let mut det = details(d, plan);
                det["delivered"] = delivered.into();
                self.fleet.record("notify", "runner", id, det).await?;
                Ok(Outcome::Done)
            }
            Kind::Request => {
                let key = d.key.clone().unwrap_or_default();
                let task = Task::DeployRunner { job: key };
                self.queue
                    .enqueue(&task.to_message(), task.options(Duration::ZERO, false))
                    .await?;
                self.fleet
                    .record("request_runner", "egg", &d.egg, details(d, plan))
                    .await?;
                Ok(Outcome::Done)
            }
            Kind::Hold => {
                let (kind, target) = match &d.runner {
                    Some(r) => ("runner", r.as_str()),
                    None => ("egg", d.egg.as_str()),
                };
                let key = format!(
                    "hold\0{target}\0{:?}\0{:?}\0{:?}\0{:?}",
                    d.wanted, d.guard, d.reason, d.rule
                );
                if self.recently(key, plan.now) {
                    return Ok(Outcome::Skipped(
                        "the same hold was recorded recently".into(),
                    ));
                }
                self.fleet
                    .record("hold", kind, target, details(d, plan))
                    .await?;
                Ok(Outcome::Done)
            }
        }
    }

    async fn remove(&self, id: &str, token: Option<&str>) -> Result<Step, crate::Error> {
        let step = self.lifecycle.remove(id, token).await?;
        match step {
            Step::RetryAfter(_) => {
                self.metrics
                    .termination_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            Step::Forced => {
                self.metrics
                    .terminations_forced
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!("runner {id}: removal forced after the last attempt; its machine may still exist");
                let n = Notification {
                    subject: format!("UglyFox: removing runner {id} failed, record closed"),
                    body: format!(
                        "Removing the machine of runner {id} failed {} times; its record was \
                         closed anyway. The machine may still exist: check the cloud console.\n",
                        self.lifecycle.policy.max_attempts
                    ),
                    recipients: self.alert_to.clone(),
                    details: json!({ "runner": id, "alert": "terminate_forced" }),
                };
                if let Err(e) = self.notifier.notify(&n).await {
                    tracing::warn!("alerting about runner {id}: {e}");
                    self.metrics.notify_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        Ok(step)
    }

    async fn mark_failed(&self, d: &Decision, plan: &Plan) -> Result<Outcome, crate::Error> {
        let Some(seen) = d.seen.clone() else {
            return Ok(Outcome::Skipped("no runner".into()));
        };
        let id = d.runner.as_deref().unwrap_or("");
        let half = chrono::Duration::try_seconds((plan.check_interval_s / 2).max(1) as i64)
            .unwrap_or(chrono::Duration::MAX);
        let mut wrote = false;
        self.fleet
            .edit(id, |r, now| {
                wrote = false;
                let st = state_of(r);
                if st != seen.state || r.last_heartbeat != seen.last_heartbeat {
                    return Ok(Edit::Keep);
                }
                if st == RunnerState::Failed {
                    let since = r.state_since.unwrap_or(r.updated_at);
                    let last = failed_check_at(r).unwrap_or(since).max(since);
                    if now - last < half {
                        return Ok(Edit::Keep);
                    }
                } else {
                    set_state(r, RunnerState::Failed, now)?;
                }
                r.failure_count = r.failure_count.saturating_add(1);
                set_meta(r, "failed_check_at", Some(now));
                wrote = true;
                let mut det = details(d, plan);
                det["from"] = st.as_str().into();
                det["failure_count"] = r.failure_count.into();
                Ok(Edit::Write(Some(("mark_failed".into(), det))))
            })
            .await?;
        Ok(if wrote {
            Outcome::Done
        } else {
            Outcome::Skipped("changed since the snapshot".into())
        })
    }

    async fn pool_edit(&self, d: &Decision, plan: &Plan) -> Result<Outcome, crate::Error> {
        let id = d.runner.as_deref().unwrap_or("");
        let kind = d.kind;
        let mut wrote = false;
        self.fleet
            .edit(id, |r, now| {
                wrote = false;
                let st = state_of(r);
                if !up(st) {
                    return Ok(Edit::Keep);
                }
                let held = r.instruction.as_deref().and_then(parse_instruction);
                let final_instr = matches!(held, Some(Instruction::Drain | Instruction::Stop));
                let nadir = r.pool.as_deref() == Some("nadir");
                let (action, instruction) = match kind {
                    Kind::Demote if is_pool_runner(r) && !nadir && !final_instr => {
                        r.pool = Some("nadir".into());
                        set_meta(r, "nadir_since", Some(now));
                        ("demote", "pause")
                    }
                    Kind::Promote if is_pool_runner(r) && nadir && !final_instr => {
                        r.pool = Some("apex".into());
                        set_meta(r, "nadir_since", None);
                        ("promote", "resume")
                    }
                    Kind::Restart if r.instruction.is_none() => ("restart", "reload"),
                    _ => return Ok(Edit::Keep),
                };
                r.instruction = Some(instruction.into());
                wrote = true;
                let mut det = details(d, plan);
                det["instruction"] = instruction.into();
                det["state"] = st.as_str().into();
                Ok(Edit::Write(Some((action.into(), det))))
            })
            .await?;
        Ok(if wrote {
            Outcome::Done
        } else {
            Outcome::Skipped("changed since the snapshot".into())
        })
    }
}
