//! `terminate_runner`: end a runner through the shared lifecycle (drained first when it may
//! run a job; removal retried, then forced).

use super::TaskError;
use crate::app::App;
use gosling_fleet::lifecycle::token_secret_of;
use gosling_fleet::{state_of, RunnerState, Step};
use std::time::Duration;

/// How often a draining runner is looked at again.
const DRAIN_CHECK: Duration = Duration::from_secs(30);
/// How soon a runner another task is ending is looked at again.
const ENDING_ELSEWHERE: Duration = Duration::from_secs(1);

/// Runs `terminate_runner`.
pub async fn terminate_runner(
    app: &App,
    id: &str,
    reason: &str,
    force: bool,
) -> Result<(), TaskError> {
    // Another task of this process is ending it: look again when it is done.
    let Some(_ending) = app.ending.claim(id) else {
        return Err(TaskError::Later(ENDING_ELSEWHERE));
    };
    let Some(r) = app.store.runner(id).await? else {
        return Ok(());
    };
    let state = state_of(&r.item);
    if state == RunnerState::Terminated {
        return Ok(());
    }
    let mut force = force;
    if state == RunnerState::Draining && !force {
        let egg = crate::views::egg_of(app, &r.item.egg_name)
            .await
            .ok()
            .flatten();
        let allowed = app.lifecycle.drain_deadline(egg.as_ref());
        let since = r.item.state_since.unwrap_or(r.item.updated_at);
        let waited = (app.clock.now() - since).to_std().unwrap_or_default();
        if waited < allowed {
            return Err(TaskError::Later(DRAIN_CHECK.min(allowed - waited)));
        }
        force = true;
    }
    let reason = if force && state == RunnerState::Draining {
        "the drain took too long"
    } else {
        reason
    };
    match app.lifecycle.request(id, reason, force).await? {
        Step::Draining => Err(TaskError::Later(DRAIN_CHECK)),
        Step::Terminated | Step::Forced => Ok(()),
        Step::RetryAfter(d) => Err(TaskError::Later(d)),
        Step::Remove => {
            let secret = crate::views::egg_of(app, &r.item.egg_name)
                .await
                .ok()
                .flatten()
                .map(|e| e.gitlab.token_secret)
                .or_else(|| token_secret_of(&r.item));
            match app.lifecycle.remove(id, secret.as_deref()).await? {
                Step::RetryAfter(d) => Err(TaskError::Later(d)),
                Step::Terminated => {
                    app.metrics.inc("mothergoose_runners_total", "terminated");
                    super::deploy::room_made(app, &r.item.egg_name).await
                }
                _ => Ok(()),
            }
        }
    }
}
