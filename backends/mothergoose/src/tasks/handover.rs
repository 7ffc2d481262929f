//! When GitLab gives a job to another of our runners than the one made for it.
//!
//! GitLab hands a pending job to any registered runner whose tags fit, so single-job runner
//! R, made for job Y, may take job X while X's own runner G is still on its way. Y has then
//! lost its runner. The accounting follows what GitLab did: R becomes X's, and G — which
//! will take the next fitting job — becomes Y's, so every waiting job still has exactly one
//! runner coming and none is made twice (Property 31). When G cannot serve Y (it is gone,
//! of another egg, or counted on by another job), another free runner of the egg is
//! handed Y; when there is none, Y is given a new runner at once.

use super::{enqueue, TaskError};
use crate::app::App;
use gosling_fleet::runners::{audit_write, runner_doc};
use gosling_fleet::{state_of, RunnerState, Task};
use gosling_state::{to_doc, Expect, GitLabJob, Runner, StateError, Table, Versioned, Write};
use serde_json::json;
use std::time::Duration;

/// Job `x` runs on our runner `ran_by`: if that runner had been made for another job that
/// has not started, hand that job the runner that was made for `x`.
/// X may have no record yet (its pending hook still queued): then no runner was made for
/// it, and Y is handed another free runner or a new one.
pub async fn follow(app: &App, x: &str, ran_by: &str) -> Result<(), TaskError> {
    let given = app
        .store
        .gitlab_job(x)
        .await?
        .and_then(|j| j.item.runner_id);
    if given.as_deref() == Some(ran_by) {
        return Ok(());
    }
    let Some(r) = app.store.runner(ran_by).await? else {
        return Ok(());
    };
    if !r.item.ephemeral {
        // A pool runner runs several jobs: taking X costs no other job its place.
        return Ok(());
    }
    let Some(y) = lost_job(app, &r.item, x).await? else {
        return Ok(());
    };
    let g = free_runner(app, &r.item, given.as_deref(), x).await?;
    let writes = match &g {
        Some(g) => hand_to(app, &y, g, &r, x)?,
        None => requeue(app, &y, &r, x)?,
    };
    match app.store.transact(writes).await {
        Ok(()) => {}
        Err(StateError::Conflict { .. }) => {
            return Err(TaskError::Contended(format!(
                "job {x}: runners changed while handing over"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    if g.is_none() {
        let t = Task::DeployRunner {
            job: y.item.id.clone(),
        };
        enqueue(app, &t, Duration::ZERO, true).await?;
    }
    Ok(())
}

/// Single-job runner `g` has no job left to wait for (the one it was made for ran on
/// another runner or ended): it is handed the egg's job that has waited longest for a
/// runner, or, when none waits, it is ended (drained first: GitLab may be giving it a
/// job this moment).
pub async fn freed(app: &App, g: &str) -> Result<(), TaskError> {
    const REASON: &str = "the job it was made for ran on another runner";
    let Some(gr) = app.store.runner(g).await? else {
        return Ok(());
    };
    if !without_job(&gr.item) {
        return Ok(());
    }
    if let Some(y) = longest_waiting(app, &gr.item.egg_name).await? {
        let mut job = y.item.clone();
        job.status = "provisioning".into();
        let writes = give(app, &job, y.version, &gr, json!({ "because": REASON }))?;
        return match app.store.transact(writes).await {
            Err(StateError::Conflict { .. }) => Err(TaskError::Contended(format!(
                "runner {g}: the runners or the waiting job changed"
            ))),
            r => Ok(r?),
        };
    }
    // Ended in the same write that checks it still has no job (one may be handed to it).
    let step = app
        .lifecycle
        .request_if(g, REASON, false, without_job)
        .await?;
    if step == Some(gosling_fleet::Step::Remove) {
        let t = Task::TerminateRunner {
            runner_id: g.to_string(),
            reason: REASON.into(),
            force: false,
        };
        enqueue(app, &t, Duration::ZERO, true).await?;
    }
    Ok(())
}

/// A new job of `egg` goes to a single-job runner of the egg that is up with no job (the
/// one it was made for ran on another runner): that runner takes the next fitting job
/// from GitLab anyway, so making another for this one would leave one of the two idle.
/// Whether one was given.
pub async fn give_to_free(
    app: &App,
    job: &Versioned<GitLabJob>,
    egg: &str,
) -> Result<bool, TaskError> {
    let up = |r: &Runner| matches!(state_of(r), RunnerState::Active | RunnerState::Idle);
    let Some(g) = gosling_fleet::unended_runners(&*app.store, Some(egg))
        .await?
        .into_iter()
        .find(|r| without_job(&r.item) && up(&r.item))
    else {
        return Ok(false);
    };
    let mut j = job.item.clone();
    j.status = "provisioning".into();
    let because = json!({ "because": "it had no job when this one arrived" });
    match app
        .store
        .transact(give(app, &j, job.version, &g, because)?)
        .await
    {
        Ok(()) => Ok(true),
        Err(StateError::Conflict { .. }) => Err(TaskError::Contended(format!(
            "runner {}: it or job {} changed meanwhile",
            g.item.id, j.id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// A single-job runner, coming or up, that no job counts on.
fn without_job(r: &Runner) -> bool {
    let coming_or_up = matches!(
        state_of(r),
        RunnerState::Provisioning | RunnerState::Active | RunnerState::Idle
    );
    r.ephemeral && r.open_jobs.is_empty() && coming_or_up
}

/// The egg's job that has waited longest for a runner (`pending`: it has none coming).
pub async fn longest_waiting(
    app: &App,
    egg: &str,
) -> Result<Option<Versioned<GitLabJob>>, TaskError> {
    Ok(app
        .store
        .gitlab_jobs_by_status("pending")
        .await?
        .into_iter()
        .filter(|j| j.item.egg_name.as_deref() == Some(egg))
        .min_by_key(|j| j.item.created_at))
}

/// The job runner `r` was made for, other than `x`, that has not started (it has lost `r`).
async fn lost_job(
    app: &App,
    r: &Runner,
    x: &str,
) -> Result<Option<Versioned<GitLabJob>>, TaskError> {
    for key in r.open_jobs.iter().filter(|k| k.as_str() != x) {
        if let Some(j) = app.store.gitlab_job(key).await? {
            let waiting = matches!(j.item.status.as_str(), "provisioning" | "assigned");
            if waiting && j.item.runner_id.as_deref() == Some(r.id.as_str()) {
                return Ok(Some(j));
            }
        }
    }
    Ok(None)
}

/// A runner that can serve in place of `r`: a single-job runner of the same egg, still
/// coming or up, that no waiting or running job is counted on — the one made for `x`
/// (`given`) first.
async fn free_runner(
    app: &App,
    r: &Runner,
    given: Option<&str>,
    x: &str,
) -> Result<Option<Versioned<Runner>>, TaskError> {
    let mut candidates = gosling_fleet::unended_runners(&*app.store, Some(&r.egg_name)).await?;
    candidates.sort_by_key(|c| Some(c.item.id.as_str()) != given);
    for c in candidates {
        let usable = c.item.ephemeral
            && c.item.id != r.id
            && matches!(
                state_of(&c.item),
                RunnerState::Provisioning
                    | RunnerState::Active
                    | RunnerState::Idle
                    | RunnerState::Busy
            );
        if usable && !counted_on(app, &c.item, x).await? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Whether a job other than `x` waits for runner `c` or runs on it.
async fn counted_on(app: &App, c: &Runner, x: &str) -> Result<bool, TaskError> {
    for key in c.open_jobs.iter().filter(|k| k.as_str() != x) {
        if let Some(j) = app.store.gitlab_job(key).await? {
            let open = matches!(
                j.item.status.as_str(),
                "provisioning" | "assigned" | "running"
            );
            if open && j.item.runner_id.as_deref() == Some(c.id.as_str()) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Job `job` (to be written over `version`) counts on runner `g` from now on.
fn give(
    app: &App,
    job: &GitLabJob,
    version: u64,
    g: &Versioned<Runner>,
    mut details: serde_json::Value,
) -> Result<Vec<Write>, TaskError> {
    let mut job = job.clone();
    job.runner_id = Some(g.item.id.clone());
    job.updated_at = app.clock.now();
    let mut given = g.item.clone();
    given.open_jobs = vec![job.id.clone()];
    given.jobs.push(job.id.clone());
    given.updated_at = app.clock.now();
    details["job"] = json!(job.id);
    let audit = app.fleet.audit("handed_over", &given.id, details);
    Ok(vec![
        job_write(&job, version)?,
        runner_write(&given, g.version)?,
        audit_write(&audit)?,
    ])
}

/// Y → G, X → R, in one transaction.
fn hand_to(
    app: &App,
    y: &Versioned<GitLabJob>,
    g: &Versioned<Runner>,
    r: &Versioned<Runner>,
    x: &str,
) -> Result<Vec<Write>, TaskError> {
    let because = format!("runner {} took {x}", r.item.id);
    let details = json!({ "instead_of": x, "because": because });
    let mut writes = give(app, &y.item, y.version, g, details)?;
    writes.push(runner_write(&took(r, &y.item.id, x, app), r.version)?);
    Ok(writes)
}

/// Y waits for a new runner; X → R.
fn requeue(
    app: &App,
    y: &Versioned<GitLabJob>,
    r: &Versioned<Runner>,
    x: &str,
) -> Result<Vec<Write>, TaskError> {
    let yk = y.item.id.clone();
    let mut job = y.item.clone();
    job.status = "pending".into();
    job.runner_id = None;
    job.taken_by_others += 1;
    job.reason = Some(format!("its runner {} took {x}", r.item.id));
    job.updated_at = app.clock.now();
    Ok(vec![
        job_write(&job, y.version)?,
        runner_write(&took(r, &yk, x, app), r.version)?,
    ])
}

/// Runner `r` with job `x` in place of `y`.
fn took(r: &Versioned<Runner>, y: &str, x: &str, app: &App) -> Runner {
    let mut took = r.item.clone();
    took.open_jobs.retain(|k| k != y && k != x);
    took.open_jobs.push(x.to_string());
    took.updated_at = app.clock.now();
    took
}

fn job_write(job: &GitLabJob, version: u64) -> Result<Write, TaskError> {
    Ok(Write::Put {
        table: Table::GitLabJobs,
        doc: to_doc(Table::GitLabJobs, job)?,
        expect: Expect::Version(version),
    })
}

fn runner_write(r: &Runner, version: u64) -> Result<Write, TaskError> {
    Ok(Write::Put {
        table: Table::Runners,
        doc: runner_doc(r)?,
        expect: Expect::Version(version),
    })
}
