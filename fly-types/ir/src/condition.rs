//! Compiled policy conditions and their evaluation against a runner's metrics.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A runner metric a condition can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Failures since the runner started.
    FailedCount,
    /// Time since the runner was created.
    Age,
    /// Time since the runner last ran a job.
    IdleTime,
    /// Runner state or pool (`active`, `apex`, …).
    State,
    /// Jobs run so far.
    JobCount,
    /// CPU use, percent.
    CpuUsage,
    /// Memory use, percent.
    MemoryUsage,
    /// Disk use, percent.
    DiskUsage,
    /// Time since the last heartbeat.
    LastHeartbeatAge,
}

/// What kind of value a metric holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// A whole number.
    Count,
    /// A duration (compare with `30m`, `1h`).
    Duration,
    /// A percentage 0–100.
    Percent,
    /// A runner state or pool name.
    State,
}

impl Metric {
    /// Every metric with its Fly name, type and meaning.
    pub const ALL: &'static [(Metric, &'static str, MetricType, &'static str)] = &[
        (Metric::FailedCount, "failed_count", MetricType::Count, "number of failed jobs or health checks since the runner started"),
        (Metric::Age, "age", MetricType::Duration, "time since the runner was created"),
        (Metric::IdleTime, "idle_time", MetricType::Duration, "time since the runner last finished a job"),
        (Metric::State, "state", MetricType::State, "the runner's state (provisioning, active, idle, failed, terminated) or pool (apex, nadir)"),
        (Metric::JobCount, "job_count", MetricType::Count, "number of jobs the runner has run"),
        (Metric::CpuUsage, "cpu_usage", MetricType::Percent, "CPU use in percent (0–100) at the last heartbeat"),
        (Metric::MemoryUsage, "memory_usage", MetricType::Percent, "memory use in percent (0–100) at the last heartbeat"),
        (Metric::DiskUsage, "disk_usage", MetricType::Percent, "disk use in percent (0–100) at the last heartbeat"),
        (Metric::LastHeartbeatAge, "last_heartbeat_age", MetricType::Duration, "time since the runner's last heartbeat"),
    ];

    /// The metric named `name` in Fly.
    pub fn from_name(name: &str) -> Option<Metric> {
        Self::ALL.iter().find(|m| m.1 == name).map(|m| m.0)
    }

    /// Its Fly name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|m| m.0 == self)
            .map(|m| m.1)
            .unwrap_or("")
    }

    /// Its type.
    pub fn ty(self) -> MetricType {
        Self::ALL
            .iter()
            .find(|m| m.0 == self)
            .map(|m| m.2)
            .unwrap_or(MetricType::Count)
    }

    /// What it means.
    pub fn doc(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|m| m.0 == self)
            .map(|m| m.3)
            .unwrap_or("")
    }
}

/// A runner state or pool name, as `state` compares with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunnerStateOrPool {
    /// Being created.
    Provisioning,
    /// Running jobs.
    Active,
    /// Waiting for jobs.
    Idle,
    /// Failed.
    Failed,
    /// Gone.
    Terminated,
    /// In the hot pool.
    Apex,
    /// In the cold pool.
    Nadir,
}

impl RunnerStateOrPool {
    /// Every value with its Fly spelling.
    pub const ALL: &'static [(RunnerStateOrPool, &'static str)] = &[
        (RunnerStateOrPool::Provisioning, "provisioning"),
        (RunnerStateOrPool::Active, "active"),
        (RunnerStateOrPool::Idle, "idle"),
        (RunnerStateOrPool::Failed, "failed"),
        (RunnerStateOrPool::Terminated, "terminated"),
        (RunnerStateOrPool::Apex, "apex"),
        (RunnerStateOrPool::Nadir, "nadir"),
    ];

    /// The value spelled `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|s| s.1 == name).map(|s| s.0)
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// The constant a metric is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operand {
    /// A number (counts and percentages).
    Number(f64),
    /// A duration in seconds.
    Seconds(u64),
    /// A runner state or pool.
    State(RunnerStateOrPool),
}

/// A compiled condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// All must hold.
    And(Vec<Condition>),
    /// One must hold.
    Or(Vec<Condition>),
    /// Must not hold.
    Not(Box<Condition>),
    /// `metric op constant`.
    Compare {
        /// The metric.
        metric: Metric,
        /// The operator.
        op: CmpOp,
        /// The constant.
        value: Operand,
    },
}

/// A runner's metrics as UglyFox sees them.
pub trait Metrics {
    /// Numeric metrics (counts, percentages) and durations in seconds.
    fn number(&self, metric: Metric) -> Option<f64>;
    /// The runner's state and its pool; `state == 'apex'` holds when either matches.
    fn states(&self) -> &[RunnerStateOrPool];
}

impl Condition {
    /// Every metric the condition reads, each once, in the order they first appear. A
    /// comparison with a metric the runner has not reported is false, so an executor that
    /// wants to tell "does not hold" from "cannot tell yet" checks these first.
    pub fn metrics(&self) -> Vec<Metric> {
        fn walk(c: &Condition, out: &mut Vec<Metric>) {
            match c {
                Condition::And(cs) | Condition::Or(cs) => cs.iter().for_each(|c| walk(c, out)),
                Condition::Not(c) => walk(c, out),
                Condition::Compare { metric, .. } => {
                    if !out.contains(metric) {
                        out.push(*metric);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Whether the condition holds; a comparison with a missing metric is false.
    pub fn evaluate(&self, m: &dyn Metrics) -> bool {
        match self {
            Condition::And(cs) => cs.iter().all(|c| c.evaluate(m)),
            Condition::Or(cs) => cs.iter().any(|c| c.evaluate(m)),
            Condition::Not(c) => !c.evaluate(m),
            Condition::Compare { metric, op, value } => match value {
                Operand::State(s) => {
                    let has = m.states().contains(s);
                    match op {
                        CmpOp::Eq => has,
                        CmpOp::Ne => !has,
                        _ => false,
                    }
                }
                Operand::Number(n) => m.number(*metric).is_some_and(|v| op.holds(v, *n)),
                Operand::Seconds(s) => m.number(*metric).is_some_and(|v| op.holds(v, *s as f64)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Runner {
        failed: f64,
        age: f64,
        states: Vec<RunnerStateOrPool>,
    }

    impl Metrics for Runner {
        fn number(&self, metric: Metric) -> Option<f64> {
            match metric {
                Metric::FailedCount => Some(self.failed),
                Metric::Age => Some(self.age),
                _ => None,
            }
        }
        fn states(&self) -> &[RunnerStateOrPool] {
            &self.states
        }
    }

    #[test]
    fn evaluates_the_design_documents_rule() {
        // failed_count >= 3 AND age > 1h
        let c = Condition::And(vec![
            Condition::Compare {
                metric: Metric::FailedCount,
                op: CmpOp::Ge,
                value: Operand::Number(3.0),
            },
            Condition::Compare {
                metric: Metric::Age,
                op: CmpOp::Gt,
                value: Operand::Seconds(3600),
            },
        ]);
        let old_failing = Runner {
            failed: 3.0,
            age: 3601.0,
            states: vec![],
        };
        let young = Runner {
            failed: 5.0,
            age: 60.0,
            states: vec![],
        };
        assert!(c.evaluate(&old_failing));
        assert!(!c.evaluate(&young));
        let apex = Condition::Compare {
            metric: Metric::State,
            op: CmpOp::Eq,
            value: Operand::State(RunnerStateOrPool::Apex),
        };
        let r = Runner {
            failed: 0.0,
            age: 0.0,
            states: vec![RunnerStateOrPool::Idle, RunnerStateOrPool::Apex],
        };
        assert!(apex.evaluate(&r));
        assert!(!Condition::Not(Box::new(apex)).evaluate(&r));
        // A missing metric never satisfies a comparison.
        let idle = Condition::Compare {
            metric: Metric::IdleTime,
            op: CmpOp::Lt,
            value: Operand::Seconds(10),
        };
        assert!(!idle.evaluate(&r));
    }

    #[test]
    fn metrics_are_listed_once_in_first_use_order() {
        let cmp = |metric, n| Condition::Compare {
            metric,
            op: CmpOp::Gt,
            value: Operand::Number(n),
        };
        // (cpu_usage > 90 OR NOT age > 1) AND cpu_usage > 95 AND (failed_count > 0 OR age > 2)
        let c = Condition::And(vec![
            Condition::Or(vec![
                cmp(Metric::CpuUsage, 90.0),
                Condition::Not(Box::new(cmp(Metric::Age, 1.0))),
            ]),
            cmp(Metric::CpuUsage, 95.0),
            Condition::Or(vec![cmp(Metric::FailedCount, 0.0), cmp(Metric::Age, 2.0)]),
        ]);
        assert_eq!(
            c.metrics(),
            [Metric::CpuUsage, Metric::Age, Metric::FailedCount]
        );
        assert_eq!(cmp(Metric::State, 0.0).metrics(), [Metric::State]);
        assert!(Condition::And(Vec::new()).metrics().is_empty());
    }
}
