//! `deploy_runner`: give a GitLab job its runner, or make a pool runner.
//!
//! Exactly once: the runner's id is derived from the job's record and its attempt, and the
//! runner record is created conditionally in the same transaction that points the job's
//! record at it — a second delivery of the task finds the runner and resumes its
//! provisioning instead of making another. Every provisioning step is idempotent too: the
//! GitLab registration is stored before the machine is made, and providers create
//! machines idempotently by runner id.

use super::{enqueue, TaskError};
use crate::app::App;
use fly_ir::{Egg, RunnerKind};
use gosling_fleet::{
    slots, state_of, Also, Bootstrap, Edit, ProviderError, RunnerSpec, RunnerState, Task,
};
use gosling_state::{to_doc, Expect, GitLabJob, Runner, Table, Versioned};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Runners made for one job before it is given up (not counting those GitLab gave
/// another job).
pub const MAX_ATTEMPTS: u32 = 3;
/// How long a job waits before its egg is asked again for room.
const CAPACITY_WAIT: Duration = Duration::from_secs(15);

pub use gosling_fleet::tasks::runner_id_for;

/// Runs `deploy_runner` for a job record key, or `pool:EGG:NONCE` / `manual:EGG:NONCE`.
pub async fn deploy_runner(app: &App, key: &str) -> Result<(), TaskError> {
    match key.split_once(':') {
        Some(("pool" | "manual", rest)) => {
            let egg = rest.split_once(':').map_or(rest, |(e, _)| e);
            pool_runner(app, key, egg).await
        }
        _ => job_runner(app, key).await,
    }
}

fn current_egg(app: &App, name: &str) -> Option<Egg> {
    app.deployed.current().and_then(|d| d.egg(name).cloned())
}

/// The live runners of an egg (everything but terminated).
async fn live_runners(app: &App, egg: &str) -> Result<Vec<Versioned<Runner>>, TaskError> {
    Ok(gosling_fleet::unended_runners(&*app.store, Some(egg)).await?)
}

async fn job_runner(app: &App, key: &str) -> Result<(), TaskError> {
    let Some(job) = app.store.gitlab_job(key).await? else {
        return Err(TaskError::Permanent(format!("no record of job {key}")));
    };
    if job.item.attempts > 0 {
        // The runner this job's last attempt made goes on being made even when the job
        // ran elsewhere meanwhile: it may have been handed another job (see `handover`).
        let made = runner_id_for(key, job.item.attempts);
        if job.item.runner_id.as_deref() != Some(made.as_str()) {
            if let Some(r) = app.store.runner(&made).await? {
                if state_of(&r.item) == RunnerState::Provisioning {
                    provision(app, &made).await?;
                }
            }
        }
    }
    if matches!(
        job.item.status.as_str(),
        "finished" | "unmatched" | "failed"
    ) {
        return Ok(());
    }
    if let Some(id) = &job.item.runner_id {
        if let Some(r) = app.store.runner(id).await? {
            match state_of(&r.item) {
                RunnerState::Provisioning => return provision(app, id).await,
                RunnerState::Terminated | RunnerState::Failed => {}
                _ => return Ok(()),
            }
        }
        if job.item.status != "pending" {
            // Its runner died before the job started: give it another (the reconciler
            // re-queues such jobs after checking that GitLab still has them pending).
            return Ok(());
        }
    }
    let Some(egg_name) = job.item.egg_name.clone() else {
        return Err(TaskError::Permanent(format!("job {key} has no egg")));
    };
    let Some(egg) = current_egg(app, &egg_name) else {
        give_up(
            app,
            &job,
            &format!("egg `{egg_name}` is no longer deployed"),
        )
        .await?;
        return Ok(());
    };
    if job.item.attempts > 0 && super::webhook::started_elsewhere(app, &job.item).await? {
        // Its runner was taken, and GitLab has given it another of ours meanwhile: asked
        // before any runner is offered, so none is assigned a job already running elsewhere.
        return Ok(());
    }
    if egg.kind == RunnerKind::Vm && assign_to_ready(app, &job, &egg).await? {
        return Ok(());
    }
    if super::handover::give_to_free(app, &job, &egg.name).await? {
        return Ok(());
    }
    let attempt = job.item.attempts + 1;
    if attempt - job.item.taken_by_others.min(job.item.attempts) > MAX_ATTEMPTS {
        give_up(app, &job, "no runner could be made for it").await?;
        return Ok(());
    }
    let id = runner_id_for(key, attempt);
    let Some(slot) = slots::claim(&*app.store, &egg.name, egg.runner.max_runners, &id).await?
    else {
        app.metrics.inc("mothergoose_runners_total", "waiting");
        return Err(TaskError::Later(CAPACITY_WAIT));
    };
    let mut runner = new_runner(app, &id, &egg, egg.kind == RunnerKind::Serverless);
    runner.jobs = vec![key.to_string()];
    runner.open_jobs = vec![key.to_string()];
    let mut claimed = job.item.clone();
    claimed.status = "provisioning".into();
    claimed.runner_id = Some(id.clone());
    claimed.attempts = attempt;
    claimed.updated_at = app.clock.now();
    let also = Also {
        table: Table::GitLabJobs,
        doc: to_doc(Table::GitLabJobs, &claimed)?,
        expect: Expect::Version(job.version),
    };
    // A conflict (the job or the egg's slots changed meanwhile) starts over on what the
    // other writer wrote.
    app.fleet
        .create(
            &runner,
            json!({ "job": key, "egg": egg.name, "attempt": attempt }),
            vec![also, slot],
        )
        .await?;
    app.metrics.inc("mothergoose_runners_total", "created");
    provision(app, &id).await
}

/// A runner of `egg` has ended: the job of the egg that has waited longest for room is
/// asked again now, rather than at its next look ([`CAPACITY_WAIT`]).
pub async fn room_made(app: &App, egg: &str) -> Result<(), TaskError> {
    if let Some(j) = super::handover::longest_waiting(app, egg).await? {
        let t = Task::DeployRunner { job: j.item.id };
        enqueue(app, &t, Duration::ZERO, true).await?;
    }
    Ok(())
}

/// A new runner record for `egg`, provisioning.
pub fn new_runner(app: &App, id: &str, egg: &Egg, ephemeral: bool) -> Runner {
    let provider = match egg.cloud.provider {
        fly_ir::Provider::Yandex => "yandex",
        fly_ir::Provider::Aws => "aws",
    };
    let kind = match egg.kind {
        RunnerKind::Vm => "vm",
        RunnerKind::Serverless => "serverless",
    };
    let mut r = Runner::new(
        id,
        &egg.name,
        kind,
        provider,
        &egg.cloud.region,
        app.clock.now(),
    );
    r.ephemeral = ephemeral;
    r.gitlab_url = Some(egg.gitlab.url.clone());
    r.config_hash = egg.config_hash.clone();
    r.metadata = json!({ "token_secret": egg.gitlab.token_secret });
    r
}

/// Gives the job to a ready pool runner of the egg that has room, if there is one
/// (promoting a Nadir runner when no Apex runner has room — Property 15).
async fn assign_to_ready(
    app: &App,
    job: &Versioned<GitLabJob>,
    egg: &Egg,
) -> Result<bool, TaskError> {
    let mut runners = live_runners(app, &egg.name).await?;
    // Apex first, then Nadir (promoted on the way), fewest open jobs first.
    runners.sort_by_key(|r| {
        (
            r.item.pool.as_deref() == Some("nadir"),
            r.item.open_jobs.len(),
        )
    });
    for r in runners {
        let usable = !r.item.ephemeral
            && r.item.self_job.is_none()
            && matches!(
                state_of(&r.item),
                RunnerState::Active
                    | RunnerState::Idle
                    | RunnerState::Busy
                    | RunnerState::Provisioning
            )
            && r.item.open_jobs.len() < egg.runner.concurrent as usize;
        if !usable {
            continue;
        }
        let key = job.item.id.clone();
        let mut claimed = job.item.clone();
        claimed.status = "assigned".into();
        claimed.runner_id = Some(r.item.id.clone());
        claimed.updated_at = app.clock.now();
        let mut runner = r.item.clone();
        let promoted = runner.pool.as_deref() == Some("nadir");
        if promoted {
            runner.pool = Some("apex".into());
            runner.instruction = Some("resume".into());
        }
        runner.open_jobs.push(key.clone());
        runner.jobs.push(key.clone());
        runner.updated_at = app.clock.now();
        let audit = app.fleet.audit(
            if promoted {
                "promote_to_apex"
            } else {
                "assign"
            },
            &runner.id,
            json!({ "job": key, "reason": "a job is waiting" }),
        );
        let writes = vec![
            gosling_state::Write::Put {
                table: Table::Runners,
                doc: gosling_fleet::runners::runner_doc(&runner)?,
                expect: Expect::Version(r.version),
            },
            gosling_state::Write::Put {
                table: Table::GitLabJobs,
                doc: to_doc(Table::GitLabJobs, &claimed)?,
                expect: Expect::Version(job.version),
            },
            gosling_fleet::runners::audit_write(&audit)?,
        ];
        match app.store.transact(writes).await {
            Ok(()) => {
                app.metrics.inc("mothergoose_runners_total", "assigned");
                return Ok(true);
            }
            Err(gosling_state::StateError::Conflict { .. }) => {
                return Err(TaskError::Contended(format!(
                    "job {key} or runner {} changed meanwhile",
                    runner.id
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

async fn give_up(app: &App, job: &Versioned<GitLabJob>, reason: &str) -> Result<(), TaskError> {
    let mut j = job.item.clone();
    j.status = "failed".into();
    j.reason = Some(reason.to_string());
    j.updated_at = app.clock.now();
    match app
        .store
        .put_gitlab_job(&j, Expect::Version(job.version))
        .await
    {
        Ok(_) => {}
        Err(gosling_state::StateError::Conflict { .. }) => {
            return Err(TaskError::Contended("the job changed meanwhile".into()))
        }
        Err(e) => return Err(e.into()),
    }
    app.metrics.inc("mothergoose_runners_total", "failed");
    app.fleet
        .record("gave_up", "gitlab_job", &j.id, json!({ "reason": reason }))
        .await?;
    Ok(())
}

async fn pool_runner(app: &App, key: &str, egg_name: &str) -> Result<(), TaskError> {
    let id = runner_id_for(key, 1);
    if app.store.runner(&id).await?.is_none() {
        let Some(egg) = current_egg(app, egg_name) else {
            return Err(TaskError::Permanent(format!(
                "egg `{egg_name}` is not deployed"
            )));
        };
        let slot = slots::claim(&*app.store, egg_name, egg.runner.max_runners, &id).await?;
        let Some(slot) = slot else {
            app.fleet
                .record(
                    "refused",
                    "egg",
                    egg_name,
                    json!({ "reason": "the egg is at max_runners", "request": key }),
                )
                .await?;
            return Ok(());
        };
        let runner = new_runner(app, &id, &egg, egg.kind == RunnerKind::Serverless);
        app.fleet
            .create(
                &runner,
                json!({ "request": key, "egg": egg_name }),
                vec![slot],
            )
            .await?;
    }
    provision(app, &id).await
}

/// Registers the runner with GitLab (unless it runs a self-management job) and makes its
/// machine; resumes where an earlier attempt stopped. A runner no longer `provisioning`
/// (someone ended it meanwhile) gets nothing more, and what was just made is undone.
pub async fn provision(app: &App, id: &str) -> Result<(), TaskError> {
    let Some(r) = app.store.runner(id).await? else {
        return Err(TaskError::Permanent(format!("no runner {id}")));
    };
    let state = state_of(&r.item);
    if state != RunnerState::Provisioning {
        // Up before its machine was recorded (a restart between making and recording it):
        // record it (providers find it by runner id), so that it can be ended.
        if r.item.machine.is_none() && is_up(state) {
            if let Some(egg) = current_egg(app, &r.item.egg_name) {
                make_machine(app, &r.item, &egg).await?;
            }
        }
        return Ok(());
    }
    if unneeded(&r.item) {
        // Its job ran elsewhere: it serves a waiting job, or it is not made.
        super::handover::freed(app, id).await?;
        let r = app.store.runner(id).await?.map(|r| r.item);
        if r.is_none_or(|r| state_of(&r) != RunnerState::Provisioning || unneeded(&r)) {
            return Ok(());
        }
    }
    let Some(egg) = current_egg(app, &r.item.egg_name) else {
        return fail(
            app,
            id,
            &format!("egg `{}` is no longer deployed", r.item.egg_name),
        )
        .await;
    };
    if r.item.self_job.is_none() && r.item.gitlab_runner_id.is_none() {
        register(app, id, &egg).await?;
    }
    let r = app.store.runner(id).await?.map(|r| r.item);
    let Some(r) = r.filter(|r| state_of(r) == RunnerState::Provisioning || is_up(state_of(r)))
    else {
        return Ok(());
    };
    if r.machine.is_none() {
        make_machine(app, &r, &egg).await?;
    }
    Ok(())
}

fn is_up(state: RunnerState) -> bool {
    matches!(
        state,
        RunnerState::Active | RunnerState::Idle | RunnerState::Busy
    )
}

/// A single-job runner not yet made whose jobs all ran elsewhere: nobody waits for it.
fn unneeded(r: &Runner) -> bool {
    r.ephemeral && r.machine.is_none() && !r.jobs.is_empty() && r.open_jobs.is_empty()
}

async fn register(app: &App, id: &str, egg: &Egg) -> Result<(), TaskError> {
    let reg = match app.registry.register(&*app.store, egg, id, false).await {
        Ok(reg) => reg,
        Err(e) if e.is_transient() => {
            app.metrics
                .inc("mothergoose_gitlab_errors_total", "create_runner");
            return Err(TaskError::retry(format!("registering with GitLab: {e}")));
        }
        Err(e) => {
            return fail(
                app,
                id,
                &format!("GitLab refused to register the runner: {e}"),
            )
            .await
        }
    };
    let mut late = false;
    app.fleet
        .edit(id, |r, _| {
            if state_of(r) != RunnerState::Provisioning || r.gitlab_runner_id.is_some() {
                late = true;
                return Ok(Edit::Keep);
            }
            r.gitlab_runner_id = Some(reg.id);
            r.gitlab_runner_token = Some(reg.token.clone());
            Ok(Edit::Write(Some((
                "registered".into(),
                json!({ "gitlab_runner_id": reg.id }),
            ))))
        })
        .await?;
    if late {
        // Ended (or registered by another attempt) meanwhile: do not leave this one behind.
        let mut orphan = Runner::new(id, &egg.name, "", "", "", app.clock.now());
        orphan.gitlab_runner_id = Some(reg.id);
        orphan.gitlab_url = Some(egg.gitlab.url.clone());
        let _ = app
            .registry
            .unregister(&*app.store, &orphan, &egg.gitlab.token_secret)
            .await;
    }
    Ok(())
}

async fn make_machine(app: &App, r: &Runner, egg: &Egg) -> Result<(), TaskError> {
    let provider = match app.lifecycle.providers.for_egg(egg) {
        Ok(p) => p,
        Err(e) => return fail(app, &r.id, &e.to_string()).await,
    };
    let mut extra_env = BTreeMap::new();
    if let Some(job) = &r.self_job {
        extra_env.insert("GOSLING_JOB".into(), job.clone());
    }
    let spec = RunnerSpec {
        runner_id: r.id.clone(),
        egg: egg.clone(),
        bootstrap: Bootstrap {
            mothergoose_url: app.settings.public_url.clone(),
            credential: app.keys.credential(&r.id, r.credential_epoch),
            ca_pem: None,
        },
        ephemeral: r.ephemeral,
        extra_env,
    };
    let handle = match provider.create(&spec).await {
        Ok(h) => h,
        Err(ProviderError::Retryable { message, .. }) => {
            app.metrics
                .inc("mothergoose_provider_errors_total", "retryable");
            return Err(TaskError::retry(format!(
                "provider {}: {message}",
                provider.name()
            )));
        }
        Err(e) => {
            app.metrics
                .inc("mothergoose_provider_errors_total", "permanent");
            return fail(app, &r.id, &e.to_string()).await;
        }
    };
    let value = serde_json::to_value(&handle).unwrap_or_default();
    let mut late = false;
    app.fleet
        .edit(&r.id, |rec, _| {
            // The runner may have said it is up already (its first heartbeat can come
            // before this): only a runner being ended has its new machine undone here.
            let state = state_of(rec);
            late = matches!(
                state,
                RunnerState::Terminating
                    | RunnerState::PendingTermination
                    | RunnerState::Terminated
                    | RunnerState::Failed
            );
            if state == RunnerState::Terminated || rec.machine.is_some() {
                return Ok(Edit::Keep);
            }
            rec.machine = Some(value.clone());
            Ok(Edit::Write(Some((
                "machine_created".into(),
                json!({ "provider": handle.provider, "machine": handle.id }),
            ))))
        })
        .await?;
    if late {
        let _ = provider.terminate(&handle).await;
    }
    app.metrics.inc("mothergoose_runners_total", "provisioned");
    Ok(())
}

/// A runner that cannot be made: it is failed and cleaned up, and its job (if it had one)
/// waits for another runner — up to [`MAX_ATTEMPTS`].
async fn fail(app: &App, id: &str, reason: &str) -> Result<(), TaskError> {
    tracing::warn!("runner {id}: {reason}");
    app.metrics.inc("mothergoose_runners_total", "failed");
    let r = app
        .fleet
        .edit(id, |r, now| {
            if state_of(r) != RunnerState::Provisioning {
                return Ok(Edit::Keep);
            }
            gosling_fleet::set_state(r, RunnerState::Failed, now)?;
            r.failure_count += 1;
            Ok(Edit::Write(Some((
                "provisioning_failed".into(),
                json!({ "reason": reason }),
            ))))
        })
        .await?;
    app.lifecycle.request(id, reason, false).await?;
    enqueue(
        app,
        &Task::TerminateRunner {
            runner_id: id.to_string(),
            reason: reason.to_string(),
            force: false,
        },
        Duration::ZERO,
        true,
    )
    .await?;
    for key in r.item.open_jobs.iter() {
        if let Some(job) = app.store.gitlab_job(key).await? {
            if job.item.runner_id.as_deref() == Some(id) && job.item.status == "provisioning" {
                let mut j = job.item.clone();
                j.status = "pending".into();
                j.reason = Some(format!("runner {id} failed: {reason}"));
                if app
                    .store
                    .put_gitlab_job(&j, Expect::Version(job.version))
                    .await
                    .is_ok()
                {
                    enqueue(
                        app,
                        &Task::DeployRunner { job: key.clone() },
                        Duration::from_secs(5),
                        true,
                    )
                    .await?;
                }
            }
        }
    }
    Ok(())
}
