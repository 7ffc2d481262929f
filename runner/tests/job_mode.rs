//! `gosling runner --job NAME`: self-management jobs and their results.

mod common;

use common::*;
use gosling_api::AgentState;
use serde_json::json;

fn job_config(script: &str, timeout_s: u64) -> serde_json::Value {
    let mut c = runner_config("vm", true);
    c["gitlab_token"] = serde_json::Value::Null;
    c["job"] = json!({
        "name": "rotate-tokens",
        "script": script,
        "environment": {"GREETING": "hello"},
        "timeout_s": timeout_s,
        "scheduled_for": "2026-01-01T03:00:00Z"
    });
    c
}

fn run_job(c: &serde_json::Value) -> (Rig, std::process::ExitStatus, String) {
    let rig = Rig::new(c);
    let mut r = rig.start(&["--job", "rotate-tokens"]);
    let status = rig.wait_exit(&mut r);
    let log = r.log_text();
    (rig, status, log)
}

#[test]
fn a_job_that_succeeds_is_reported_with_its_output() {
    let (rig, status, log) = run_job(&job_config(
        "echo \"$GREETING from the job\"\necho \"credential: ${GOSLING_RUNNER_CREDENTIAL:-none}\"\n",
        60,
    ));
    assert_eq!(status.code(), Some(0), "{log}");
    let results = rig.mg.results.lock().unwrap().clone();
    assert_eq!(results.len(), 1);
    let res = &results[0];
    assert_eq!(
        (res.success, res.exit_code, res.timed_out),
        (true, Some(0), false)
    );
    assert!(res.output_tail.contains("hello from the job"), "{res:?}");
    assert!(
        res.output_tail.contains("credential: none"),
        "the credential is withheld"
    );
    let hbs = rig.mg.heartbeats();
    assert!(hbs.iter().any(|h| h.state == AgentState::Busy), "{hbs:?}");
    assert_eq!(hbs.last().unwrap().state, AgentState::Stopped);
    assert!(rig.events().is_empty(), "no agent was started");
}

#[test]
fn a_failing_job_and_its_interpreter_line() {
    let (rig, status, log) = run_job(&job_config(
        "#!/bin/sh\necho start\nfor i in $(seq 1 2000); do echo line $i; done\nexit 3\n",
        60,
    ));
    assert_eq!(status.code(), Some(1), "{log}");
    let res = rig.mg.results.lock().unwrap()[0].clone();
    assert_eq!(
        (res.success, res.exit_code, res.timed_out),
        (false, Some(3), false)
    );
    assert!(res.output_tail.len() <= 4096);
    assert!(
        res.output_tail.ends_with("line 2000\n"),
        "the tail: {:?}",
        res.output_tail
    );
    assert!(!res.output_tail.contains("start"));
}

#[test]
fn a_job_past_its_timeout_is_killed() {
    let (rig, status, log) = run_job(&job_config("echo before\nsleep 600\necho after\n", 1));
    assert_eq!(status.code(), Some(1), "{log}");
    let res = rig.mg.results.lock().unwrap()[0].clone();
    assert!(!res.success && res.timed_out, "{res:?}");
    assert_eq!(res.exit_code, None, "killed by a signal");
    assert!(res.output_tail.contains("before") && !res.output_tail.contains("after"));
    assert!((res.finished_at - res.started_at).num_seconds() < 60);
}

#[test]
fn a_job_not_assigned_is_refused() {
    let rig = Rig::new(&job_config("true", 5));
    let mut r = rig.start(&["--job", "another-job"]);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(2));
    assert!(
        r.log_text().contains("not `another-job`"),
        "{}",
        r.log_text()
    );
    assert!(rig.mg.results.lock().unwrap().is_empty());
}
