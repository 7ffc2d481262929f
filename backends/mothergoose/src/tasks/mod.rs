//! The design's tasks, each idempotent (delivered at least once): `process_webhook`,
//! `deploy_runner`, `terminate_runner`, `execute_self_management_job`, and `poll_pending`
//! (the reconciler's question to GitLab).

pub mod deploy;
pub mod handover;
pub mod selfjob;
pub mod terminate;
pub mod webhook;

use crate::app::App;
use crate::matching::Expected;
use gosling_fleet::{FleetError, Task};
use std::time::{Duration, Instant};

/// How a task ended, when it did not succeed.
#[derive(Debug)]
pub enum TaskError {
    /// A transient failure: deliver again later (with backoff, counting an attempt).
    Retry {
        /// What failed.
        error: String,
        /// How long to wait at least (e.g. GitLab's Retry-After).
        after: Option<Duration>,
    },
    /// Nothing to be gained by trying again: dead-letter it.
    Permanent(String),
    /// The state store or the queue cannot be reached: try again (with backoff) for as
    /// long as the outage lasts, never dead-lettered, so nothing is lost when it ends.
    Unavailable(String),
    /// Not now (waiting for capacity or a drain): run it again after this long, without
    /// counting a failed attempt.
    Later(Duration),
    /// Another writer changed what the task read (a conditional write conflicted): run it
    /// again soon on fresh data. Each conflict means another write went through, so this
    /// is retried far longer than a failure before it is dead-lettered.
    Contended(String),
}

impl TaskError {
    /// A transient failure.
    pub fn retry(e: impl std::fmt::Display) -> TaskError {
        TaskError::Retry {
            error: e.to_string(),
            after: None,
        }
    }
}

impl From<gosling_state::StateError> for TaskError {
    fn from(e: gosling_state::StateError) -> TaskError {
        if e.is_outage() {
            TaskError::Unavailable(format!("state store: {e}"))
        } else if matches!(e, gosling_state::StateError::Conflict { .. }) {
            TaskError::Contended(e.to_string())
        } else {
            TaskError::retry(format!("state store: {e}"))
        }
    }
}

impl From<FleetError> for TaskError {
    fn from(e: FleetError) -> TaskError {
        match e {
            FleetError::State(s) => return s.into(),
            FleetError::Busy(_) => return TaskError::Contended(e.to_string()),
            _ => {}
        }
        if e.is_transient() {
            TaskError::retry(e)
        } else {
            TaskError::Permanent(e.to_string())
        }
    }
}

impl From<gosling_queue::QueueError> for TaskError {
    fn from(e: gosling_queue::QueueError) -> TaskError {
        match e {
            gosling_queue::QueueError::BadUrl { .. } => TaskError::Permanent(format!("queue: {e}")),
            _ => TaskError::Unavailable(format!("queue: {e}")),
        }
    }
}

/// Runs one task.
pub async fn run(app: &App, task: Task) -> Result<(), TaskError> {
    match task {
        Task::ProcessWebhook {
            delivery,
            event,
            instance,
            received_at,
            payload,
        } => {
            webhook::process(
                app,
                &delivery,
                &event,
                instance.as_deref(),
                received_at,
                payload,
            )
            .await
        }
        Task::DeployRunner { job } => deploy::deploy_runner(app, &job).await,
        Task::TerminateRunner {
            runner_id,
            reason,
            force,
        } => terminate::terminate_runner(app, &runner_id, &reason, force).await,
        Task::ExecuteSelfManagementJob { job, scheduled_for } => {
            selfjob::execute(app, &job, scheduled_for).await
        }
        Task::PollPending {
            gitlab_url,
            project_id,
        } => webhook::poll_pending(app, &gitlab_url, project_id).await,
    }
}

/// Queues a task (deduplicated by its key unless `unique`).
pub async fn enqueue(
    app: &App,
    task: &Task,
    delay: Duration,
    unique: bool,
) -> Result<(), TaskError> {
    app.queue
        .enqueue(&task.to_message(), task.options(delay, unique))
        .await?;
    Ok(())
}

const PROJECT_CACHE: Duration = Duration::from_secs(600);

/// The project's job timeout, from GitLab (`GET /projects/:id`, cached ten minutes):
/// what Property 10 decides on. Unknown when GitLab does not answer.
pub async fn project_timeout(app: &App, egg: &fly_ir::Egg) -> Expected {
    let key = format!(
        "{}/{}",
        crate::matching::host_of(&egg.gitlab.url),
        egg.gitlab.project_id
    );
    if let Some((at, t)) = app
        .project_timeouts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
    {
        if at.elapsed() < PROJECT_CACHE {
            return t.map_or(Expected::Unknown, Expected::ProjectTimeout);
        }
    }
    let timeout = match app
        .registry
        .client(&*app.store, &egg.gitlab.token_secret)
        .await
    {
        Ok(gl) => match gl.project(&egg.gitlab.url, egg.gitlab.project_id).await {
            Ok(p) => p.build_timeout,
            Err(e) => {
                app.metrics
                    .inc("mothergoose_gitlab_errors_total", "project");
                tracing::warn!("reading project {}: {e}", egg.gitlab.project_id);
                return Expected::Unknown;
            }
        },
        Err(_) => return Expected::Unknown,
    };
    app.project_timeouts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (Instant::now(), timeout));
    timeout.map_or(Expected::Unknown, Expected::ProjectTimeout)
}

/// GitLab's version for the egg's GitLab (cached ten minutes), for runner mode's agent
/// version; unknown when GitLab does not answer.
pub async fn gitlab_version(app: &App, egg: &fly_ir::Egg) -> Option<String> {
    let host = crate::matching::host_of(&egg.gitlab.url);
    if let Some((at, v)) = app
        .gitlab_versions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&host)
    {
        if at.elapsed() < PROJECT_CACHE {
            return Some(v.clone());
        }
    }
    let gl = app
        .registry
        .client(&*app.store, &egg.gitlab.token_secret)
        .await
        .ok()?;
    let v = gl.version(&egg.gitlab.url).await.ok()?.version;
    app.gitlab_versions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(host, (Instant::now(), v.clone()));
    Some(v)
}
