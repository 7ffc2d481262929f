//! `process_webhook` and `poll_pending`: what a GitLab event means for the runners.
//!
//! A job that needs a runner gets exactly one: its `gitlab_jobs` record is created
//! conditionally (absent → pending), so however often the event is delivered — replayed,
//! duplicated, arriving as a Job Hook and inside a Pipeline Hook, or found by the
//! reconciler — only the first creation queues a `deploy_runner`, and `deploy_runner`
//! itself makes one runner per record.

use super::{enqueue, project_timeout, TaskError};
use crate::app::App;
use crate::matching::{eggs_for_project, host_of, route, serves, Expected};
use chrono::{DateTime, Utc};
use fly_ir::{Egg, RunnerKind};
use gosling_fleet::{state_of, Edit, RunnerState, Step, Task};
use gosling_gitlab::{is_final_status, Event, GitLabError, Job, JobHook};
use gosling_state::{Expect, GitLabJob, StateError, Versioned, WebhookEvent};
use serde_json::{json, Value};
use std::time::Duration;

/// Acts on one webhook delivery (at most once in effect: see the module docs).
pub async fn process(
    app: &App,
    delivery: &str,
    event_name: &str,
    instance: Option<&str>,
    received_at: DateTime<Utc>,
    payload: Value,
) -> Result<(), TaskError> {
    let event = Event::from_value(payload).map_err(|e| TaskError::Permanent(e.to_string()))?;
    if !begin(app, delivery, &event, received_at).await? {
        return Ok(());
    }
    app.metrics.inc("mothergoose_events_total", event.kind());
    let host = instance.map(host_of).or_else(|| web_host(&event));
    let summary = match &event {
        Event::Job(j) => job_event(app, host.as_deref(), j).await?,
        Event::Pipeline(p) => {
            let mut started = Vec::new();
            for b in p.builds.iter().filter(|b| b.status == "pending") {
                started.push(pending(app, host.as_deref(), p.project.id, b.id, None).await?);
            }
            json!({ "pipeline": p.object_attributes.id, "status": p.object_attributes.status, "pending_jobs": started })
        }
        Event::Push(_) | Event::MergeRequest(_) => {
            other_event(app, host.as_deref(), &event).await?
        }
    };
    if !matches!(event, Event::Job(_)) {
        // Property 26: pipeline, push and merge request events are recorded and acted on.
        app.fleet
            .record(
                event.kind(),
                "project",
                &event.project_id().to_string(),
                json!({ "delivery": delivery, "event": event_name, "summary": summary }),
            )
            .await?;
    }
    finish(app, delivery, summary).await
}

fn web_host(event: &Event) -> Option<String> {
    let url = match event {
        Event::Job(j) => j.project.as_ref()?.web_url.clone()?,
        Event::Pipeline(p) => p.project.web_url.clone()?,
        Event::MergeRequest(m) => m.project.web_url.clone()?,
        Event::Push(_) => return None,
    };
    Some(host_of(&url))
}

/// Records the delivery as being processed; `false` when a previous delivery of it was
/// processed to the end (a replay: nothing to do).
async fn begin(
    app: &App,
    delivery: &str,
    event: &Event,
    at: DateTime<Utc>,
) -> Result<bool, TaskError> {
    let record = WebhookEvent {
        id: delivery.to_string(),
        kind: event.kind().into(),
        project_id: event.project_id(),
        received_at: at,
        status: "processing".into(),
        summary: Value::Null,
    };
    match app.store.put_webhook_event(&record, Expect::Absent).await {
        Ok(_) => Ok(true),
        Err(StateError::Conflict { .. }) => Ok(app
            .store
            .webhook_event(delivery)
            .await?
            .is_none_or(|e| e.item.status != "done")),
        Err(e) => Err(e.into()),
    }
}

async fn finish(app: &App, delivery: &str, summary: Value) -> Result<(), TaskError> {
    if let Some(mut e) = app.store.webhook_event(delivery).await? {
        e.item.status = "done".into();
        e.item.summary = summary;
        match app
            .store
            .put_webhook_event(&e.item, Expect::Version(e.version))
            .await
        {
            Ok(_) | Err(StateError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn job_event(app: &App, host: Option<&str>, j: &JobHook) -> Result<Value, TaskError> {
    match j.build_status.as_str() {
        "pending" => pending(app, host, j.project_id, j.build_id, None).await,
        "running" => running(app, host, j).await,
        s if is_final_status(s) => finished(app, host, j).await,
        other => Ok(json!({ "build": j.build_id, "status": other, "action": "none" })),
    }
}

/// Records that no egg serves something, with why (audit entry and metric).
async fn unmatched(app: &App, what: &str, reason: &str, metric: &str) -> Result<Value, TaskError> {
    app.metrics.inc("mothergoose_unmatched_total", metric);
    app.fleet
        .record("unmatched", "gitlab_job", what, json!({ "reason": reason }))
        .await?;
    Ok(json!({ "job": what, "action": "none", "reason": reason }))
}

/// The deployment's eggs for a project, and the key its jobs are recorded under.
fn candidates(
    app: &App,
    host: Option<&str>,
    project: u64,
) -> (Vec<Egg>, Option<std::sync::Arc<gosling_fleet::Deployed>>) {
    let Some(d) = app.deployed.current() else {
        return (Vec::new(), None);
    };
    let eggs = eggs_for_project(&d.ir, project, host)
        .into_iter()
        .cloned()
        .collect();
    (eggs, Some(d))
}

/// A job is waiting for a runner: route it to an egg and queue its runner, once.
/// `known` is the job when the caller already read it from GitLab.
pub async fn pending(
    app: &App,
    host: Option<&str>,
    project: u64,
    build: u64,
    known: Option<Job>,
) -> Result<Value, TaskError> {
    let (eggs, d) = candidates(app, host, project);
    let (Some(first), Some(d)) = (eggs.first(), d) else {
        return unmatched(
            app,
            &format!("{project}/{build}"),
            &format!("no egg serves project {project}"),
            "unknown_project",
        )
        .await;
    };
    let key = GitLabJob::key(&first.gitlab.url, project, build);
    if let Some(existing) = app.store.gitlab_job(&key).await? {
        if existing.item.status == "pending" {
            enqueue(
                app,
                &Task::DeployRunner { job: key.clone() },
                Duration::ZERO,
                false,
            )
            .await?;
        }
        return Ok(json!({ "job": key, "action": "none", "status": existing.item.status }));
    }
    let job = match known {
        Some(j) => j,
        None => match fetch_job(app, first, project, build).await {
            Ok(j) => j,
            Err(e) if e.is_transient() => return Err(gitlab_retry(app, e)),
            Err(e) => {
                return unmatched(
                    app,
                    &key,
                    &format!("GitLab cannot show the job: {e}"),
                    "gitlab_refused",
                )
                .await
            }
        },
    };
    let now = app.clock.now();
    let mut record = GitLabJob {
        id: key.clone(),
        gitlab_url: first.gitlab.url.clone(),
        project_id: project,
        build_id: build,
        status: "pending".into(),
        gitlab_status: job.status.clone(),
        egg_name: None,
        runner_id: None,
        tags: job.tag_list.clone(),
        attempts: 0,
        taken_by_others: 0,
        created_at: now,
        updated_at: now,
        reason: None,
    };
    if job.status != "pending" {
        record.status = if is_final_status(&job.status) {
            "finished"
        } else {
            "running"
        }
        .into();
        record.reason = Some(format!("GitLab says the job is {}", job.status));
        return remember(app, &record).await;
    }
    let serving: Vec<&Egg> = eggs.iter().filter(|e| serves(e, &job.tag_list)).collect();
    let both = serving.iter().any(|e| e.kind == RunnerKind::Vm)
        && serving.iter().any(|e| e.kind == RunnerKind::Serverless);
    let expected = if both {
        project_timeout(app, first).await
    } else {
        Expected::Unknown
    };
    match route(&d.ir, project, host, &job.tag_list, expected) {
        Ok(egg) => {
            record.egg_name = Some(egg.name.clone());
            let created = remember(app, &record).await?;
            if record_is_new(&created) {
                enqueue(
                    app,
                    &Task::DeployRunner { job: key.clone() },
                    Duration::ZERO,
                    false,
                )
                .await?;
            }
            Ok(
                json!({ "job": key, "egg": egg.name, "action": "deploy_runner", "expected": format!("{expected:?}") }),
            )
        }
        Err(reason) => {
            record.status = "unmatched".into();
            record.reason = Some(reason.clone());
            remember(app, &record).await?;
            unmatched(app, &key, &reason, "no_egg_for_tags").await
        }
    }
}

fn record_is_new(v: &Value) -> bool {
    v.get("created").and_then(Value::as_bool).unwrap_or(false)
}

/// Creates the job's record if it has none; says whether this call created it.
async fn remember(app: &App, record: &GitLabJob) -> Result<Value, TaskError> {
    match app.store.put_gitlab_job(record, Expect::Absent).await {
        Ok(_) => Ok(json!({ "job": record.id, "status": record.status, "created": true })),
        Err(StateError::Conflict { .. }) => Ok(json!({ "job": record.id, "created": false })),
        Err(e) => Err(e.into()),
    }
}

async fn fetch_job(app: &App, egg: &Egg, project: u64, build: u64) -> Result<Job, GitLabError> {
    let gl = app
        .registry
        .client(&*app.store, &egg.gitlab.token_secret)
        .await
        .map_err(|e| GitLabError::Unreachable {
            method: "GET",
            url: egg.gitlab.url.clone(),
            attempts: 0,
            message: format!("no token: {e}"),
        })?;
    gl.job(&egg.gitlab.url, project, build).await
}

fn gitlab_retry(app: &App, e: GitLabError) -> TaskError {
    app.metrics.inc("mothergoose_gitlab_errors_total", "job");
    TaskError::retry(format!("GitLab: {e}"))
}

/// Changes a job's record with `change` (read-modify-write, conflicts retried); creates it
/// from `fresh` when it does not exist (a final event that arrived before the pending one).
async fn update_job<F>(
    app: &App,
    key: &str,
    fresh: impl Fn() -> GitLabJob,
    mut change: F,
) -> Result<GitLabJob, TaskError>
where
    F: FnMut(&mut GitLabJob),
{
    for _ in 0..8 {
        let (mut job, expect) = match app.store.gitlab_job(key).await? {
            Some(Versioned { item, version }) => (item, Expect::Version(version)),
            None => (fresh(), Expect::Absent),
        };
        change(&mut job);
        job.updated_at = app.clock.now();
        match app.store.put_gitlab_job(&job, expect).await {
            Ok(_) => return Ok(job),
            Err(StateError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TaskError::Contended(format!(
        "job {key}: too many concurrent changes"
    )))
}

fn tombstone(app: &App, egg: &Egg, j: &JobHook) -> GitLabJob {
    let now = app.clock.now();
    GitLabJob {
        id: GitLabJob::key(&egg.gitlab.url, j.project_id, j.build_id),
        gitlab_url: egg.gitlab.url.clone(),
        project_id: j.project_id,
        build_id: j.build_id,
        status: "finished".into(),
        gitlab_status: j.build_status.clone(),
        egg_name: None,
        runner_id: None,
        tags: Vec::new(),
        attempts: 0,
        taken_by_others: 0,
        created_at: now,
        updated_at: now,
        reason: None,
    }
}

async fn running(app: &App, host: Option<&str>, j: &JobHook) -> Result<Value, TaskError> {
    let (eggs, _) = candidates(app, host, j.project_id);
    let Some(egg) = eggs.first() else {
        return Ok(
            json!({ "build": j.build_id, "action": "none", "reason": "no egg serves the project" }),
        );
    };
    let key = GitLabJob::key(&egg.gitlab.url, j.project_id, j.build_id);
    let ran_by = our_runner(app, &eggs, &key, j).await?;
    if let Some(id) = &ran_by {
        super::handover::follow(app, &key, id).await?;
    }
    let fresh = || GitLabJob {
        status: "running".into(),
        ..tombstone(app, egg, j)
    };
    let mut given_to = None;
    update_job(app, &key, fresh, |r| {
        given_to = r.runner_id.clone();
        if !matches!(r.status.as_str(), "finished" | "unmatched") {
            r.status = "running".into();
        }
        r.gitlab_status = j.build_status.clone();
        if let Some(id) = &ran_by {
            r.runner_id = Some(id.clone());
        }
    })
    .await?;
    if ran_by.is_some() {
        let_go(app, given_to, ran_by.as_deref(), &key, j).await?;
    }
    Ok(json!({ "job": key, "status": "running", "runner": ran_by }))
}

/// Our runner that took the job (by GitLab's runner id), if it is one of ours.
async fn our_runner(
    app: &App,
    eggs: &[Egg],
    key: &str,
    j: &JobHook,
) -> Result<Option<String>, TaskError> {
    let Some(gid) = j.runner.as_ref().map(|r| r.id) else {
        return Ok(None);
    };
    let ours = |r: &Versioned<gosling_state::Runner>| {
        r.item.gitlab_runner_id == Some(gid) && eggs.iter().any(|e| e.name == r.item.egg_name)
    };
    // Usually the runner the job was given, else a live one; one that has ended since is
    // looked for in the eggs' history.
    if let Some(given) = app
        .store
        .gitlab_job(key)
        .await?
        .and_then(|x| x.item.runner_id)
    {
        if let Some(r) = app.store.runner(&given).await?.filter(|r| ours(r)) {
            return Ok(Some(r.item.id));
        }
    }
    if let Some(r) = gosling_fleet::unended_runners(&*app.store, None)
        .await?
        .into_iter()
        .find(ours)
    {
        return Ok(Some(r.item.id));
    }
    for egg in eggs {
        if let Some(r) = app
            .store
            .runners_by_egg(&egg.name)
            .await?
            .into_iter()
            .find(ours)
        {
            return Ok(Some(r.item.id));
        }
    }
    Ok(None)
}

/// Failure reasons that say the runner, not the job's script, failed.
fn runner_fault(reason: Option<&str>) -> bool {
    matches!(
        reason,
        Some(
            "runner_system_failure"
                | "stuck_or_timeout_failure"
                | "runner_unsupported"
                | "scheduler_failure"
                | "data_integrity_failure"
                | "unknown_failure"
        )
    )
}

async fn finished(app: &App, host: Option<&str>, j: &JobHook) -> Result<Value, TaskError> {
    let (eggs, _) = candidates(app, host, j.project_id);
    let Some(egg) = eggs.first() else {
        return Ok(
            json!({ "build": j.build_id, "action": "none", "reason": "no egg serves the project" }),
        );
    };
    let key = GitLabJob::key(&egg.gitlab.url, j.project_id, j.build_id);
    let ran_by = our_runner(app, &eggs, &key, j).await?;
    if let Some(id) = &ran_by {
        super::handover::follow(app, &key, id).await?;
    }
    let mut given_to = None;
    update_job(
        app,
        &key,
        || tombstone(app, egg, j),
        |r| {
            given_to = r.runner_id.clone();
            r.status = "finished".into();
            r.gitlab_status = j.build_status.clone();
            r.reason = j.build_failure_reason.clone();
            if let Some(id) = &ran_by {
                r.runner_id = Some(id.clone());
            }
        },
    )
    .await?;
    let_go(app, given_to, ran_by.as_deref(), &key, j).await?;
    let mut action = "none";
    if let Some(id) = &ran_by {
        let failed = j.build_status == "failed" && runner_fault(j.build_failure_reason.as_deref());
        let r = release(app, id, &key, failed, j).await?;
        if r.item.ephemeral && state_of(&r.item) != RunnerState::Terminated {
            // Property 13: a single-job runner is cleaned up once its job ends. It takes
            // one job only (`run-single --max-builds 1`), so nothing runs on it any more.
            action = "terminate_runner";
            if app.lifecycle.request(id, "its job finished", true).await? == Step::Remove {
                enqueue(
                    app,
                    &Task::TerminateRunner {
                        runner_id: id.clone(),
                        reason: "its job finished".into(),
                        force: false,
                    },
                    Duration::ZERO,
                    true,
                )
                .await?;
            }
        }
    }
    Ok(json!({ "job": key, "status": j.build_status, "runner": ran_by, "action": action }))
}

/// Job `key` no longer waits for the runner it was given (it ran on another, or ended):
/// that runner lets go of it and, left with nothing to do, serves another waiting job or
/// ends (see [`handover::freed`](super::handover::freed)).
async fn let_go(
    app: &App,
    given: Option<String>,
    ran_by: Option<&str>,
    key: &str,
    j: &JobHook,
) -> Result<(), TaskError> {
    let Some(g) = given.filter(|g| Some(g.as_str()) != ran_by) else {
        return Ok(());
    };
    release(app, &g, key, false, j).await?;
    super::handover::freed(app, &g).await
}

/// Takes a finished job off a runner's open jobs (and counts a runner failure).
async fn release(
    app: &App,
    id: &str,
    key: &str,
    failed: bool,
    j: &JobHook,
) -> Result<Versioned<gosling_state::Runner>, TaskError> {
    let r = app
        .fleet
        .edit(id, |r, _| {
            let open = r.open_jobs.len();
            r.open_jobs.retain(|k| k != key);
            let ran_it = j.runner.as_ref().map(|x| x.id) == r.gitlab_runner_id;
            if ran_it && r.jobs.last().map(String::as_str) != Some(key) {
                r.jobs.push(key.to_string());
            }
            if failed {
                r.failure_count += 1;
            }
            if open == r.open_jobs.len() && !failed && !ran_it {
                return Ok(Edit::Keep);
            }
            Ok(Edit::Write(failed.then(|| {
                (
                    "job_failed".into(),
                    json!({ "job": key, "reason": j.build_failure_reason }),
                )
            })))
        })
        .await?;
    Ok(r)
}

async fn other_event(app: &App, host: Option<&str>, event: &Event) -> Result<Value, TaskError> {
    // A push or a merge request usually creates a pipeline: ask GitLab for pending jobs
    // shortly, so a lost Job Hook cannot leave a job without a runner.
    let (eggs, _) = candidates(app, host, event.project_id());
    let mut polls = Vec::new();
    for url in eggs
        .iter()
        .map(|e| e.gitlab.url.clone())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let t = Task::PollPending {
            gitlab_url: url.clone(),
            project_id: event.project_id(),
        };
        enqueue(app, &t, Duration::from_secs(10), true).await?;
        polls.push(url);
    }
    Ok(json!({ "kind": event.kind(), "polls": polls }))
}

/// The reconciler's question about a job whose record says it runs though its runner has
/// ended (its final hook was lost, e.g. while MotherGoose was down): when GitLab says it
/// has ended, that is acted on as its final hook would have been. Whether it had.
pub async fn refresh_job(app: &App, record: &GitLabJob) -> Result<bool, TaskError> {
    let Some((host, job)) = job_now(app, record).await? else {
        return Ok(false);
    };
    if !is_final_status(&job.status) {
        return Ok(false);
    }
    finished(app, Some(&host), &hook_of(record.project_id, job)).await?;
    Ok(true)
}

/// The job of `record` as GitLab has it now, with GitLab's host (`None`: no egg serves
/// its project any more, or GitLab does not know it).
async fn job_now(app: &App, record: &GitLabJob) -> Result<Option<(String, Job)>, TaskError> {
    let host = host_of(&record.gitlab_url);
    let (eggs, _) = candidates(app, Some(&host), record.project_id);
    let Some(egg) = eggs.first() else {
        return Ok(None);
    };
    match fetch_job(app, egg, record.project_id, record.build_id).await {
        Ok(j) => Ok(Some((host, j))),
        Err(e) if e.is_transient() => Err(gitlab_retry(app, e)),
        Err(_) => Ok(None),
    }
}

/// Asked before a job that lost its runner to another job is given another: GitLab may
/// have given it to another of our runners already, its running hook not read yet (hooks
/// are read late after a store outage or under load). Then that hook's work is done now
/// and no runner is made. Whether GitLab says the job is no longer waiting.
pub async fn started_elsewhere(app: &App, record: &GitLabJob) -> Result<bool, TaskError> {
    let Some((host, job)) = job_now(app, record).await? else {
        return Ok(false);
    };
    if is_final_status(&job.status) {
        finished(app, Some(&host), &hook_of(record.project_id, job)).await?;
    } else if job.status == "running" {
        running(app, Some(&host), &hook_of(record.project_id, job)).await?;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// The Job Hook GitLab would have sent for `job` as it stands.
fn hook_of(project_id: u64, job: Job) -> JobHook {
    JobHook {
        build_id: job.id,
        build_status: job.status,
        build_name: job.name,
        build_stage: job.stage,
        build_duration: job.duration,
        build_failure_reason: None,
        pipeline_id: None,
        project_id,
        project: None,
        runner: job.runner.map(|r| gosling_gitlab::hooks::HookRunner {
            id: r.id,
            description: Some(r.description),
            tags: Vec::new(),
        }),
        retries_count: None,
    }
}

/// The reconciler: every pending job of the project that has no record yet goes the same
/// way as a Job Hook would have sent it.
pub async fn poll_pending(app: &App, gitlab_url: &str, project: u64) -> Result<(), TaskError> {
    let host = host_of(gitlab_url);
    let (eggs, _) = candidates(app, Some(&host), project);
    let Some(egg) = eggs.first() else {
        return Ok(());
    };
    let gl = match app
        .registry
        .client(&*app.store, &egg.gitlab.token_secret)
        .await
    {
        Ok(gl) => gl,
        // A token the store or Vault cannot give now may come back; a missing one not.
        Err(e) if e.is_transient() => {
            return Err(TaskError::retry(format!("egg {}: {e}", egg.name)))
        }
        Err(e) => return Err(TaskError::Permanent(format!("egg {}: {e}", egg.name))),
    };
    let jobs = match gl.pending_jobs(gitlab_url, project).await {
        Ok(j) => j,
        Err(e) if e.is_transient() => return Err(gitlab_retry(app, e)),
        Err(e) => return Err(TaskError::Permanent(format!("listing pending jobs: {e}"))),
    };
    for job in jobs {
        let key = GitLabJob::key(gitlab_url, project, job.id);
        if app.store.gitlab_job(&key).await?.is_none() {
            pending(app, Some(&host), project, job.id, Some(job)).await?;
        }
    }
    Ok(())
}
