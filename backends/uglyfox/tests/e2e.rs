//! End to end with the local provider and the `uglyfox` binary: a real process stands in
//! for a runner (its command line names the runner id, as the local provider requires);
//! its heartbeats stop; `uglyfox plan` lists what will happen, `uglyfox run --once` marks
//! it failed, then ends it, and its process is gone.

mod common;

use chrono::{Duration as D, Utc};
use common::*;
use gosling_fleet::local::{process_runs, LocalProvider};
use gosling_fleet::{Bootstrap, Provider, RunnerSpec};
use gosling_state::*;
use std::process::Command;
use std::sync::Arc;

fn uglyfox(dir: &std::path::Path, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_uglyfox"))
        .args(args)
        .arg("--state")
        .arg(format!("sqlite://{}", dir.join("state.db").display()))
        .env("GOSLING_STATE_KEY", key)
        .env_remove("GOSLING_STATE")
        .env_remove("GOSLING_OBJECTS")
        .env_remove("GOSLING_QUEUE")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn decisions_for(json: &str, id: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["runner"] == id)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_local_runner_is_listed_then_terminated_and_its_process_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store: Arc<dyn StateStore> = Arc::from(
        open_state(
            &format!("sqlite://{}", d.join("state.db").display()),
            &OpenOptions::default(),
        )
        .await
        .unwrap(),
    );
    let objects = open_objects(
        &d.join("objects").display().to_string(),
        &OpenOptions::default(),
    )
    .await
    .unwrap();
    let ir = nest();
    let now = Utc::now();
    deploy(&*store, &*objects, &ir, now).await;

    // The runner: a process in the local provider's folder `runners/` beside the state.
    let provider = LocalProvider::new(
        d.join("runners"),
        "sh",
        vec!["-c".into(), "sleep 600; :".into(), "gosling-runner".into()],
    );
    let spec = RunnerSpec {
        runner_id: "r-e2e".into(),
        egg: ir.egg("app").unwrap().clone(),
        bootstrap: Bootstrap {
            mothergoose_url: "http://127.0.0.1:9".into(),
            credential: SecretString::new("test"),
            ca_pem: None,
        },
        ephemeral: false,
        extra_env: Default::default(),
    };
    let handle = provider.create(&spec).await.unwrap();
    let pid: u32 = handle.id.parse().unwrap();
    // Until the child has exec'd, its command line is still the test's.
    for _ in 0..100 {
        if process_runs(pid, "r-e2e") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(process_runs(pid, "r-e2e"));
    let mut r = Runner::new("r-e2e", "app", "vm", "aws", "eu-west-1", now - D::hours(1));
    r.state = "idle".into();
    r.pool = Some("apex".into());
    r.failure_count = 2;
    r.last_heartbeat = Some(now - D::minutes(10)); // it stopped reporting
    r.machine = Some(serde_json::to_value(&handle).unwrap());
    store.put_runner(&r, Expect::Absent).await.unwrap();
    drop(store);
    let key = Cipher::generate_key();

    // `uglyfox plan` says what the pass will do, and writes nothing.
    let (ok, out, err) = uglyfox(d, &key, &["plan", "--format", "json"]);
    assert!(ok, "{err}");
    let ds = decisions_for(&out, "r-e2e");
    assert_eq!(ds.len(), 1, "{out}");
    assert_eq!(
        (ds[0]["kind"].as_str(), ds[0]["reason"].as_str()),
        (Some("mark_failed"), Some("heartbeat"))
    );
    let (ok, text, _) = uglyfox(d, &key, &["plan"]);
    assert!(ok);
    assert!(
        text.contains("mark_failed") && text.contains("r-e2e (app)"),
        "{text}"
    );
    assert!(!d.join("queue.db").exists(), "plan wrote nothing");

    // A pass: marked failed (its third failure).
    let (ok, _, err) = uglyfox(d, &key, &["run", "--once"]);
    assert!(ok, "{err}");
    let store = open_state(
        &format!("sqlite://{}", d.join("state.db").display()),
        &OpenOptions::default(),
    )
    .await
    .unwrap();
    let r = store.runner("r-e2e").await.unwrap().unwrap().item;
    assert_eq!((r.state.as_str(), r.failure_count), ("failed", 3));
    assert!(
        process_runs(pid, "r-e2e"),
        "marking it failed does not stop it"
    );

    // The plan now ends it (failed_threshold 3); the next pass does.
    let (_, out, _) = uglyfox(d, &key, &["plan", "--format", "json"]);
    let ds = decisions_for(&out, "r-e2e");
    assert_eq!(
        (ds[0]["kind"].as_str(), ds[0]["reason"].as_str()),
        (Some("end"), Some("failed_threshold")),
        "{out}"
    );
    let (ok, _, err) = uglyfox(d, &key, &["run", "--once"]);
    assert!(ok, "{err}");
    let r = store.runner("r-e2e").await.unwrap().unwrap().item;
    assert_eq!(r.state, "terminated");
    for _ in 0..100 {
        if !process_runs(pid, "r-e2e") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!process_runs(pid, "r-e2e"), "its process is gone");
    let actions: Vec<String> = store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.resource_id == "r-e2e" && a.actor == "uglyfox")
        .map(|a| a.action)
        .collect();
    assert!(
        actions.contains(&"mark_failed".to_string()) && actions.contains(&"terminated".to_string()),
        "{actions:?}"
    );
}

#[test]
fn without_a_state_outside_a_nest_it_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_uglyfox"))
        .arg("plan")
        .current_dir(dir.path())
        .env_remove("GOSLING_STATE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--state"), "{err}");
}
