//! GitLab gives a pending job to any runner whose tags fit, not to the one MotherGoose made
//! for it: runner R, made for job Y, takes job X. The runner made for X then counts for Y,
//! so each job still has exactly one runner and none is made twice (Property 31); when
//! that runner is gone, Y gets a new one at once.

mod support;

use gosling_fleet::Providers;
use gosling_state::{Runner, StateStore};
use mothergoose::tasks::deploy::MAX_ATTEMPTS;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

struct Two {
    h: Harness,
    app: Arc<mothergoose::App>,
    running: mothergoose::Running,
    store: Arc<dyn StateStore>,
    x: u64,
    y: u64,
    /// The runner made for X, and the one made for Y.
    gx: Runner,
    ry: Runner,
}

fn key(h: &Harness, build: u64) -> String {
    gosling_state::GitLabJob::key(&h.gitlab.url, 7, build)
}

type Serving = (
    Harness,
    Arc<mothergoose::App>,
    mothergoose::Running,
    Vec<u64>,
);

/// A serverless egg deployed and MotherGoose serving it, with jobs `names` pending at
/// GitLab (their hooks delivered) and each one's runner up; returns the jobs' ids.
async fn jobs_with_their_runners(names: &[&str]) -> Serving {
    jobs_within(names, 1000).await
}

/// The same on an egg of `max_runners` runners: the jobs past it wait.
async fn jobs_within(names: &[&str], max_runners: usize) -> Serving {
    let mut h = Harness::new().await;
    let fly = egg("fast", "serverless", 7, &["docker"], &h.gitlab.url).replace(
        "max_runners = 1000",
        &format!("max_runners = {max_runners}"),
    );
    h.deploy(&[("Eggs/fast.fly".to_string(), fly)]).await;
    let app = h
        .app(Providers::single(idle_runner(h.dir.path())), None)
        .await;
    let running = h.start(app.clone()).await;
    let mut ids = Vec::new();
    for name in names {
        ids.push(h.gitlab.create_job(7, name, &["docker"]).await.0.id);
    }
    let store = h.store.clone();
    let made = names.len().min(max_runners);
    eventually(LIMIT, "the runners have their machines", || async {
        let rs = store.runners().await.unwrap();
        rs.len() == made && rs.iter().all(|r| r.item.machine.is_some())
    })
    .await;
    (h, app, running, ids)
}

/// The runner job `build`'s record names.
async fn runner_of(h: &Harness, build: u64) -> Runner {
    let id = h.store.gitlab_job(&key(h, build)).await.unwrap().unwrap();
    let id = id.item.runner_id.expect("the job has a runner");
    h.store.runner(&id).await.unwrap().unwrap().item
}

/// Two pending jobs of one serverless egg, each with its runner up.
async fn two_jobs_with_their_runners() -> Two {
    let (h, app, running, ids) = jobs_with_their_runners(&["x", "y"]).await;
    let (gx, ry) = (runner_of(&h, ids[0]).await, runner_of(&h, ids[1]).await);
    let store = h.store.clone();
    Two {
        h,
        app,
        running,
        store,
        x: ids[0],
        y: ids[1],
        gx,
        ry,
    }
}

/// GitLab gives job `build` to `runner`, which starts it.
async fn runs_on(h: &Harness, build: u64, runner: &Runner) {
    let gid = runner.gitlab_runner_id.expect("registered");
    h.gitlab
        .with(|w| w.jobs.get_mut(&build).unwrap().runner_id = Some(gid));
    h.gitlab.set_status(build, "running").await;
}

impl Two {
    async fn runs_on(&self, build: u64, runner: &Runner) {
        runs_on(&self.h, build, runner).await
    }

    async fn runner(&self, id: &str) -> Runner {
        self.store.runner(id).await.unwrap().unwrap().item
    }

    async fn job(&self, build: u64) -> gosling_state::GitLabJob {
        let k = key(&self.h, build);
        self.store.gitlab_job(&k).await.unwrap().unwrap().item
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_made_for_a_job_taken_by_another_runner_serves_that_runners_job() {
    let t = two_jobs_with_their_runners().await;
    let (kx, ky) = (key(&t.h, t.x), key(&t.h, t.y));
    // Y's runner takes X.
    t.runs_on(t.x, &t.ry).await;
    eventually(LIMIT, "Y counted on X's runner", || async {
        t.job(t.y).await.runner_id.as_deref() == Some(t.gx.id.as_str())
    })
    .await;
    assert_eq!(t.runner(&t.gx.id).await.open_jobs, vec![ky.clone()]);
    assert_eq!(t.runner(&t.ry.id).await.open_jobs, vec![kx.clone()]);
    assert_eq!(
        t.job(t.x).await.runner_id.as_deref(),
        Some(t.ry.id.as_str())
    );
    let audit = t.store.audit_logs().await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "handed_over" && a.resource_id == t.gx.id),
        "the hand-over is in the audit log"
    );

    // Both jobs run to the end, each on one runner; no third runner is made.
    t.h.gitlab.set_status(t.x, "success").await;
    t.runs_on(t.y, &t.gx).await;
    t.h.gitlab.set_status(t.y, "success").await;
    let store = t.store.clone();
    eventually(LIMIT, "both runners ended", || async {
        runners_in(&*store, "terminated").await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.store.runners().await.unwrap().len(),
        2,
        "no runner made twice"
    );
    assert_eq!(t.job(t.x).await.status, "finished");
    assert_eq!(t.job(t.y).await.status, "finished");
    t.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_runner_took_another_job_gets_a_new_one_when_no_runner_is_free() {
    let t = two_jobs_with_their_runners().await;
    // X's runner is ended (by an operator) before GitLab gives X to Y's runner.
    t.app
        .lifecycle
        .request(&t.gx.id, "operator", true)
        .await
        .unwrap();
    t.app.lifecycle.remove(&t.gx.id, None).await.unwrap();
    t.runs_on(t.x, &t.ry).await;
    let store = t.store.clone();
    eventually(LIMIT, "a third runner, for Y", || async {
        store.runners().await.unwrap().len() == 3
    })
    .await;
    let y = t.job(t.y).await;
    let third = y.runner_id.clone().expect("Y has a runner");
    assert!(third != t.gx.id && third != t.ry.id, "{y:?}");
    assert_eq!(y.attempts, 2, "{y:?}");
    assert_eq!(t.runner(&third).await.open_jobs, vec![key(&t.h, t.y)]);
    t.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_runners_keep_being_taken_before_their_hooks_are_read_is_not_given_up() {
    let (h, _app, running, ids) = jobs_with_their_runners(&["y"]).await;
    let y = ids[0];
    let store = h.store.clone();
    // Each time, a job X is pending at GitLab but its Job Hook has not been read when Y's
    // runner takes it: MotherGoose first hears of X as running, and made no runner for it.
    // Y gets a new runner each time; runners taken by other jobs are not failed attempts.
    for taken in 1..=MAX_ATTEMPTS as usize {
        let ry = runner_of(&h, y).await;
        let x = h.gitlab.add_job(7, "x", &["docker"]).id;
        runs_on(&h, x, &ry).await;
        eventually(LIMIT, "a new runner for Y", || async {
            store.runners().await.unwrap().len() == taken + 1
        })
        .await;
        let xj = store.gitlab_job(&key(&h, x)).await.unwrap().unwrap().item;
        assert_eq!((xj.status.as_str(), xj.runner_id), ("running", Some(ry.id)));
        // X's own hook, read late, makes no runner.
        h.gitlab.deliver_stale(x, "pending").await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.runners().await.unwrap().len(),
        MAX_ATTEMPTS as usize + 1
    );
    let yj = store.gitlab_job(&key(&h, y)).await.unwrap().unwrap().item;
    assert_eq!(yj.status, "provisioning", "{yj:?}");
    assert_eq!(yj.attempts, MAX_ATTEMPTS + 1, "{yj:?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_job_ended_elsewhere_serves_the_job_waiting_for_room() {
    // Two runners, the egg's limit; the third job waits for room.
    let (h, _app, running, ids) = jobs_within(&["x", "y", "z"], 2).await;
    let store = h.store.clone();
    let mut waiting = Vec::new();
    for id in &ids {
        let j = store.gitlab_job(&key(&h, *id)).await.unwrap().unwrap().item;
        if j.runner_id.is_none() {
            waiting.push(*id);
        }
    }
    let [z] = waiting[..] else {
        panic!("one job waits: {waiting:?}")
    };
    let y = *ids.iter().find(|id| **id != z).unwrap();
    let ry = runner_of(&h, y).await;
    // Y is canceled before any runner took it: its runner serves Z; no third one is made.
    h.gitlab.set_status(y, "canceled").await;
    eventually(LIMIT, "Z counts on Y's runner", || async {
        let zj = store.gitlab_job(&key(&h, z)).await.unwrap().unwrap().item;
        zj.runner_id.as_deref() == Some(ry.id.as_str())
    })
    .await;
    let r = store.runner(&ry.id).await.unwrap().unwrap().item;
    assert_eq!(r.open_jobs, vec![key(&h, z)]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.runners().await.unwrap().len(), 2, "no third runner");
    let audit = store.audit_logs().await.unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "handed_over" && a.resource_id == ry.id));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_whose_job_ended_elsewhere_is_ended_when_no_job_waits() {
    let t = two_jobs_with_their_runners().await;
    t.h.gitlab.set_status(t.y, "canceled").await;
    let store = t.store.clone();
    let ry = t.ry.id.clone();
    eventually(LIMIT, "Y's runner ended", || async {
        store.runner(&ry).await.unwrap().unwrap().item.state == "terminated"
    })
    .await;
    assert_ne!(
        t.runner(&t.gx.id).await.state,
        "terminated",
        "X's runner stays"
    );
    t.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_gitlab_gave_a_runner_being_ended_before_its_hook_was_read_gets_no_new_runner() {
    let t = two_jobs_with_their_runners().await;
    // X's runner is being ended (an operator asked); before its machine is removed,
    // GitLab gives it Y — whose Job Hook saying so is not read yet.
    let step = t
        .app
        .lifecycle
        .request(&t.gx.id, "operator", false)
        .await
        .unwrap();
    assert_eq!(step, gosling_fleet::Step::Remove);
    let gid = t.gx.gitlab_runner_id.expect("registered");
    t.h.gitlab.with(|w| {
        let y = w.jobs.get_mut(&t.y).unwrap();
        y.runner_id = Some(gid);
        y.status = "running".into();
    });
    // Y's runner takes X: no runner is free for Y, but GitLab says Y runs already.
    t.runs_on(t.x, &t.ry).await;
    eventually(LIMIT, "Y recorded as running on X's runner", || async {
        let y = t.job(t.y).await;
        y.status == "running" && y.runner_id.as_deref() == Some(t.gx.id.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.store.runners().await.unwrap().len(),
        2,
        "no runner made for a job that runs"
    );
    t.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_goes_to_a_runner_that_is_up_without_a_job() {
    let (h, _app, running, ids) = jobs_with_their_runners(&["y"]).await;
    let store = h.store.clone();
    let ry = runner_of(&h, ids[0]).await;
    // It is up and its job ran elsewhere a moment ago (as `handover` records it); it has
    // not been drained yet when job Z arrives: Z counts on it, no runner is made for Z.
    let v = store.runner(&ry.id).await.unwrap().unwrap();
    let mut free = v.item.clone();
    free.state = "active".into();
    free.open_jobs.clear();
    store
        .put_runner(&free, gosling_state::Expect::Version(v.version))
        .await
        .unwrap();
    let (z, _) = h.gitlab.create_job(7, "z", &["docker"]).await;
    eventually(LIMIT, "Z counts on the free runner", || async {
        let zj = store.gitlab_job(&key(&h, z.id)).await.unwrap();
        zj.and_then(|j| j.item.runner_id).as_deref() == Some(ry.id.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.runners().await.unwrap().len(),
        1,
        "no runner made for Z"
    );
    let r = store.runner(&ry.id).await.unwrap().unwrap().item;
    assert_eq!(r.open_jobs, vec![key(&h, z.id)]);
    running.stop().await;
}
