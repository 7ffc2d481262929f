//! Agent version sync against a local download server serving fake releases.

mod common;

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

/// Serves release `version` (the fake reporting it), with a right or wrong checksum.
fn publish(files: &Files, version: &str, right_checksum: bool) -> Vec<u8> {
    let binary = agent_script(version).into_bytes();
    let sum = if right_checksum {
        hex::encode(Sha256::digest(&binary))
    } else {
        hex::encode(Sha256::digest(b"something else"))
    };
    let name = format!("binaries/gitlab-runner-linux-{}", arch());
    let mut f = files.0.lock().unwrap();
    f.insert(format!("/v{version}/{name}"), (200, binary.clone()));
    f.insert(
        format!("/v{version}/release.sha256"),
        (
            200,
            format!(
                "{}  binaries/gitlab-runner-linux-s390x\n{sum}  {name}\n",
                "0".repeat(64)
            )
            .into_bytes(),
        ),
    );
    binary
}

fn config_for_gitlab(version: &str) -> serde_json::Value {
    let mut c = runner_config("vm", false);
    c["gitlab_version"] = json!(version);
    c
}

#[test]
fn a_new_agent_is_installed_and_started_between_jobs() {
    let files = Arc::new(Files::default());
    let base = start_downloads(files.clone());
    let rig = Rig::new(&config_for_gitlab("17.6.2-ee"));
    let old = std::fs::read(&rig.agent).unwrap();
    // Not published yet: the installed 17.5.0 is kept and runs, the failure reported.
    let mut r = rig.start(&[
        "--agent-download-url",
        &base,
        "--update-check-interval",
        "1s",
        "--metrics-interval",
        "1s",
    ]);
    rig.wait_event(&r, "agent-start", ("version", "17.5.0"));
    rig.wait_heartbeat(&r, "the failed update counted", |h| h.failure_count >= 1);
    rig.add_job("a", "until=release\n");
    rig.wait_event(&r, "job-start", ("name", "a"));
    let new = publish(&files, "17.6.0", true);
    rig.wait_event(&r, "signal", ("name", "QUIT"));
    assert_eq!(
        std::fs::read(&rig.agent).unwrap(),
        new,
        "installed in place"
    );
    let previous = rig.dir.path().join("bin/gitlab-runner.previous");
    assert_eq!(
        std::fs::read(previous).unwrap(),
        old,
        "the previous one kept"
    );
    assert!(!rig.has_event("job-abort", ("", "")), "{}", rig.context(&r));
    assert!(
        !rig.has_event("agent-start", ("version", "17.6.0")),
        "not during the job"
    );
    rig.release("a");
    rig.wait_event(&r, "agent-start", ("version", "17.6.0"));
    rig.wait_heartbeat(&r, "the new version", |h| h.agent_version == "17.6.0");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&rig.agent).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn a_bad_checksum_is_refused_and_the_running_agent_kept() {
    let files = Arc::new(Files::default());
    let base = start_downloads(files.clone());
    publish(&files, "17.6.0", false);
    let rig = Rig::new(&config_for_gitlab("17.6.2"));
    let old = std::fs::read(&rig.agent).unwrap();
    let mut r = rig.start(&["--agent-download-url", &base, "--metrics-interval", "1s"]);
    rig.wait_event(&r, "agent-start", ("version", "17.5.0"));
    rig.wait_heartbeat(&r, "the failure reported", |h| {
        h.failure_count == 1 && h.agent_version == "17.5.0"
    });
    assert!(
        r.log_text().contains("checksum mismatch"),
        "{}",
        r.log_text()
    );
    assert_eq!(std::fs::read(&rig.agent).unwrap(), old);
    assert!(!rig.dir.path().join("bin/gitlab-runner.previous").exists());
    assert!(!rig.dir.path().join("bin/gitlab-runner.download").exists());
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn a_missing_agent_is_installed_before_the_start_and_none_at_all_is_fatal() {
    let files = Arc::new(Files::default());
    let base = start_downloads(files.clone());
    let rig = Rig::new(&config_for_gitlab("17.6.2"));
    std::fs::remove_file(&rig.agent).unwrap();
    // Nothing to download: no agent to run, a clear error.
    let mut r = rig.start(&["--agent-download-url", &base]);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(2), "{}", r.log_text());
    assert!(
        r.log_text().contains("no gitlab-runner at"),
        "{}",
        r.log_text()
    );
    assert_eq!(
        rig.mg.heartbeats().pop().map(|h| h.state),
        Some(gosling_api::AgentState::Stopped)
    );
    publish(&files, "17.6.0", true);
    let mut r = rig.start(&["--agent-download-url", &base]);
    rig.wait_event(&r, "agent-start", ("version", "17.6.0"));
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
}

#[test]
fn gitlab_is_asked_its_version_when_mothergoose_does_not_say() {
    let files = Arc::new(Files::default());
    let base = start_downloads(files.clone());
    files.0.lock().unwrap().insert(
        "/api/v4/version".into(),
        (200, br#"{"version":"17.5.1-ee","revision":"x"}"#.to_vec()),
    );
    let mut c = runner_config("vm", false);
    c["gitlab_version"] = serde_json::Value::Null;
    c["gitlab_url"] = json!(base);
    let rig = Rig::new(&c);
    let mut r = rig.start(&["--agent-download-url", &base]);
    rig.wait_event(&r, "agent-start", ("version", "17.5.0"));
    r.signal(libc::SIGTERM);
    assert_eq!(rig.wait_exit(&mut r).code(), Some(0));
    assert!(
        !r.log_text().contains("keeping the installed agent"),
        "{}",
        r.log_text()
    );
}
