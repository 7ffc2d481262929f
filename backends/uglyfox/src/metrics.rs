//! Counters for `/metrics` (Prometheus text format).

use crate::planner::Kind;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What UglyFox has done since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Passes run.
    pub passes: AtomicU64,
    /// Passes that failed (the store or the deployment could not be read).
    pub pass_failures: AtomicU64,
    /// Decisions applied, by kind.
    decisions: Mutex<BTreeMap<&'static str, u64>>,
    /// Runners ended (drained or removed).
    pub terminations: AtomicU64,
    /// Removals that failed (retried later).
    pub termination_failures: AtomicU64,
    /// Removals forced after the last attempt (operators alerted).
    pub terminations_forced: AtomicU64,
    /// Decisions that failed to apply.
    pub failures: AtomicU64,
    /// Pool claims lost to another instance.
    pub claims_lost: AtomicU64,
    /// Rule evaluations skipped for a missing metric.
    pub rules_skipped: AtomicU64,
    /// Cron runs started (first attempts and retries).
    pub cron_runs: AtomicU64,
    /// Cron failure notifications sent.
    pub cron_notified: AtomicU64,
    /// Notifications that could not be delivered.
    pub notify_failures: AtomicU64,
    /// Duration of the last pass, microseconds.
    pub last_pass_us: AtomicU64,
    /// Sum of pass durations, microseconds.
    pub pass_us_total: AtomicU64,
}

impl Metrics {
    /// Counts an applied decision.
    pub fn decided(&self, kind: Kind) {
        let mut m = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(kind.as_str()).or_default() += 1;
    }

    /// Decisions applied, by kind.
    pub fn decisions(&self) -> BTreeMap<&'static str, u64> {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter("uglyfox_passes_total", "Passes run.", get(&self.passes));
        counter(
            "uglyfox_pass_failures_total",
            "Passes that could not read the store or the deployment.",
            get(&self.pass_failures),
        );
        counter(
            "uglyfox_terminations_total",
            "Runners ended (drained or removed).",
            get(&self.terminations),
        );
        counter(
            "uglyfox_termination_failures_total",
            "Machine removals that failed and will be retried.",
            get(&self.termination_failures),
        );
        counter(
            "uglyfox_terminations_forced_total",
            "Removals forced after the last attempt; the machine may still exist.",
            get(&self.terminations_forced),
        );
        counter(
            "uglyfox_failures_total",
            "Decisions that failed to apply.",
            get(&self.failures),
        );
        counter(
            "uglyfox_claims_lost_total",
            "Egg pool decisions left to another UglyFox instance.",
            get(&self.claims_lost),
        );
        counter(
            "uglyfox_rules_skipped_total",
            "Rule evaluations skipped because a metric was missing.",
            get(&self.rules_skipped),
        );
        counter(
            "uglyfox_cron_runs_total",
            "Cron runs queued.",
            get(&self.cron_runs),
        );
        counter(
            "uglyfox_cron_notified_total",
            "Cron failure notifications sent.",
            get(&self.cron_notified),
        );
        counter(
            "uglyfox_notify_failures_total",
            "Notifications that could not be delivered.",
            get(&self.notify_failures),
        );
        let _ = writeln!(
            s,
            "# HELP uglyfox_decisions_total Decisions applied, by kind.\n# TYPE uglyfox_decisions_total counter"
        );
        let d = self.decisions();
        for k in Kind::ALL {
            let _ = writeln!(
                s,
                "uglyfox_decisions_total{{kind=\"{}\"}} {}",
                k.as_str(),
                d.get(k.as_str()).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            s,
            "# HELP uglyfox_pass_seconds Time of the last pass.\n# TYPE uglyfox_pass_seconds gauge\nuglyfox_pass_seconds {:.6}",
            get(&self.last_pass_us) as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "# HELP uglyfox_pass_seconds_total Time spent in passes.\n# TYPE uglyfox_pass_seconds_total counter\nuglyfox_pass_seconds_total {:.6}",
            get(&self.pass_us_total) as f64 / 1e6
        );
        s
    }
}
