//! What UglyFox reads from the deployed IR, in one place: pool sizes at a time, the
//! throttle, an egg's runner cap and the metrics a condition reads.

use chrono::{DateTime, Utc};
use fly_ir::{Condition, Metric};

/// How many runners one pass may create and end (`None`: no limit — only when the
/// deployment has no `uglyfox` block, so nothing is created or pruned anyway).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Throttle {
    /// New runners requested per pass.
    pub create: Option<u32>,
    /// Runners ended (drained or removed) per pass.
    pub terminate: Option<u32>,
}

/// The throttle of the `uglyfox` block (0: the pass only reports).
pub fn throttle(uf: &fly_ir::UglyFox) -> Throttle {
    Throttle {
        create: Some(uf.throttle.create_per_pass),
        terminate: Some(uf.throttle.terminate_per_pass),
    }
}

/// The pool's `min_count` in force at `t` (scale windows included), never above
/// `max_count`.
pub fn min_count_at(pool: &fly_ir::Pool, t: DateTime<Utc>) -> u32 {
    pool.min_count_at(t).min(pool.max_count)
}

/// The most runners an egg may have at once.
pub fn max_runners(egg: &fly_ir::Egg) -> Option<u32> {
    Some(egg.runner.max_runners)
}

/// How long an Apex runner may stay idle before it is demoted: the Apex `idle_timeout`,
/// else Nadir's (the issue's rule: "an idle Apex runner past Nadir's idle_timeout is
/// demoted"); `None`: never.
pub fn apex_idle_limit(uf: &fly_ir::UglyFox) -> Option<u64> {
    uf.apex.idle_timeout_s.or(uf.nadir.idle_timeout_s)
}

/// The metrics `c` reads, each once, in order of appearance.
pub fn condition_metrics(c: &Condition) -> Vec<Metric> {
    c.metrics()
}
