//! Every event kind and what it leads to: Pipeline, Push and Merge Request hooks are
//! recorded and acted on (Property 26); a lost Job Hook is made up for by the reconciler;
//! a final event that arrives before the pending one provisions nothing; a job no egg
//! serves is answered 200 and recorded with the reason; a single-job runner is cleaned up
//! within five minutes of its job's end (Property 13).

mod support;

use gosling_fleet::Providers;
use gosling_state::{Clock, ManualClock, SharedClock};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

async fn post(h: &Harness, event: &str, delivery: &str, body: serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(h.hook_url())
        .header("X-Gitlab-Token", SECRET)
        .header("X-Gitlab-Event", event)
        .header("X-Gitlab-Event-UUID", delivery)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn audit_actions(h: &Harness) -> Vec<String> {
    h.store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_26_pipeline_push_and_merge_request_events_are_processed() {
    let mut h = Harness::new().await;
    h.deploy(&[(
        "Eggs/a.fly".into(),
        egg("a", "vm", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    // A pipeline whose job is pending: its job gets a runner, as from a Job Hook.
    let job = h.gitlab.add_job(7, "compile", &["docker"]);
    let pipeline = json!({
        "object_kind": "pipeline",
        "object_attributes": { "id": job.pipeline_id, "status": "pending", "ref": "main" },
        "project": { "id": 7, "path_with_namespace": "group/project-7", "web_url": format!("{}/group/project-7", h.gitlab.url) },
        "builds": [{ "id": job.id, "status": "pending", "name": "compile", "stage": "build", "runner": null }]
    });
    assert_eq!(post(&h, "Pipeline Hook", "p-1", pipeline).await, 200);
    // The same job's Job Hook afterwards: no second runner.
    h.gitlab.deliver_job_hook(job.id).await;
    let push = json!({ "object_kind": "push", "project_id": 7, "ref": "refs/heads/main", "after": "abc", "total_commits_count": 1 });
    assert_eq!(post(&h, "Push Hook", "push-1", push).await, 200);
    let mr = json!({ "object_kind": "merge_request", "project": { "id": 7 }, "object_attributes": { "iid": 3, "state": "opened", "action": "open" } });
    assert_eq!(post(&h, "Merge Request Hook", "mr-1", mr).await, 200);
    let store = h.store.clone();
    eventually(LIMIT, "the pipeline's job has a runner", || async {
        store
            .runners()
            .await
            .unwrap()
            .iter()
            .any(|r| r.item.machine.is_some())
    })
    .await;
    eventually(LIMIT, "all three recorded", || async {
        let a = audit_actions(&h).await;
        ["pipeline", "push", "merge_request"]
            .iter()
            .all(|k| a.iter().any(|x| x == k))
    })
    .await;
    for id in ["p-1", "push-1", "mr-1"] {
        let e = h.store.webhook_event(id).await.unwrap().unwrap().item;
        assert_eq!(e.status, "done", "{id}");
    }
    // The push made MotherGoose ask GitLab for pending jobs.
    eventually(LIMIT, "a poll of project 7", || async {
        h.gitlab
            .with(|w| w.calls.iter().any(|c| c == "GET /projects/7/jobs"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.store.runners().await.unwrap().len(),
        1,
        "one runner for the job"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_hook_is_made_up_for_by_the_reconciler() {
    let mut h = Harness::new().await;
    h.settings.reconcile_interval = Duration::from_millis(300);
    h.deploy(&[(
        "Eggs/a.fly".into(),
        egg("a", "vm", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    // GitLab has a pending job, but its hook never arrives.
    h.gitlab.add_job(7, "lost", &["docker"]);
    let store = h.store.clone();
    eventually(LIMIT, "a runner for the lost job", || async {
        store
            .runners()
            .await
            .unwrap()
            .iter()
            .any(|r| r.item.machine.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        h.store.runners().await.unwrap().len(),
        1,
        "polled again and again, provisioned once"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_event_before_the_pending_one_provisions_nothing_and_unmatched_jobs_are_recorded() {
    let mut h = Harness::new().await;
    h.deploy(&[(
        "Eggs/a.fly".into(),
        egg("a", "vm", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    let job = h.gitlab.add_job(7, "quick", &["docker"]);
    let hook = |status: &str| json!({ "object_kind": "build", "build_id": job.id, "build_status": status, "project_id": 7, "runner": null });
    assert_eq!(
        post(&h, "Job Hook", "late-success", hook("success")).await,
        200
    );
    let store = h.store.clone();
    eventually(LIMIT, "the job recorded as finished", || async {
        store
            .gitlab_jobs()
            .await
            .unwrap()
            .iter()
            .any(|j| j.item.status == "finished")
    })
    .await;
    assert_eq!(
        post(&h, "Job Hook", "late-pending", hook("pending")).await,
        200
    );
    // Unknown project, and tags no egg has: 200 to GitLab, a reason in the audit log.
    assert_eq!(post(&h, "Job Hook", "other", json!({ "object_kind": "build", "build_id": 99, "build_status": "pending", "project_id": 404 })).await, 200);
    let gpu = h.gitlab.add_job(7, "train", &["gpu"]);
    assert_eq!(post(&h, "Job Hook", "gpu", json!({ "object_kind": "build", "build_id": gpu.id, "build_status": "pending", "project_id": 7 })).await, 200);
    eventually(LIMIT, "two unmatched entries", || async {
        audit_actions(&h)
            .await
            .iter()
            .filter(|a| *a == "unmatched")
            .count()
            == 2
    })
    .await;
    let reasons: Vec<String> = h
        .store
        .audit_logs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "unmatched")
        .map(|a| a.details["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no egg serves project 404")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("gpu")), "{reasons:?}");
    assert_eq!(
        h.store.runners().await.unwrap().len(),
        0,
        "nothing provisioned"
    );
    assert_eq!(
        app.metrics
            .get("mothergoose_unmatched_total", "unknown_project"),
        1
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_13_single_job_runners_are_cleaned_up_within_five_minutes() {
    let mut h = Harness::new().await;
    h.deploy(&[(
        "Eggs/s.fly".into(),
        egg("s", "serverless", 7, &["docker"], &h.gitlab.url),
    )])
    .await;
    let clock = ManualClock::new(chrono::Utc::now());
    let app = h
        .app(
            Providers::single(idle_runner(h.dir.path())),
            Some(Arc::new(clock.clone()) as SharedClock),
        )
        .await;
    let running = h.start(app.clone()).await;
    let (job, _) = h.gitlab.create_job(7, "build", &["docker"]).await;
    let store = h.store.clone();
    eventually(LIMIT, "its runner", || async {
        store
            .runners()
            .await
            .unwrap()
            .iter()
            .any(|r| r.item.machine.is_some())
    })
    .await;
    let r = store.runners().await.unwrap().remove(0).item;
    let gid = r.gitlab_runner_id.unwrap();
    h.gitlab
        .with(|w| w.jobs.get_mut(&job.id).unwrap().runner_id = Some(gid));
    h.gitlab.set_status(job.id, "running").await;
    let ended_at = clock.now();
    h.gitlab.set_status(job.id, "failed").await;
    let id = r.id.clone();
    eventually(LIMIT, "terminated", || async {
        store.runner(&id).await.unwrap().unwrap().item.state == "terminated"
    })
    .await;
    let done = store.runner(&r.id).await.unwrap().unwrap().item;
    assert!(
        done.updated_at - ended_at <= chrono::Duration::minutes(5),
        "cleaned up within five minutes"
    );
    let pid: u32 = r.machine.unwrap()["id"].as_str().unwrap().parse().unwrap();
    assert!(
        !gosling_fleet::local::process_runs(pid, &r.id),
        "its process is gone"
    );
    running.stop().await;
}
