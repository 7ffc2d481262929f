//! The reconciler: what keeps "a job that needs a runner gets exactly one" true when
//! webhooks are lost and processes die. Every interval (and once at start, which is the
//! restart recovery of Property 31) it:
//!
//! - asks GitLab for the pending jobs of every deployed egg's project (a lost Job Hook
//!   still gets its runner), and about jobs recorded as running whose runner has ended (a
//!   lost final hook);
//! - re-queues jobs whose runner request stalled, and jobs whose runner died before the
//!   job started;
//! - resumes runners stuck in provisioning (a crash between steps) and fails those whose
//!   machine is gone;
//! - drives terminations that stalled, and ends serverless runners past 60 minutes
//!   (Property 12).

use crate::app::App;
use crate::tasks::{self, deploy, TaskError};
use gosling_fleet::{state_of, RunnerState, Step, Task};
use gosling_state::{Expect, Runner};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long work may sit still before the reconciler takes it up again.
const STALL: Duration = Duration::from_secs(120);
/// Serverless runners live at most this long, plus this grace for their own shutdown.
const SERVERLESS_GRACE: chrono::Duration = chrono::Duration::minutes(5);

fn older_than(app: &App, t: chrono::DateTime<chrono::Utc>, d: Duration) -> bool {
    (app.clock.now() - t).to_std().is_ok_and(|age| age >= d)
}

/// One reconciliation pass; returns what it queued or changed, for the log.
pub async fn pass(app: &App, poll_gitlab: bool) -> Result<usize, TaskError> {
    let mut acted = 0;
    if poll_gitlab {
        acted += poll(app).await?;
        acted += lost_final_hooks(app).await?;
    }
    acted += stalled_jobs(app).await?;
    for r in gosling_fleet::unended_runners(&*app.store, None).await? {
        acted += runner(app, &r.item).await? as usize;
    }
    Ok(acted)
}

async fn poll(app: &App) -> Result<usize, TaskError> {
    let Some(d) = app.deployed.current() else {
        return Ok(0);
    };
    let projects: BTreeSet<(String, u64)> =
        d.ir.eggs
            .iter()
            .map(|e| (e.gitlab.url.clone(), e.gitlab.project_id))
            .collect();
    for (url, project_id) in &projects {
        let t = Task::PollPending {
            gitlab_url: url.clone(),
            project_id: *project_id,
        };
        tasks::enqueue(app, &t, Duration::ZERO, true).await?;
    }
    Ok(projects.len())
}

/// Jobs recorded as running whose runner has ended: GitLab is asked whether they ended
/// too (their final hook may have been lost).
async fn lost_final_hooks(app: &App) -> Result<usize, TaskError> {
    let mut n = 0;
    for j in app.store.gitlab_jobs_by_status("running").await? {
        let runner_ended = match &j.item.runner_id {
            Some(id) => app
                .store
                .runner(id)
                .await?
                .is_none_or(|r| state_of(&r.item) == RunnerState::Terminated),
            None => older_than(app, j.item.updated_at, STALL),
        };
        if !runner_ended {
            continue;
        }
        match crate::tasks::webhook::refresh_job(app, &j.item).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::info!("asking GitLab about job {}: {e:?}", j.item.id),
        }
    }
    Ok(n)
}

async fn stalled_jobs(app: &App) -> Result<usize, TaskError> {
    let mut n = 0;
    for status in ["pending", "provisioning", "assigned"] {
        for j in app.store.gitlab_jobs_by_status(status).await? {
            if !older_than(app, j.item.updated_at, STALL) {
                continue;
            }
            let runner_dead = match &j.item.runner_id {
                Some(id) => app.store.runner(id).await?.is_none_or(|r| {
                    matches!(
                        state_of(&r.item),
                        RunnerState::Terminated | RunnerState::Failed
                    )
                }),
                None => false,
            };
            if status != "pending" && !runner_dead {
                continue;
            }
            if status != "pending" {
                let mut item = j.item.clone();
                item.status = "pending".into();
                item.reason = Some("its runner ended before the job started".into());
                item.updated_at = app.clock.now();
                if app
                    .store
                    .put_gitlab_job(&item, Expect::Version(j.version))
                    .await
                    .is_err()
                {
                    continue;
                }
            }
            tasks::enqueue(
                app,
                &Task::DeployRunner {
                    job: j.item.id.clone(),
                },
                Duration::ZERO,
                true,
            )
            .await?;
            n += 1;
        }
    }
    Ok(n)
}

async fn runner(app: &App, r: &Runner) -> Result<bool, TaskError> {
    let state = state_of(r);
    let quiet = older_than(app, r.updated_at, STALL);
    match state {
        RunnerState::Provisioning if quiet => {
            let stuck = older_than(app, r.created_at, app.settings.provisioning_timeout);
            if stuck && machine_gone(app, r).await {
                app.lifecycle
                    .request(&r.id, "its machine never came up", false)
                    .await?;
                terminate(app, &r.id, false).await?;
            } else {
                deploy::provision(app, &r.id).await?;
            }
            Ok(true)
        }
        RunnerState::Terminating | RunnerState::PendingTermination | RunnerState::Draining
            if quiet =>
        {
            terminate(app, &r.id, false).await?;
            Ok(true)
        }
        s if s.is_live()
            && r.kind == "serverless"
            && r.self_job.is_none()
            && app.clock.now() - r.created_at
                > crate::views::SERVERLESS_LIFETIME + SERVERLESS_GRACE =>
        {
            // Property 12: a serverless runner never outlives the platform's limit.
            if app
                .lifecycle
                .request(&r.id, "serverless runners live at most 60 minutes", true)
                .await?
                == Step::Remove
            {
                terminate(app, &r.id, true).await?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

async fn machine_gone(app: &App, r: &Runner) -> bool {
    let Some(handle) = gosling_fleet::lifecycle::handle_of(r) else {
        return true;
    };
    match app.lifecycle.providers.for_handle(&handle) {
        Ok(p) => matches!(
            p.status(&handle).await,
            Ok(gosling_fleet::MachineStatus::Gone)
        ),
        Err(_) => false,
    }
}

async fn terminate(app: &App, id: &str, force: bool) -> Result<(), TaskError> {
    let t = Task::TerminateRunner {
        runner_id: id.to_string(),
        reason: "reconciler".into(),
        force,
    };
    tasks::enqueue(app, &t, Duration::ZERO, true).await
}

/// Runs [`pass`] now and then every `interval` (asking GitLab only when `interval` > 0)
/// until `shutdown` turns true.
pub async fn run(
    app: std::sync::Arc<App>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let every = if interval.is_zero() {
        Duration::from_secs(30)
    } else {
        interval
    };
    loop {
        match pass(&app, !interval.is_zero()).await {
            Ok(n) if n > 0 => tracing::debug!("reconciler acted on {n} items"),
            Ok(_) => {}
            Err(e) => tracing::warn!("reconciler: {e:?}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
