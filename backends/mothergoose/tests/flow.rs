//! End to end on the embedded store and the local provider: `gosling deploy` a Nest → a
//! Job Hook (pending) from the GitLab stand-in → a runner record → a local process → its
//! heartbeat → active → the job runs and succeeds → the single-job runner is ended and
//! its process is gone, every step in the audit log.

mod support;

use gosling_fleet::local::process_runs;
use gosling_fleet::Providers;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_job_gets_a_runner_that_is_ended_after_the_job() {
    let mut h = Harness::new().await;
    let files = vec![(
        "Eggs/fast.fly".to_string(),
        egg("fast", "serverless", 7, &["docker"], &h.gitlab.url),
    )];
    h.deploy(&files).await;
    let hooks = h
        .gitlab
        .with(|w| w.hooks.values().cloned().collect::<Vec<_>>());
    assert_eq!(hooks.len(), 1, "gosling deploy registered the project hook");
    assert!(
        hooks[0].events.values().all(|on| *on),
        "job, pipeline, push and MR events: {hooks:?}"
    );
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;

    let (job, _) = h.gitlab.create_job(7, "build", &["docker"]).await;
    let store = h.store.clone();
    eventually(LIMIT, "a runner with a machine", || async {
        store
            .runners()
            .await
            .unwrap()
            .iter()
            .any(|r| r.item.machine.is_some())
    })
    .await;
    let runner = store.runners().await.unwrap().remove(0).item;
    assert_eq!(runner.state, "provisioning");
    assert!(runner.ephemeral, "serverless runners take one job");
    let pid: u32 = runner.machine.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(process_runs(pid, &runner.id), "the local process runs");
    let gitlab_id = runner.gitlab_runner_id.expect("registered with GitLab");
    assert!(
        runner
            .gitlab_runner_token
            .as_ref()
            .unwrap()
            .as_str()
            .starts_with("aes256gcm:"),
        "the token is sealed (Property 34)"
    );
    let claim = store.gitlab_jobs().await.unwrap().remove(0).item;
    assert_eq!(
        (claim.status.as_str(), claim.runner_id.as_deref()),
        ("provisioning", Some(runner.id.as_str()))
    );

    // The runner fetches its configuration and says it is up.
    let http = reqwest::Client::new();
    let cred = app.keys.credential(&runner.id, 0);
    let cfg: gosling_api::RunnerConfig = http
        .get(format!("{}/runners/{}/config", h.base, runner.id))
        .bearer_auth(cred.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg.egg.name, "fast");
    assert!(cfg.gitlab_token.as_deref().unwrap().starts_with("glrt-"));
    assert_eq!(
        cfg.egg.environment.get("STAGE").map(String::as_str),
        Some("test")
    );
    assert!(
        cfg.deadline.is_some(),
        "serverless runners get their 60-minute deadline"
    );
    let beat = |state: &str| serde_json::json!({ "state": state, "measured_at": chrono::Utc::now(), "agent_version": "17.5.0", "config_hash": cfg.egg.config_hash });
    let reply: gosling_api::HeartbeatReply = http
        .post(format!("{}/runners/{}/heartbeat", h.base, runner.id))
        .bearer_auth(cred.expose())
        .json(&beat("active"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply.runner_state, "active");
    assert_eq!(reply.instruction, None);

    // GitLab gives it the job; it runs and succeeds.
    h.gitlab
        .with(|w| w.jobs.get_mut(&job.id).unwrap().runner_id = Some(gitlab_id));
    h.gitlab.set_status(job.id, "running").await;
    h.gitlab.set_status(job.id, "success").await;
    let id = runner.id.clone();
    eventually(LIMIT, "the runner ended", || async {
        store.runner(&id).await.unwrap().unwrap().item.state == "terminated"
    })
    .await;
    assert!(!process_runs(pid, &runner.id), "its process is gone");
    assert!(
        h.gitlab.with(|w| w.runners.is_empty()),
        "its GitLab registration is deleted"
    );
    let actions: Vec<String> = store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.resource_id == runner.id)
        .map(|a| a.action)
        .collect();
    for expected in [
        "create",
        "registered",
        "machine_created",
        "state",
        "terminate",
        "terminated",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "no `{expected}` in {actions:?}"
        );
    }
    let claim = store.gitlab_jobs().await.unwrap().remove(0).item;
    assert_eq!(claim.status, "finished");
    running.stop().await;
}
