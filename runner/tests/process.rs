//! Runner mode as real processes with real signals: `gosling runner` (the example binary
//! with the same entry point), the fake gitlab-runner, a MotherGoose stand-in on loopback.

mod common;

use common::*;
use gosling_api::{AgentState, Instruction};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering;

const FAST: &[&str] = &["--metrics-interval", "1s"];

#[test]
fn sigterm_lets_the_running_job_finish_then_the_agent_and_the_runner_exit_0() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.add_job("a", "until=release\n");
    rig.wait_event(&r, "job-start", ("name", "a"));
    rig.wait_heartbeat(&r, "busy with one job", |h| {
        h.state == AgentState::Busy && h.jobs_running == 1
    });
    r.signal(libc::SIGTERM);
    rig.wait_event(&r, "signal", ("name", "QUIT"));
    rig.wait_heartbeat(&r, "stopping", |h| h.state == AgentState::Stopping);
    assert!(
        r.running(),
        "runner mode waits for the job\n{}",
        rig.context(&r)
    );
    assert!(!rig.has_event("job-abort", ("", "")), "{}", rig.context(&r));
    assert!(!rig.has_event("agent-exit", ("", "")));
    rig.release("a");
    let status = rig.wait_exit(&mut r);
    assert_eq!(status.code(), Some(0), "{}", rig.context(&r));
    assert!(rig.has_event("job-end", ("name", "a")));
    assert!(rig.has_event("agent-exit", ("code", "0")));
    assert_eq!(rig.count_events("signal", ("", "")), 1, "only SIGQUIT");
    let last = rig.mg.heartbeats().pop().unwrap();
    assert_eq!(last.state, AgentState::Stopped);
    assert_eq!((last.job_count, last.jobs_running), (1, 0));
    assert!(last.last_job_at.is_some());
    assert_eq!(last.agent_version, "17.5.0");
}

#[test]
fn sigint_stops_at_once_and_the_agent_aborts_its_job() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.add_job("a", "until=never\n");
    rig.wait_event(&r, "job-start", ("name", "a"));
    r.signal(libc::SIGINT);
    let status = rig.wait_exit(&mut r);
    assert_eq!(status.code(), Some(130), "{}", rig.context(&r));
    assert!(
        rig.has_event("signal", ("name", "TERM")),
        "{}",
        rig.context(&r)
    );
    assert!(rig.has_event("job-abort", ("name", "a")));
    assert!(!rig.has_event("job-end", ("name", "a")));
    assert_eq!(
        rig.mg.heartbeats().pop().unwrap().state,
        AgentState::Stopped
    );
}

#[test]
fn sighup_writes_the_new_config_toml_and_restarts_the_agent_between_jobs() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.add_job("a", "until=release\n");
    rig.wait_event(&r, "job-start", ("name", "a"));
    assert!(!rig.config_toml().contains("NEW_VAR"));
    let mut changed = runner_config("vm", false);
    changed["egg"]["environment"]["NEW_VAR"] = json!("1");
    changed["egg"]["config_hash"] = json!("hash-2");
    rig.set_config(&changed);
    r.signal(libc::SIGHUP);
    rig.wait_event(&r, "signal", ("name", "QUIT"));
    // The old agent keeps its job and its file until the job ends.
    assert!(!rig.config_toml().contains("NEW_VAR"));
    assert!(!rig.has_event("job-abort", ("", "")));
    assert_eq!(rig.agent_pids().len(), 1);
    rig.release("a");
    wait_for(
        "a second agent",
        || rig.agent_pids().len() == 2,
        || rig.context(&r),
    );
    assert!(
        rig.config_toml().contains("\"NEW_VAR=1\""),
        "{}",
        rig.config_toml()
    );
    let events = rig.events();
    let end = events.iter().position(|(e, _)| e == "job-end").unwrap();
    let second = events
        .iter()
        .rposition(|(e, _)| e == "agent-start")
        .unwrap();
    assert!(end < second, "restarted between jobs: {events:?}");
    rig.wait_heartbeat(&r, "the new config hash", |h| {
        h.config_hash.as_deref() == Some("hash-2")
    });
    assert!(r.running());
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

// Property 12: a serverless runner's execution is ended at its deadline: the agent gets
// SIGQUIT, then SIGKILL at the deadline when its job has not ended, the end is reported,
// and runner mode exits so that the container ends.
#[test]
fn property_12_a_serverless_job_that_never_ends_is_stopped_at_the_deadline() {
    let mut config = runner_config("serverless", true);
    let deadline = chrono::Utc::now() + chrono::Duration::seconds(15);
    config["deadline"] = json!(deadline);
    let rig = Rig::new(&config);
    let mut r = rig.start(&["--deadline-grace", "5s", "--metrics-interval", "1s"]);
    rig.add_job("forever", "until=never\n");
    rig.wait_event(&r, "job-start", ("name", "forever"));
    assert!(rig.has_event("agent-start", ("command", "run-single")));
    rig.wait_heartbeat(&r, "busy (from the agent's log)", |h| {
        h.state == AgentState::Busy
    });
    let status = rig.wait_exit(&mut r);
    assert!(chrono::Utc::now() >= deadline, "not before the deadline");
    assert_eq!(status.code(), Some(1), "{}", rig.context(&r));
    assert!(
        rig.has_event("signal", ("name", "QUIT")),
        "{}",
        rig.context(&r)
    );
    assert!(
        !rig.has_event("agent-exit", ("", "")),
        "the agent was killed, it did not exit\n{}",
        rig.context(&r)
    );
    let pid = rig.agent_pids()[0];
    assert!(!alive(pid), "the agent is gone");
    let last = rig.mg.heartbeats().pop().unwrap();
    assert_eq!(last.state, AgentState::Stopped);
    assert!(last.failure_count >= 1);
    assert!(
        r.log_text().contains("killed at the deadline"),
        "{}",
        r.log_text()
    );
}

#[test]
fn a_serverless_runner_runs_one_job_and_exits() {
    let rig = Rig::new(&runner_config("serverless", true));
    let mut r = rig.start(FAST);
    rig.add_job("one", "until=release\n");
    rig.add_job("two", "duration=0\n");
    rig.wait_event(&r, "job-start", ("name", "one"));
    rig.wait_heartbeat(&r, "busy", |h| h.state == AgentState::Busy);
    rig.release("one");
    let status = rig.wait_exit(&mut r);
    assert_eq!(status.code(), Some(0), "{}", rig.context(&r));
    assert!(
        !rig.has_event("job-start", ("name", "two")),
        "--max-builds 1"
    );
    let last = rig.mg.heartbeats().pop().unwrap();
    assert_eq!((last.state, last.job_count), (AgentState::Stopped, 1));
}

#[test]
fn an_agent_crash_is_counted_and_the_agent_restarted() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.wait_event(&r, "agent-start", ("", ""));
    rig.add_job("boom", "crash=true\n");
    rig.wait_event(&r, "crash", ("name", "boom"));
    wait_for(
        "a restarted agent",
        || rig.agent_pids().len() == 2,
        || rig.context(&r),
    );
    rig.wait_heartbeat(&r, "one failure", |h| h.failure_count == 1);
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn heartbeats_follow_the_agent_and_drain_finishes_the_job_then_stops() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.wait_heartbeat(&r, "active", |h| {
        h.state == AgentState::Active && h.agent_version == "17.5.0"
    });
    let first = rig.mg.heartbeats()[0].clone();
    assert_eq!(first.config_hash.as_deref(), Some("hash-1"));
    assert!(
        first.memory_usage > 0.0 && first.disk_usage > 0.0,
        "{first:?}"
    );
    rig.add_job("a", "until=release\n");
    rig.wait_heartbeat(&r, "busy", |h| {
        h.state == AgentState::Busy && h.jobs_running == 1 && h.job_count == 1
    });
    rig.mg.instruct(Instruction::Drain);
    rig.wait_event(&r, "signal", ("name", "QUIT"));
    rig.wait_heartbeat(&r, "stopping", |h| h.state == AgentState::Stopping);
    assert!(r.running());
    rig.release("a");
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0), "{}", rig.context(&r));
    assert!(!rig.has_event("job-abort", ("", "")));
    assert_eq!(
        rig.mg.heartbeats().pop().unwrap().state,
        AgentState::Stopped
    );
}

#[test]
fn the_stop_instruction_stops_now() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.add_job("a", "until=never\n");
    rig.wait_event(&r, "job-start", ("name", "a"));
    rig.mg.instruct(Instruction::Stop);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0), "{}", rig.context(&r));
    assert!(rig.has_event("job-abort", ("name", "a")));
    assert_eq!(
        rig.mg.heartbeats().pop().unwrap().state,
        AgentState::Stopped
    );
}

#[test]
fn pause_stops_taking_jobs_but_keeps_heartbeating_and_resume_starts_again() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.wait_event(&r, "agent-start", ("", ""));
    rig.mg.instruct(Instruction::Pause);
    rig.wait_event(&r, "agent-exit", ("code", "0"));
    let seen = rig.mg.heartbeats().len();
    wait_for(
        "idle heartbeats while paused",
        || {
            let hbs = rig.mg.heartbeats();
            hbs.len() >= seen + 2 && hbs[seen..].iter().all(|h| h.state == AgentState::Idle)
        },
        || rig.context(&r),
    );
    rig.add_job("later", "duration=0\n");
    assert_eq!(rig.agent_pids().len(), 1, "no agent while paused");
    rig.mg.instruct(Instruction::Resume);
    rig.wait_event(&r, "job-end", ("name", "later"));
    assert_eq!(rig.agent_pids().len(), 2);
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn the_reload_instruction_applies_a_new_configuration() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.wait_event(&r, "agent-start", ("", ""));
    let mut changed = runner_config("vm", false);
    changed["egg"]["runner"]["image"] = json!("debian:12");
    rig.set_config(&changed);
    rig.mg.instruct(Instruction::Reload);
    wait_for(
        "a second agent",
        || rig.agent_pids().len() == 2,
        || rig.context(&r),
    );
    assert!(rig.config_toml().contains("image = \"debian:12\""));
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn heartbeats_missed_in_an_outage_are_resent_oldest_first() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.wait_heartbeat(&r, "a first one", |_| true);
    rig.mg.down.store(true, Ordering::SeqCst);
    let down_at = chrono::Utc::now();
    let attempts = rig.mg.attempts.load(Ordering::SeqCst);
    wait_for(
        "three refused attempts",
        || rig.mg.attempts.load(Ordering::SeqCst) >= attempts + 3,
        || rig.context(&r),
    );
    let accepted = rig.mg.heartbeats().len();
    rig.mg.down.store(false, Ordering::SeqCst);
    let up_at = chrono::Utc::now();
    wait_for(
        "the buffered heartbeats",
        || rig.mg.heartbeats().len() >= accepted + 3,
        || rig.context(&r),
    );
    let resent: Vec<_> = rig.mg.heartbeats()[accepted..]
        .iter()
        .map(|h| h.measured_at)
        .collect();
    assert!(
        resent
            .iter()
            .filter(|t| **t >= down_at && **t < up_at)
            .count()
            >= 2,
        "heartbeats measured during the outage arrive afterwards: {resent:?}"
    );
    assert!(resent.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert!(
        r.running(),
        "an outage shorter than --max-silence is ridden out"
    );
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn a_runner_without_an_answer_for_max_silence_stops_itself_gracefully() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(&["--metrics-interval", "1s", "--max-silence", "3s"]);
    rig.wait_event(&r, "agent-start", ("", ""));
    rig.mg.down.store(true, Ordering::SeqCst);
    let status = rig.wait_exit(&mut r);
    assert_eq!(status.code(), Some(1), "{}", rig.context(&r));
    assert!(rig.has_event("signal", ("name", "QUIT")), "graceful");
    assert!(rig.has_event("agent-exit", ("code", "0")));
    assert!(r.log_text().contains("no answer from MotherGoose"));
}

#[test]
fn a_revoked_credential_stops_the_runner() {
    let rig = Rig::new(&runner_config("vm", false));
    let mut r = rig.start(FAST);
    rig.wait_event(&r, "agent-start", ("", ""));
    rig.mg.revoked.store(true, Ordering::SeqCst);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(1), "{}", rig.context(&r));
    assert!(rig.has_event("signal", ("name", "QUIT")));
}

#[test]
fn the_configuration_comes_from_mothergoose_with_the_runners_credential() {
    let rig = Rig::new(&runner_config("vm", false));
    let args: Vec<String> = [
        "--runner-id",
        RUNNER_ID,
        "--egg-name",
        "my-app",
        "--mothergoose-url",
        &rig.mg_url,
        "--metrics-interval",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    let mut r = rig.start_with(&args);
    rig.wait_event(&r, "agent-start", ("command", "run"));
    let toml = rig.config_toml();
    assert!(toml.contains(&format!("token = \"{TOKEN}\"")), "{toml}");
    let mode = std::fs::metadata(rig.work.join("config.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !r.log_text().contains(TOKEN) && !r.log_text().contains(CREDENTIAL),
        "no secret in the log"
    );
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));

    // Another egg's configuration is refused, and so is a wrong credential.
    let mut other = args.clone();
    other[3] = "other-egg".into();
    let mut r = rig.start_with(&other);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(2));
    assert!(r.log_text().contains("not `other-egg`"), "{}", r.log_text());
    rig.mg.revoked.store(true, Ordering::SeqCst);
    let mut r = rig.start_with(&args);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(2));
    assert!(r.log_text().contains("401"), "{}", r.log_text());
    assert!(!r.log_text().contains(CREDENTIAL));
}

#[test]
fn plain_http_to_a_remote_mothergoose_is_refused() {
    let rig = Rig::new(&runner_config("vm", false));
    let args = [
        "--runner-id",
        RUNNER_ID,
        "--mothergoose-url",
        "http://10.20.30.40:8080",
    ]
    .map(String::from)
    .to_vec();
    let mut r = rig.start_with(&args);
    let status = rig.wait_exit(&mut r);
    assert_eq!(status.code(), Some(2));
    assert!(status.signal().is_none());
    assert!(r.log_text().contains("loopback"), "{}", r.log_text());
}

// Property 29: a job run by the agent gets the egg's environment variables.
#[test]
fn property_29_jobs_get_the_eggs_environment() {
    let mut c = runner_config("serverless", true);
    c["egg"]["environment"] = json!({"APP_ENV": "ci", "QUOTED": "a \"b\" = c"});
    let rig = Rig::new(&c);
    let mut r = rig.start(FAST);
    rig.add_job("env", "duration=0\n");
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0), "{}", rig.context(&r));
    let env = std::fs::read_to_string(rig.jobs.join("env.env")).unwrap();
    assert_eq!(env, "APP_ENV=ci\nQUOTED=a \"b\" = c\n");
}
