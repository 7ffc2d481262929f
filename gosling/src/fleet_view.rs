//! `gosling status`'s live view of the fleet, read from the state store: runners by egg and
//! state with their last heartbeat, the work waiting for a runner, UglyFox's last decisions
//! and the recent activity (the audit trail).

use chrono::{DateTime, Utc};
use gosling_state::{AuditLog, StateError, StateStore};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Runners shown in the table (the newest first; the JSON has them all).
const SHOWN_RUNNERS: usize = 20;
/// Audit entries shown.
const SHOWN_ACTIVITY: usize = 15;
/// UglyFox decisions shown.
const SHOWN_DECISIONS: usize = 10;

/// The live view.
#[derive(Debug, Default, Serialize)]
pub struct FleetView {
    /// Live runners by egg and state (terminated ones are not counted).
    pub by_egg: BTreeMap<String, BTreeMap<String, usize>>,
    /// Every runner, newest first.
    pub runners: Vec<RunnerRow>,
    /// GitLab jobs waiting for a runner or for theirs to come up.
    pub pending: Vec<PendingRow>,
    /// UglyFox's last decisions, newest first.
    pub decisions: Vec<AuditLog>,
    /// The last audit entries of everyone, newest first.
    pub activity: Vec<AuditLog>,
}

/// A runner.
#[derive(Debug, Serialize)]
pub struct RunnerRow {
    /// Id.
    pub id: String,
    /// Egg.
    pub egg: String,
    /// State.
    pub state: String,
    /// Pool.
    pub pool: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last heartbeat.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Jobs it ran.
    pub job_count: u64,
    /// Failures.
    pub failure_count: u32,
}

/// A job waiting.
#[derive(Debug, Serialize)]
pub struct PendingRow {
    /// The job (`host/project/job`).
    pub job: String,
    /// Its egg.
    pub egg: Option<String>,
    /// `pending`, `provisioning` or `assigned`.
    pub status: String,
    /// Its runner.
    pub runner: Option<String>,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// Reads the view.
pub async fn read(store: &dyn StateStore, _now: DateTime<Utc>) -> Result<FleetView, StateError> {
    let mut view = FleetView::default();
    let mut runners: Vec<_> = store.runners().await?.into_iter().map(|r| r.item).collect();
    runners.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    for r in &runners {
        if r.state != "terminated" {
            *view
                .by_egg
                .entry(r.egg_name.clone())
                .or_default()
                .entry(r.state.clone())
                .or_insert(0) += 1;
        }
    }
    view.runners = runners
        .into_iter()
        .map(|r| RunnerRow {
            id: r.id,
            egg: r.egg_name,
            state: r.state,
            pool: r.pool,
            created_at: r.created_at,
            last_heartbeat: r.last_heartbeat,
            job_count: r.job_count,
            failure_count: r.failure_count,
        })
        .collect();
    for status in ["pending", "provisioning", "assigned"] {
        for j in store.gitlab_jobs_by_status(status).await? {
            view.pending.push(PendingRow {
                job: j.item.id,
                egg: j.item.egg_name,
                status: j.item.status,
                runner: j.item.runner_id,
                since: j.item.updated_at,
            });
        }
    }
    view.pending.sort_by_key(|p| p.since);
    let mut audit = store.audit_logs().await?;
    audit.reverse();
    view.decisions = audit
        .iter()
        .filter(|a| a.actor == "uglyfox")
        .take(SHOWN_DECISIONS)
        .cloned()
        .collect();
    audit.truncate(SHOWN_ACTIVITY);
    view.activity = audit;
    Ok(view)
}

fn when(t: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - *t).num_seconds();
    match s {
        i64::MIN..=-1 => t.format("%H:%M:%S").to_string(),
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => t.format("%Y-%m-%d %H:%M").to_string(),
    }
}

/// The view as text, with a table helper for aligned columns.
pub fn render(
    v: &FleetView,
    now: DateTime<Utc>,
    table: impl Fn(&[&str], &[Vec<String>]) -> String,
) -> String {
    let mut s = String::new();
    if !v.by_egg.is_empty() {
        let _ = writeln!(s, "\nRunners by egg");
        for (egg, states) in &v.by_egg {
            let parts: Vec<String> = states.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = writeln!(s, "  {egg}: {}", parts.join(", "));
        }
    }
    if !v.runners.is_empty() {
        let _ = writeln!(s, "\nRunners ({}, newest first)", v.runners.len());
        let rows: Vec<Vec<String>> = v
            .runners
            .iter()
            .take(SHOWN_RUNNERS)
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.egg.clone(),
                    r.state.clone(),
                    r.pool.clone().unwrap_or_else(|| "-".into()),
                    r.last_heartbeat
                        .map(|t| when(&t, now))
                        .unwrap_or_else(|| "never".into()),
                    r.job_count.to_string(),
                    r.failure_count.to_string(),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "RUNNER",
                "EGG",
                "STATE",
                "POOL",
                "HEARTBEAT",
                "JOBS",
                "FAILURES",
            ],
            &rows,
        ));
    }
    let _ = writeln!(
        s,
        "\nPending work: {}",
        if v.pending.is_empty() {
            "none".to_string()
        } else {
            v.pending.len().to_string()
        }
    );
    if !v.pending.is_empty() {
        let rows: Vec<Vec<String>> = v
            .pending
            .iter()
            .map(|p| {
                vec![
                    p.job.clone(),
                    p.egg.clone().unwrap_or_default(),
                    p.status.clone(),
                    p.runner.clone().unwrap_or_else(|| "-".into()),
                    when(&p.since, now),
                ]
            })
            .collect();
        s.push_str(&table(&["JOB", "EGG", "STATUS", "RUNNER", "SINCE"], &rows));
    }
    for (title, entries) in [
        ("UglyFox's last decisions", &v.decisions),
        ("Recent activity (newest first)", &v.activity),
    ] {
        if entries.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}");
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|a| {
                vec![
                    when(&a.timestamp, now),
                    a.actor.clone(),
                    a.action.clone(),
                    format!("{} {}", a.resource_type, a.resource_id),
                    summary(&a.details),
                ]
            })
            .collect();
        s.push_str(&table(&["WHEN", "WHO", "WHAT", "ON", "DETAILS"], &rows));
    }
    s
}

/// The details of an audit entry in one short line.
fn summary(d: &serde_json::Value) -> String {
    let text = match d {
        serde_json::Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut t: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        t.push('…');
    }
    t
}
