//! The runner state machine: every state a runner can be in, and the one table of allowed
//! changes that MotherGoose, UglyFox and the heartbeat endpoint all go through.
//!
//! ```text
//!  provisioning ──▶ active ◀──▶ busy ◀──▶ idle          (heartbeats)
//!        │            │          │         │
//!        │            └──────────┴────┬────┘
//!        │                            ▼
//!        │                        draining  (told to finish its job, then stop)
//!        ▼                            │
//!     failed ───────────────────▶ terminating ◀──▶ pending_termination
//!                                     │
//!                                     ▼
//!                                 terminated
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a runner stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// Its record exists; the cloud resource and the agent are being set up.
    Provisioning,
    /// The agent is up and has not run a job yet.
    Active,
    /// Running at least one job.
    Busy,
    /// Up, ran jobs before, runs none now.
    Idle,
    /// Told to finish its jobs and stop; terminated once it reports it stopped.
    Draining,
    /// Its cloud resource is being removed.
    Terminating,
    /// Removing it failed; retried with backoff, forced after the last attempt.
    PendingTermination,
    /// Gone. Final.
    Terminated,
    /// Unhealthy: provisioning failed, heartbeats stopped, or the agent keeps crashing.
    Failed,
}

/// Every state, in the order they are listed.
pub const ALL_STATES: [RunnerState; 9] = [
    RunnerState::Provisioning,
    RunnerState::Active,
    RunnerState::Busy,
    RunnerState::Idle,
    RunnerState::Draining,
    RunnerState::Terminating,
    RunnerState::PendingTermination,
    RunnerState::Terminated,
    RunnerState::Failed,
];

impl RunnerState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Provisioning => "provisioning",
            RunnerState::Active => "active",
            RunnerState::Busy => "busy",
            RunnerState::Idle => "idle",
            RunnerState::Draining => "draining",
            RunnerState::Terminating => "terminating",
            RunnerState::PendingTermination => "pending_termination",
            RunnerState::Terminated => "terminated",
            RunnerState::Failed => "failed",
        }
    }

    /// The state spelled `s`.
    pub fn parse(s: &str) -> Option<RunnerState> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the runner's agent is up and can take jobs.
    pub fn is_ready(self) -> bool {
        matches!(self, RunnerState::Active | RunnerState::Idle)
    }

    /// Whether the runner exists (counts against its egg's limits).
    pub fn is_live(self) -> bool {
        !matches!(self, RunnerState::Terminated)
    }

    /// Whether the runner is on its way out (or gone).
    pub fn is_leaving(self) -> bool {
        matches!(
            self,
            RunnerState::Draining
                | RunnerState::Terminating
                | RunnerState::PendingTermination
                | RunnerState::Terminated
        )
    }

    /// Whether a change to `to` is allowed. Staying in the same state is always allowed
    /// (a heartbeat that changes nothing but the time).
    pub fn can_become(self, to: RunnerState) -> bool {
        use RunnerState::*;
        if self == to {
            return self != Terminated || to == Terminated;
        }
        match self {
            Provisioning => matches!(to, Active | Busy | Idle | Draining | Terminating | Failed),
            Active | Busy | Idle => {
                matches!(to, Active | Busy | Idle | Draining | Terminating | Failed)
            }
            Draining => matches!(to, Terminating | Failed),
            Failed => matches!(to, Active | Busy | Idle | Terminating),
            Terminating => matches!(to, PendingTermination | Terminated),
            PendingTermination => matches!(to, Terminating | Terminated),
            Terminated => false,
        }
    }
}

impl fmt::Display for RunnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change the state machine refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("runner {runner}: {from} cannot become {to}")]
pub struct IllegalTransition {
    /// The runner.
    pub runner: String,
    /// Its state.
    pub from: RunnerState,
    /// The state asked for.
    pub to: RunnerState,
}

/// The warm-pool a ready runner belongs to (UglyFox's Apex and Nadir).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Warm and taking jobs.
    Apex,
    /// Cold standby: kept but paused (takes no job) until promoted or retired.
    Nadir,
}

impl Pool {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Apex => "apex",
            Pool::Nadir => "nadir",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in ALL_STATES {
            assert_eq!(RunnerState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(RunnerState::parse("creating"), None);
    }

    #[test]
    fn terminated_is_final_and_a_busy_runner_is_drained_not_killed() {
        for s in ALL_STATES {
            if s != RunnerState::Terminated {
                assert!(!RunnerState::Terminated.can_become(s), "terminated → {s}");
            }
        }
        assert!(RunnerState::Busy.can_become(RunnerState::Draining));
        // Only terminating (after a drain, or forced by an operator) reaches terminated.
        for s in ALL_STATES {
            let direct = s.can_become(RunnerState::Terminated) && s != RunnerState::Terminated;
            assert_eq!(
                direct,
                matches!(
                    s,
                    RunnerState::Terminating | RunnerState::PendingTermination
                ),
                "{s}"
            );
        }
        assert!(!RunnerState::Draining.can_become(RunnerState::Busy));
    }
}
