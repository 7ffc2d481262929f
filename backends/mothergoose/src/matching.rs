//! Which egg serves a GitLab job: pure functions over the deployed IR (Properties 9, 10
//! and 27), so they are tested exhaustively without a server.

use fly_ir::{Deployment, Egg, RunnerKind};

/// The longest a serverless runner lives (the platforms' limit).
pub const SERVERLESS_LIMIT_S: u64 = 3600;

/// The host (and port) of a GitLab URL, lower-cased: `https://GitLab.example.com/` →
/// `gitlab.example.com`.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or("").to_ascii_lowercase()
}

/// Property 9: the eggs whose project is the one the event came from (and, when the
/// event says which GitLab sent it, on that GitLab).
pub fn eggs_for_project<'a>(
    ir: &'a Deployment,
    project_id: u64,
    gitlab_host: Option<&str>,
) -> Vec<&'a Egg> {
    ir.eggs
        .iter()
        .filter(|e| e.gitlab.project_id == project_id)
        .filter(|e| gitlab_host.is_none_or(|h| host_of(&e.gitlab.url) == h.to_ascii_lowercase()))
        .collect()
}

/// Property 27: an egg serves a job when every tag of the job is one of the egg's; a job
/// without tags goes only to eggs that run untagged jobs.
pub fn serves(egg: &Egg, job_tags: &[String]) -> bool {
    if job_tags.is_empty() {
        return egg.runner.run_untagged;
    }
    job_tags.iter().all(|t| egg.runner.tags.contains(t))
}

/// How long the job may run, as far as MotherGoose can know before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The project's job timeout (`build_timeout`): no job of it runs longer.
    ProjectTimeout(u64),
    /// Unknown (GitLab did not say).
    Unknown,
}

/// Property 10: when eggs of both types serve the job, a serverless one only if the job
/// surely ends within the serverless limit (the project's job timeout is under 60
/// minutes), else a VM one; otherwise the type that serves it. Among eggs of the chosen
/// type the first by name wins.
pub fn choose<'a>(candidates: &[&'a Egg], expected: Expected) -> Option<&'a Egg> {
    let by_kind = |k: RunnerKind| {
        let mut v: Vec<&&Egg> = candidates.iter().filter(|e| e.kind == k).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.first().map(|e| **e)
    };
    match (by_kind(RunnerKind::Vm), by_kind(RunnerKind::Serverless)) {
        (Some(vm), Some(serverless)) => Some(match expected {
            Expected::ProjectTimeout(s) if s < SERVERLESS_LIMIT_S => serverless,
            _ => vm,
        }),
        (vm, serverless) => vm.or(serverless),
    }
}

/// The egg that serves a job of `project_id` with `tags`, and why none does.
pub fn route<'a>(
    ir: &'a Deployment,
    project_id: u64,
    gitlab_host: Option<&str>,
    tags: &[String],
    expected: Expected,
) -> Result<&'a Egg, String> {
    let of_project = eggs_for_project(ir, project_id, gitlab_host);
    if of_project.is_empty() {
        return Err(format!("no egg serves project {project_id}"));
    }
    let serving: Vec<&Egg> = of_project.into_iter().filter(|e| serves(e, tags)).collect();
    choose(&serving, expected).ok_or_else(|| {
        if tags.is_empty() {
            format!("no egg of project {project_id} runs untagged jobs")
        } else {
            format!("no egg of project {project_id} has all the tags {tags:?}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("https://GitLab.Example.com/"), "gitlab.example.com");
        assert_eq!(host_of("http://127.0.0.1:8929/gitlab"), "127.0.0.1:8929");
        assert_eq!(host_of("gitlab.com"), "gitlab.com");
    }
}
