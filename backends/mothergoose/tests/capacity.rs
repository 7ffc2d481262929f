//! An egg's `max_runners` holds however many workers make runners at once, and a job that
//! waited for room gets its runner as soon as a runner of the egg ends.

mod support;

use gosling_fleet::Providers;
use std::time::{Duration, Instant};
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egg_never_exceeds_max_runners_and_waiting_jobs_take_freed_room_at_once() {
    let mut h = Harness::new().await;
    let fly = egg("small", "serverless", 7, &["docker"], &h.gitlab.url)
        .replace("max_runners = 1000", "max_runners = 2");
    h.deploy(&[("Eggs/small.fly".to_string(), fly)]).await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    // Six jobs at once, for four workers.
    let mut jobs = Vec::new();
    for i in 0..6 {
        jobs.push(
            h.gitlab
                .create_job(7, &format!("j{i}"), &["docker"])
                .await
                .0
                .id,
        );
    }
    let store = h.store.clone();
    let live = || async {
        let rs = store.runners().await.unwrap();
        rs.iter().filter(|r| r.item.state != "terminated").count()
    };
    let busy = Instant::now();
    while busy.elapsed() < Duration::from_secs(3) {
        assert!(live().await <= 2, "more than max_runners live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.runners().await.unwrap().len(), 2, "the others wait");

    // One job ends on its runner: the runner is ended, and a waiting job gets the room
    // well before its next look (15 s).
    let first = store.runners().await.unwrap()[0].item.clone();
    let build = jobs
        .iter()
        .copied()
        .find(|b| {
            let k = gosling_state::GitLabJob::key(&h.gitlab.url, 7, *b);
            first.open_jobs.contains(&k)
        })
        .expect("the runner's job");
    let gid = first.gitlab_runner_id.expect("registered");
    h.gitlab
        .with(|w| w.jobs.get_mut(&build).unwrap().runner_id = Some(gid));
    h.gitlab.set_status(build, "running").await;
    h.gitlab.set_status(build, "success").await;
    let freed = Instant::now();
    eventually(LIMIT, "a third runner, in the freed room", || async {
        store.runners().await.unwrap().len() == 3
    })
    .await;
    assert!(
        freed.elapsed() < Duration::from_secs(10),
        "{:?}",
        freed.elapsed()
    );
    assert!(live().await <= 2);
    running.stop().await;
}
