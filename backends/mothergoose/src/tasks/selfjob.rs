//! `execute_self_management_job`: run a cron Job once, for one scheduled time, on a runner
//! of the type and tags it asks for (`gosling runner --job NAME`), and record how it ended.

use super::deploy::{new_runner, provision, runner_id_for};
use super::{enqueue, TaskError};
use crate::app::App;
use chrono::{DateTime, Utc};
use gosling_api::JobResult;
use gosling_fleet::{Step, Task};
use gosling_state::{ts, Expect, JobRecord, Runner, StateError, Versioned};
use serde_json::json;
use std::time::Duration;

/// The key of a Job's run for one scheduled time.
pub fn run_key(job: &str, scheduled_for: DateTime<Utc>) -> String {
    format!("cron:{job}:{}", scheduled_for.timestamp())
}

async fn update_record<F>(app: &App, name: &str, mut change: F) -> Result<(), TaskError>
where
    F: FnMut(&mut JobRecord),
{
    for _ in 0..8 {
        let Some(Versioned { mut item, version }) = app.store.job(name).await? else {
            return Ok(());
        };
        change(&mut item);
        match app.store.put_job(&item, Expect::Version(version)).await {
            Ok(_) => return Ok(()),
            Err(StateError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(TaskError::Contended(format!(
        "job {name}: too many concurrent changes"
    )))
}

/// Runs `execute_self_management_job`.
pub async fn execute(app: &App, name: &str, scheduled_for: DateTime<Utc>) -> Result<(), TaskError> {
    let Some(d) = app.deployed.current() else {
        return Err(TaskError::Permanent("nothing is deployed".into()));
    };
    let Some(job) = d.ir.jobs.iter().find(|j| j.name == name).cloned() else {
        return Err(TaskError::Permanent(format!(
            "job `{name}` is not deployed"
        )));
    };
    let attempt = app
        .store
        .job(name)
        .await?
        .filter(|j| j.item.scheduled_for == Some(scheduled_for))
        .map_or(1, |j| j.item.attempt.max(1));
    let key = run_key(name, scheduled_for);
    let id = runner_id_for(&key, attempt);
    if app.store.runner(&id).await?.is_none() {
        let egg = d.ir.eggs.iter().find(|e| {
            e.kind == job.runner.kind && job.runner.tags.iter().all(|t| e.runner.tags.contains(t))
        });
        let Some(egg) = egg else {
            let reason = format!(
                "no egg provides a {:?} runner with tags {:?}",
                job.runner.kind, job.runner.tags
            );
            record_failure(app, name, scheduled_for, &reason).await?;
            return Ok(());
        };
        let mut r = new_runner(app, &id, egg, true);
        r.self_job = Some(name.to_string());
        r.metadata["scheduled_for"] = json!(ts::format(&scheduled_for));
        r.metadata["run"] = json!(key);
        match app.fleet.create(&r, json!({ "job": name, "scheduled_for": ts::format(&scheduled_for), "attempt": attempt }), vec![]).await {
            Ok(()) | Err(gosling_fleet::FleetError::State(StateError::Conflict { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        update_record(app, name, |j| {
            if j.scheduled_for == Some(scheduled_for) || j.scheduled_for.is_none() {
                j.status = "running".into();
            }
        })
        .await?;
    }
    provision(app, &id).await
}

async fn record_failure(
    app: &App,
    name: &str,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<(), TaskError> {
    update_record(app, name, |j| {
        j.status = "failed".into();
        j.notified = false;
        j.last_result =
            Some(json!({ "success": false, "error": reason, "scheduled_for": ts::format(&at) }));
    })
    .await?;
    app.fleet
        .record("job_failed", "job", name, json!({ "reason": reason }))
        .await?;
    Ok(())
}

/// Records how a self-management job's run ended, then ends its runner (the job is over,
/// so nothing runs on it any more).
pub async fn record_result(
    app: &App,
    runner: &Runner,
    result: &JobResult,
) -> Result<(), crate::http::ApiErr> {
    let status = if result.success {
        "succeeded"
    } else {
        "failed"
    };
    let mut tail = result.output_tail.clone();
    if tail.len() > 4096 {
        let cut = tail.len() - 4096;
        let start = (cut..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(tail.len());
        tail = tail[start..].to_string();
    }
    let last = json!({
        "success": result.success,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "started_at": ts::format(&result.started_at),
        "finished_at": ts::format(&result.finished_at),
        "runner_id": runner.id,
        "output_tail": tail,
    });
    update_record(app, &result.job, |j| {
        j.status = status.into();
        j.last_run = Some(result.finished_at);
        j.last_result = Some(last.clone());
        j.notified = false;
    })
    .await
    .map_err(|e| crate::http::ApiErr::unavailable(format!("{e:?}")))?;
    app.fleet
        .record(&format!("job_{status}"), "job", &result.job, json!({ "runner": runner.id, "exit_code": result.exit_code, "timed_out": result.timed_out }))
        .await?;
    if app
        .lifecycle
        .request(&runner.id, "its job finished", true)
        .await?
        == Step::Remove
    {
        let t = Task::TerminateRunner {
            runner_id: runner.id.clone(),
            reason: "its job finished".into(),
            force: true,
        };
        enqueue(app, &t, Duration::ZERO, true)
            .await
            .map_err(|e| crate::http::ApiErr::unavailable(format!("{e:?}")))?;
    }
    Ok(())
}
