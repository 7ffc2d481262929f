//! Ending runners, the one way MotherGoose and UglyFox both do it.
//!
//! A runner that may be running a job is never killed: it is told to drain (finish its
//! jobs, stop its agent, report `stopped`), and only then is its machine removed. A
//! runner that runs nothing (still provisioning, failed, stopped) has its machine removed
//! at once. Removal failures are retried with exponential backoff (the runner is
//! `pending_termination` meanwhile) and forced after the last attempt — the record is
//! closed and operators are alerted through the audit log and a metric.

use crate::provider::{Handle, Providers};
use crate::registry::Registry;
use crate::runners::{set_state, state_of, Edit, Fleet, FleetError};
use crate::state::RunnerState;
use gosling_api::Instruction;
use gosling_state::Runner;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How patiently runners are ended.
#[derive(Clone, Copy, Debug)]
pub struct TerminationPolicy {
    /// Removal attempts before the runner is forced to `terminated`.
    pub max_attempts: u32,
    /// The delay after the first failed attempt; it doubles each time.
    pub base_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Added to the egg's job timeout: how long a draining runner may take before it is
    /// stopped anyway (its job would have hit its own timeout by then).
    pub drain_grace: Duration,
}

impl Default for TerminationPolicy {
    fn default() -> Self {
        TerminationPolicy {
            max_attempts: 6,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            drain_grace: Duration::from_secs(300),
        }
    }
}

impl TerminationPolicy {
    /// The wait before the removal attempt that follows failed attempt number `attempts`
    /// (1-based): `base_delay` doubled per attempt, at most `max_delay`.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        self.base_delay
            .saturating_mul(1 << attempts.saturating_sub(1).min(16))
            .min(self.max_delay)
    }

    /// How long a draining runner of `egg` may take before it is stopped anyway: the
    /// egg's job timeout (an hour when unknown, at least a minute) plus `drain_grace`.
    pub fn drain_deadline(&self, egg: Option<&fly_ir::Egg>) -> Duration {
        let job = egg.map_or(3600, |e| e.runner.timeout_s.max(60));
        Duration::from_secs(job).saturating_add(self.drain_grace)
    }
}

/// Where a termination stands after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The runner was told to drain; it is removed once it reports it stopped.
    Draining,
    /// Its machine is being removed: call [`Lifecycle::remove`].
    Remove,
    /// The runner is gone.
    Terminated,
    /// Removal failed; try again after this long.
    RetryAfter(Duration),
    /// Removal kept failing; the record was closed anyway (operators alerted).
    Forced,
}

/// Ends runners through the provider interface and the state machine.
#[derive(Clone)]
pub struct Lifecycle {
    /// Runner records.
    pub fleet: Fleet,
    /// The providers.
    pub providers: Providers,
    /// GitLab registrations.
    pub registry: Arc<Registry>,
    /// Retry policy.
    pub policy: TerminationPolicy,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lifecycle({:?})", self.fleet)
    }
}

/// The provider handle stored with a runner.
pub fn handle_of(r: &Runner) -> Option<Handle> {
    r.machine
        .as_ref()
        .and_then(|m| serde_json::from_value(m.clone()).ok())
}

/// The egg token reference stored with a runner (to delete its GitLab registration even
/// after its egg left the deployment).
pub fn token_secret_of(r: &Runner) -> Option<String> {
    r.metadata
        .get("token_secret")
        .and_then(|v| v.as_str())
        .map(String::from)
}

impl Lifecycle {
    /// Asks runner `id` to end. A runner whose agent may run a job drains first (unless
    /// `force`, which stops it at once and abandons its job); one that runs nothing goes
    /// straight to removal. Ending a runner that is already on its way is a no-op.
    pub async fn request(&self, id: &str, reason: &str, force: bool) -> Result<Step, FleetError> {
        Ok(self
            .request_if(id, reason, force, |_| true)
            .await?
            .unwrap_or(Step::Remove))
    }

    /// [`request`](Lifecycle::request), decided in the same conditional write as `still`
    /// holds for the runner as it is then (`None`: it no longer did, nothing changed).
    pub async fn request_if(
        &self,
        id: &str,
        reason: &str,
        force: bool,
        still: impl Fn(&Runner) -> bool,
    ) -> Result<Option<Step>, FleetError> {
        let mut step = Some(Step::Remove);
        self.fleet
            .edit(id, |r, now| {
                if !still(r) {
                    step = None;
                    return Ok(Edit::Keep);
                }
                let from = state_of(r);
                let (to, instruction) = match from {
                    RunnerState::Terminated => {
                        step = Some(Step::Terminated);
                        return Ok(Edit::Keep);
                    }
                    RunnerState::Terminating | RunnerState::PendingTermination => {
                        step = Some(Step::Remove);
                        return Ok(Edit::Keep);
                    }
                    RunnerState::Draining if !force => {
                        step = Some(Step::Draining);
                        return Ok(Edit::Keep);
                    }
                    RunnerState::Active | RunnerState::Idle | RunnerState::Busy if !force => {
                        (RunnerState::Draining, Some(Instruction::Drain))
                    }
                    _ if force && r.last_heartbeat.is_some() => {
                        (RunnerState::Terminating, Some(Instruction::Stop))
                    }
                    _ => (RunnerState::Terminating, None),
                };
                set_state(r, to, now)?;
                r.instruction = instruction.map(|i| instruction_name(i).to_string());
                step = Some(if to == RunnerState::Draining {
                    Step::Draining
                } else {
                    Step::Remove
                });
                let action = if to == RunnerState::Draining {
                    "drain"
                } else {
                    "terminate"
                };
                Ok(Edit::Write(Some((
                    action.into(),
                    json!({ "reason": reason, "force": force, "from": from.as_str(), "to": to.as_str() }),
                ))))
            })
            .await?;
        Ok(step)
    }

    /// Removes the machine of a runner that is `terminating` or `pending_termination`,
    /// deletes its GitLab registration and closes the record. On failure the runner waits
    /// in `pending_termination` for the next attempt; after the last one it is forced.
    pub async fn remove(&self, id: &str, token_secret: Option<&str>) -> Result<Step, FleetError> {
        let r = self
            .fleet
            .store
            .runner(id)
            .await?
            .ok_or_else(|| FleetError::NotFound(id.to_string()))?
            .item;
        match state_of(&r) {
            RunnerState::Terminated => return Ok(Step::Terminated),
            RunnerState::Terminating | RunnerState::PendingTermination => {}
            other => {
                return Err(FleetError::Refused {
                    runner: id.into(),
                    reason: format!("is {other}: ask it to end first"),
                })
            }
        }
        match self.teardown(&r, token_secret).await {
            Ok(()) => {
                self.close(id, "terminated", json!({})).await?;
                Ok(Step::Terminated)
            }
            Err(error) => self.failed_attempt(id, &error).await,
        }
    }

    async fn teardown(&self, r: &Runner, token_secret: Option<&str>) -> Result<(), String> {
        if let Some(handle) = handle_of(r) {
            let provider = self
                .providers
                .for_handle(&handle)
                .map_err(|e| e.to_string())?;
            provider
                .terminate(&handle)
                .await
                .map_err(|e| e.to_string())?;
        } else if let Some(provider) = &self.providers.all {
            // A create may have been cut short before its handle was stored.
            provider
                .terminate_unrecorded(&r.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        let secret = token_secret
            .map(String::from)
            .or_else(|| token_secret_of(r));
        if let Some(secret) = secret {
            self.registry
                .unregister(&*self.fleet.store, r, &secret)
                .await
                .map_err(|e| format!("deleting the GitLab runner: {e}"))?;
        }
        Ok(())
    }

    async fn close(
        &self,
        id: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), FleetError> {
        self.fleet
            .edit(id, |r, now| {
                if state_of(r) == RunnerState::Terminated {
                    return Ok(Edit::Keep);
                }
                set_state(r, RunnerState::Terminated, now)?;
                r.instruction = None;
                Ok(Edit::Write(Some((action.into(), details.clone()))))
            })
            .await?;
        Ok(())
    }

    async fn failed_attempt(&self, id: &str, error: &str) -> Result<Step, FleetError> {
        let max = self.policy.max_attempts.max(1);
        let mut attempts = 0;
        self.fleet
            .edit(id, |r, now| {
                r.termination_attempts += 1;
                attempts = r.termination_attempts;
                if state_of(r) == RunnerState::Terminating {
                    set_state(r, RunnerState::PendingTermination, now)?;
                }
                Ok(Edit::Write(Some((
                    "terminate_failed".into(),
                    json!({ "attempt": attempts, "of": max, "error": error }),
                ))))
            })
            .await?;
        if attempts < max {
            return Ok(Step::RetryAfter(self.policy.retry_delay(attempts)));
        }
        self.fleet
            .edit(id, |r, now| {
                set_state(r, RunnerState::Terminating, now).ok();
                set_state(r, RunnerState::Terminated, now)?;
                r.instruction = None;
                Ok(Edit::Write(Some((
                    "terminate_forced".into(),
                    json!({
                        "attempts": attempts,
                        "error": error,
                        "alert": "the machine may still exist: check the cloud console",
                    }),
                ))))
            })
            .await?;
        Ok(Step::Forced)
    }

    /// How long a draining runner of `egg` may take before it is stopped anyway.
    pub fn drain_deadline(&self, egg: Option<&fly_ir::Egg>) -> Duration {
        self.policy.drain_deadline(egg)
    }
}

/// The stored spelling of an instruction.
pub fn instruction_name(i: Instruction) -> &'static str {
    match i {
        Instruction::Drain => "drain",
        Instruction::Stop => "stop",
        Instruction::Reload => "reload",
        Instruction::Pause => "pause",
        Instruction::Resume => "resume",
    }
}

/// The instruction a stored spelling names.
pub fn parse_instruction(s: &str) -> Option<Instruction> {
    [
        Instruction::Drain,
        Instruction::Stop,
        Instruction::Reload,
        Instruction::Pause,
        Instruction::Resume,
    ]
    .into_iter()
    .find(|i| instruction_name(*i) == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_and_drains_get_the_job_timeout_plus_grace() {
        let p = TerminationPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|a| p.retry_delay(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.retry_delay(0), p.base_delay);
        assert_eq!(p.retry_delay(u32::MAX), p.max_delay);
        assert_eq!(p.drain_deadline(None), Duration::from_secs(3600 + 300));
    }
}
