//! The checker: GitLab, the state store, the audit log, the fake agents' event logs and
//! the local processes must tell the same story — every job ran once, on exactly one
//! runner of an egg that serves it; every single-job runner was created once and ended
//! once; nothing is left running and no ended runner's folder is left (Property 31).

use crate::{procs, System};
use std::collections::{BTreeMap, BTreeSet};

/// What the checker saw.
#[derive(Debug, Default)]
pub struct Report {
    /// GitLab jobs.
    pub jobs: usize,
    /// Runners in the store.
    pub runners: usize,
    /// Runners ended before they came up because their job ran on a runner that was up
    /// already (GitLab gives a job to any fitting runner): a cost, not a duplicate.
    pub unused: Vec<String>,
    /// Everything that does not agree.
    pub problems: Vec<String>,
}

impl Report {
    /// Runners that came up (all of them served a job when the report is clean).
    pub fn served(&self) -> usize {
        self.runners - self.unused.len()
    }

    /// Panics with every problem, if any.
    pub fn assert_clean(&self) {
        assert!(
            self.problems.is_empty(),
            "{} problems:\n{}",
            self.problems.len(),
            self.problems.join("\n")
        );
    }
}

/// Compares the five sources once the system has settled (with the services still up or
/// stopped). `expect_status` is the GitLab status every job must have ended with.
pub async fn check(sys: &System, expect_status: &str) -> Report {
    check_with(sys, |_| expect_status).await
}

/// [`check`] with the expected GitLab status given per job.
pub async fn check_with<'a>(sys: &System, expect: impl Fn(u64) -> &'a str) -> Report {
    let mut r = Report::default();
    let jobs = sys.gitlab.with(|w| w.jobs.clone());
    r.jobs = jobs.len();
    let runners: BTreeMap<String, gosling_state::Runner> = sys
        .store
        .runners()
        .await
        .expect("runners")
        .into_iter()
        .map(|v| (v.item.id.clone(), v.item))
        .collect();
    r.runners = runners.len();
    let records = sys.store.gitlab_jobs().await.expect("gitlab jobs");
    let by_build: BTreeMap<u64, _> = records.iter().map(|v| (v.item.build_id, &v.item)).collect();
    let audit = sys.store.audit_logs().await.expect("audit");
    let taken = agent_takes(sys);

    let mut runner_of_job = BTreeMap::new();
    for j in jobs.values() {
        if j.status != expect(j.id) {
            r.problems
                .push(format!("GitLab job {} ended {}", j.id, j.status));
        }
        match taken.get(&j.id).copied().unwrap_or(0) {
            1 => {}
            n => r
                .problems
                .push(format!("job {} was taken by {n} agents", j.id)),
        }
        let Some(rec) = by_build.get(&j.id) else {
            r.problems
                .push(format!("job {} has no record in the store", j.id));
            continue;
        };
        if rec.status != "finished" {
            r.problems
                .push(format!("job {}: store says {}", j.id, rec.status));
        }
        let Some(rid) = &rec.runner_id else {
            r.problems.push(format!("job {}: no runner recorded", j.id));
            continue;
        };
        match runners.get(rid) {
            None => r
                .problems
                .push(format!("job {}: runner {rid} missing", j.id)),
            Some(run) if !j.tags.contains(&run.egg_name) => r.problems.push(format!(
                "job {} (tags {:?}) ran on runner {rid} of egg {}",
                j.id, j.tags, run.egg_name
            )),
            Some(_) => {}
        }
        if let Some(other) = runner_of_job.insert(rid.clone(), j.id) {
            r.problems
                .push(format!("runner {rid} served jobs {other} and {}", j.id));
        }
    }
    for (id, run) in &runners {
        if run.state != "terminated" {
            r.problems.push(format!("runner {id} is {}", run.state));
        }
        if !runner_of_job.contains_key(id) && !came_up(&audit, id) {
            r.unused.push(id.clone());
        } else if !runner_of_job.contains_key(id) {
            let jobs: Vec<String> = run
                .jobs
                .iter()
                .map(|j| format!("{j}: {}", crate::mentions(&audit, j)))
                .collect();
            r.problems.push(format!(
                "runner {id} served no job (a duplicate): history {}; its jobs' trails: {}",
                history(&audit, id),
                jobs.join(" | ")
            ));
        }
        let count = |action: &str| {
            audit
                .iter()
                .filter(|a| &a.resource_id == id && a.action == action)
                .count()
        };
        // moto does not serialise conditional writes (a check and its write may interleave
        // with another request's), so on moto a lost update can record one ending twice;
        // DynamoDB and SQLite cannot.
        let lost_updates = sys.state.starts_with("dynamodb://");
        for (action, want) in [("create", 1), ("terminated", 1)] {
            let tolerated = lost_updates && action == "terminated" && count(action) > want;
            if count(action) != want && !tolerated {
                r.problems.push(format!(
                    "runner {id}: {} `{action}` audit entries, not {want}; history {}",
                    count(action),
                    history(&audit, id)
                ));
            }
        }
    }
    let live: BTreeSet<i32> = procs::of(sys.dir.path())
        .into_iter()
        .filter(|pid| !sys.is_service(*pid))
        .collect();
    if !live.is_empty() {
        r.problems
            .push(format!("runner processes still running: {live:?}"));
    }
    let left: Vec<String> = std::fs::read_dir(sys.dir.path().join("runners"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|id| runners.get(id).is_some_and(|run| run.state == "terminated"))
        .collect();
    if !left.is_empty() {
        r.problems
            .push(format!("folders of ended runners left behind: {left:?}"));
    }
    r
}

/// Whether runner `id` ever reported itself up (a `state` entry to active, idle or busy).
fn came_up(audit: &[gosling_state::AuditLog], id: &str) -> bool {
    audit.iter().any(|a| {
        a.resource_id == id
            && a.action == "state"
            && matches!(
                a.details.get("to").and_then(|t| t.as_str()),
                Some("active" | "idle" | "busy")
            )
    })
}

/// A runner's audit trail in one line: `actor:action details; …`.
pub fn history(audit: &[gosling_state::AuditLog], id: &str) -> String {
    audit
        .iter()
        .filter(|a| a.resource_id == id)
        .map(|a| {
            let at = a.timestamp.format("%H:%M:%S%.3f");
            format!("{at} {}:{} {}", a.actor, a.action, a.details)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How many times each GitLab job was taken by an agent (`job-start name=gitlab-ID`).
fn agent_takes(sys: &System) -> BTreeMap<u64, usize> {
    let mut taken = BTreeMap::new();
    for (event, fields) in gosling_standins::fake_gitlab_runner::read_events(sys.dir.path()) {
        if event != "job-start" {
            continue;
        }
        if let Some(id) = fields
            .get("name")
            .and_then(|n| n.strip_prefix("gitlab-"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            *taken.entry(id).or_insert(0) += 1;
        }
    }
    taken
}
