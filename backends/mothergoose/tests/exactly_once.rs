//! Exactly one runner per job under load: 200 distinct pending jobs, each delivered five
//! times (GitLab retries with the same delivery id, and the same job again under other
//! ids, as a Pipeline Hook or a reconciler would), 1,000 concurrent deliveries → exactly
//! 200 runners, none duplicated, none lost. On the embedded queue, then on SQS (moto,
//! with 40 jobs: moto is slow).

mod support;

use gosling_fleet::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// `jobs` distinct jobs, each delivered five times at once.
async fn load(queue: Option<String>, jobs: u64) {
    let jobs_wanted = jobs;
    let mut h = Harness::new().await;
    if let Some(q) = queue {
        h.settings.queue = q;
    }
    h.settings.workers = 8;
    let mut files = vec![(
        "Eggs/a.fly".to_string(),
        egg("a", "serverless", 7, &["docker"], &h.gitlab.url),
    )];
    // A second egg of the same project with other tags: routing must not count twice.
    files.push((
        "Eggs/b.fly".to_string(),
        egg("b", "vm", 7, &["gpu"], &h.gitlab.url),
    ));
    h.deploy(&files).await;
    let counting = Arc::new(Counting::default());
    let app = h.app(Providers::single(counting.clone()), None).await;
    let running = h.start(app.clone()).await;

    let ids: Vec<u64> = (0..jobs_wanted)
        .map(|i| h.gitlab.add_job(7, &format!("job-{i}"), &["docker"]).id)
        .collect();
    let http = reqwest::Client::new();
    let mut sends = tokio::task::JoinSet::new();
    for (i, job) in ids.iter().enumerate() {
        for copy in 0..5 {
            let http = http.clone();
            let url = h.hook_url();
            let body = serde_json::json!({"object_kind": "build", "build_id": job, "build_status": "pending", "project_id": 7, "runner": null});
            // Two copies share a delivery id (a GitLab retry); the rest are new deliveries.
            let delivery = format!("d-{i}-{}", copy.min(3));
            sends.spawn(async move {
                // Like GitLab: a delivery that was not accepted (5xx) is sent again later.
                let mut status = 0;
                for attempt in 0..20u64 {
                    let r = http
                        .post(&url)
                        .header("X-Gitlab-Token", SECRET)
                        .header("X-Gitlab-Event", "Job Hook")
                        .header("X-Gitlab-Event-UUID", &delivery)
                        .json(&body)
                        .send()
                        .await;
                    status = r.map(|r| r.status().as_u16()).unwrap_or(599);
                    if status < 500 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
                Ok::<u16, ()>(status)
            });
        }
    }
    let mut statuses = BTreeMap::new();
    while let Some(r) = sends.join_next().await {
        *statuses.entry(r.unwrap().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(200, jobs_wanted as usize * 5)]),
        "every delivery acknowledged"
    );
    let store = h.store.clone();
    eventually(
        Duration::from_secs(120),
        "200 runners with machines",
        || async {
            store
                .runners()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.item.machine.is_some())
                .count() as u64
                >= jobs_wanted
                && app.queue.stats().await.unwrap().ready == 0
        },
    )
    .await;
    // Let any straggling duplicate finish, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runners = store.runners().await.unwrap();
    assert_eq!(
        runners.len() as u64,
        jobs_wanted,
        "no duplicated and no lost runner"
    );
    let claimed: BTreeSet<String> = store
        .gitlab_jobs()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| j.item.runner_id)
        .collect();
    assert_eq!(
        claimed.len() as u64,
        jobs_wanted,
        "every job points at its own runner"
    );
    assert!(
        runners.iter().all(|r| r.item.egg_name == "a"),
        "docker jobs go to the docker egg"
    );
    let made = counting.created.lock().unwrap().clone();
    assert_eq!(made.len() as u64, jobs_wanted, "one machine per runner");
    let registered = h.gitlab.with(|w| w.runners.len());
    assert_eq!(
        registered as u64, jobs_wanted,
        "one GitLab registration per runner"
    );
    assert_eq!(app.queue.stats().await.unwrap().dead, 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_for_two_hundred_jobs_make_two_hundred_runners() {
    load(None, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_sqs() {
    let moto = gosling_standins::Moto::start();
    // The SQS client reads credentials from the environment here (as in production).
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    // moto answers a few dozen SQS calls a second on this machine: a smaller load, the
    // same guarantee (a standard queue does not deduplicate; the store does).
    load(
        Some(format!(
            "sqs://gosling-tasks?region=us-east-1&endpoint={}",
            moto.endpoint
        )),
        40,
    )
    .await;
}
