//! What a runner's heartbeat does to its record — a pure function, so every combination of
//! recorded state and reported agent state is tested without a server.

use gosling_api::{AgentState, Heartbeat, Instruction};
use gosling_fleet::lifecycle::{instruction_name, parse_instruction};
use gosling_fleet::{set_state, state_of, IllegalTransition, RunnerState};
use gosling_state::Runner;
use serde_json::{json, Value};

/// What the caller does after writing the record.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// The instruction in the answer.
    pub instruction: Option<Instruction>,
    /// The runner stopped: remove its machine.
    pub remove: bool,
    /// The audit entry, when the state changed.
    pub audit: Option<(String, Value)>,
}

/// The state a report moves a runner to, from the state it is recorded in.
pub fn next_state(recorded: RunnerState, reported: AgentState) -> RunnerState {
    use AgentState as A;
    use RunnerState as R;
    match (recorded, reported) {
        (R::Terminating | R::PendingTermination | R::Terminated, _) => recorded,
        (_, A::Stopped) => R::Terminating,
        (R::Draining, _) => R::Draining,
        (R::Failed, A::Stopping) => R::Failed,
        (_, A::Stopping) => R::Draining,
        (_, A::Active) => R::Active,
        (_, A::Idle) => R::Idle,
        (_, A::Busy) => R::Busy,
    }
}

/// Applies heartbeat `hb` received at `now` to `r`. `egg_hash` is the egg's configuration
/// hash in the deployment in force (a runner on an older one is told to reload).
pub fn apply(
    r: &mut Runner,
    hb: &Heartbeat,
    now: chrono::DateTime<chrono::Utc>,
    egg_hash: Option<&str>,
) -> Result<Effect, IllegalTransition> {
    let from = state_of(r);
    let to = next_state(from, hb.state);
    set_state(r, to, now)?;
    r.last_heartbeat = Some(now);
    r.job_count = r.job_count.max(hb.job_count);
    r.last_job_at = hb.last_job_at.or(r.last_job_at);
    r.failure_count = r.failure_count.max(hb.failure_count);
    let pool_runner = !r.ephemeral && r.kind == "vm" && r.self_job.is_none();
    if pool_runner
        && r.pool.is_none()
        && matches!(
            to,
            RunnerState::Active | RunnerState::Idle | RunnerState::Busy
        )
    {
        r.pool = Some("apex".into());
    }
    let stored = r.instruction.as_deref().and_then(parse_instruction);
    let instruction = match stored {
        Some(i @ (Instruction::Drain | Instruction::Stop)) => Some(i),
        Some(once) => {
            r.instruction = None;
            Some(once)
        }
        None => {
            let stale = matches!((egg_hash, hb.config_hash.as_deref()), (Some(want), Some(has)) if want != has);
            (stale && pool_runner && to.is_ready()).then_some(Instruction::Reload)
        }
    };
    if to == RunnerState::Terminating {
        r.instruction = Some(instruction_name(Instruction::Stop).into());
    }
    let audit = (from != to).then(|| {
        (
            "state".to_string(),
            json!({ "from": from.as_str(), "to": to.as_str(), "reported": hb.state, "source": "heartbeat" }),
        )
    });
    Ok(Effect {
        instruction,
        remove: to == RunnerState::Terminating && from != RunnerState::Terminating,
        audit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn hb(state: AgentState) -> Heartbeat {
        Heartbeat {
            state,
            jobs_running: 0,
            job_count: 3,
            cpu_usage: 1.0,
            memory_usage: 2.0,
            disk_usage: 3.0,
            agent_version: "17.5.0".into(),
            failure_count: 1,
            last_job_at: None,
            config_hash: Some("h1".into()),
            measured_at: Utc::now(),
        }
    }

    fn runner(state: RunnerState) -> Runner {
        let mut r = Runner::new("r", "egg", "vm", "aws", "x", Utc::now());
        r.state = state.as_str().into();
        r
    }

    #[test]
    fn a_first_heartbeat_makes_a_pool_runner_active_in_apex() {
        let mut r = runner(RunnerState::Provisioning);
        let e = apply(&mut r, &hb(AgentState::Active), Utc::now(), Some("h1")).unwrap();
        assert_eq!(state_of(&r), RunnerState::Active);
        assert_eq!(r.pool.as_deref(), Some("apex"));
        assert_eq!((r.job_count, r.failure_count), (3, 1));
        assert!(r.last_heartbeat.is_some());
        assert_eq!(e.instruction, None);
        assert!(e.audit.is_some());
    }

    #[test]
    fn a_draining_runner_keeps_draining_until_it_stops() {
        let mut r = runner(RunnerState::Draining);
        r.instruction = Some("drain".into());
        let e = apply(&mut r, &hb(AgentState::Busy), Utc::now(), None).unwrap();
        assert_eq!(state_of(&r), RunnerState::Draining);
        assert_eq!(
            e.instruction,
            Some(Instruction::Drain),
            "repeated until obeyed"
        );
        assert!(!e.remove);
        let e = apply(&mut r, &hb(AgentState::Stopped), Utc::now(), None).unwrap();
        assert_eq!(state_of(&r), RunnerState::Terminating);
        assert!(e.remove);
    }

    #[test]
    fn one_shot_instructions_are_delivered_once_and_stale_config_reloads() {
        let mut r = runner(RunnerState::Idle);
        r.pool = Some("apex".into());
        r.instruction = Some("pause".into());
        let e = apply(&mut r, &hb(AgentState::Idle), Utc::now(), Some("h1")).unwrap();
        assert_eq!(e.instruction, Some(Instruction::Pause));
        assert_eq!(r.instruction, None);
        let e = apply(&mut r, &hb(AgentState::Idle), Utc::now(), Some("h2")).unwrap();
        assert_eq!(e.instruction, Some(Instruction::Reload));
        let mut eph = runner(RunnerState::Busy);
        eph.ephemeral = true;
        let e = apply(&mut eph, &hb(AgentState::Busy), Utc::now(), Some("h2")).unwrap();
        assert_eq!(e.instruction, None, "a single-job runner is never reloaded");
        assert_eq!(eph.pool, None, "nor put in a pool");
    }

    #[test]
    fn every_recorded_and_reported_state_is_a_legal_move() {
        use gosling_fleet::ALL_STATES;
        let reports = [
            AgentState::Active,
            AgentState::Idle,
            AgentState::Busy,
            AgentState::Stopping,
            AgentState::Stopped,
        ];
        for s in ALL_STATES {
            for a in reports {
                let to = next_state(s, a);
                assert!(s.can_become(to), "{s} + {a:?} → {to}");
            }
        }
    }
}
