//! Counters for `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Labelled counters, by metric name and label value.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

/// What each counter counts (its `# HELP` line) and its label name.
const HELP: &[(&str, &str, &str)] = &[
    ("mothergoose_webhooks_total", "result", "Webhook deliveries by answer (queued, duplicate, unauthorized, forbidden, bad_request, too_large, unavailable)."),
    ("mothergoose_events_total", "kind", "Webhook events processed by kind."),
    ("mothergoose_unmatched_total", "reason", "GitLab jobs no egg serves, by reason."),
    ("mothergoose_tasks_total", "outcome", "Tasks by kind and outcome (done, retry, dead)."),
    ("mothergoose_runners_total", "event", "Runner lifecycle events (created, assigned, provisioned, failed, terminated)."),
    ("mothergoose_gitlab_errors_total", "call", "GitLab calls that failed."),
    ("mothergoose_heartbeats_total", "result", "Runner heartbeats by answer."),
    ("mothergoose_provider_errors_total", "kind", "Provider failures (retryable, permanent)."),
];

impl Metrics {
    /// Adds one to `name{label=value}`.
    pub fn inc(&self, name: &'static str, value: impl Into<String>) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((name, value.into())).or_insert(0) += 1;
    }

    /// A counter's value (tests).
    pub fn get(&self, name: &'static str, value: &str) -> u64 {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.get(&(name, value.to_string())).copied().unwrap_or(0)
    }

    /// The counters and the given gauges as Prometheus text.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, label, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, v), count) in c.iter() {
                if n == name {
                    let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {count}", escape(v));
                }
            }
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc("mothergoose_webhooks_total", "queued");
        m.inc("mothergoose_webhooks_total", "queued");
        m.inc("mothergoose_unmatched_total", "no \"egg\"");
        let text = m.render(&[("mothergoose_queue_ready", "Tasks ready.", 3.0)]);
        assert!(
            text.contains("mothergoose_webhooks_total{result=\"queued\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("reason=\"no \\\"egg\\\"\""), "{text}");
        assert!(text.contains("# TYPE mothergoose_queue_ready gauge\nmothergoose_queue_ready 3\n"));
    }
}
