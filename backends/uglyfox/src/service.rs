//! UglyFox as a service: a pass (snapshot → plan → apply), a cron tick, and the loop that
//! runs them — a pass every `check_interval` of the deployment in force (re-read each
//! pass), a cron tick every `cron_every`.

use crate::apply::{Applier, Report};
use crate::cron::{Cron, JobDecision, JobOutcome};
use crate::planner::{plan, Config, Plan};
use crate::snapshot::Snapshot;
use crate::{policy, Error};
use fly_ir::{Deployment, Metric, RunnerKind};
use gosling_fleet::DeployedWatch;
use gosling_state::{SharedClock, StateStore};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// UglyFox: the applier, the cron runner and what they share.
pub struct UglyFox {
    /// The store.
    pub store: Arc<dyn StateStore>,
    /// Time.
    pub clock: SharedClock,
    /// The planner's settings.
    pub config: Config,
    /// Applies plans.
    pub applier: Applier,
    /// Runs cron Jobs.
    pub cron: Cron,
    /// How often cron Jobs are looked at.
    pub cron_every: Duration,
}

impl std::fmt::Debug for UglyFox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UglyFox({})", self.store.describe())
    }
}

/// The VM eggs of a deployment (the ones with pools).
pub fn pool_eggs(ir: Option<&Deployment>) -> Vec<String> {
    ir.map(|d| {
        d.eggs
            .iter()
            .filter(|e| e.kind == RunnerKind::Vm)
            .map(|e| e.name.clone())
            .collect()
    })
    .unwrap_or_default()
}

/// Whether some rule reads a metric that only the `runner_metrics` samples hold.
pub fn needs_samples(ir: Option<&Deployment>) -> bool {
    ir.and_then(|d| d.uglyfox.as_ref()).is_some_and(|uf| {
        uf.policies.iter().any(|r| {
            policy::condition_metrics(&r.condition).iter().any(|m| {
                matches!(
                    m,
                    Metric::CpuUsage | Metric::MemoryUsage | Metric::DiskUsage
                )
            })
        })
    })
}

/// Loads the snapshot of `store` at `now` for `ir` and plans the pass (writes nothing).
pub async fn plan_from_store(
    store: &dyn StateStore,
    ir: Option<&Deployment>,
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Plan, Error> {
    let snap = Snapshot::load(store, now, &pool_eggs(ir), needs_samples(ir)).await?;
    Ok(plan(&snap, ir, config))
}

/// Now + `d`, at most a day ahead (a huge interval is not an overflow).
fn later(d: Duration) -> Instant {
    let d = d.min(Duration::from_secs(24 * 3600));
    Instant::now() + d
}

impl UglyFox {
    /// The plan of a pass now (writes nothing).
    pub async fn plan(&self, ir: Option<&Deployment>) -> Result<Plan, Error> {
        plan_from_store(&*self.store, ir, &self.config, self.clock.now()).await
    }

    /// One pass: snapshot, plan, apply.
    pub async fn pass(&self, ir: Option<&Deployment>) -> Result<(Plan, Report), Error> {
        let started = Instant::now();
        let m = &self.applier.metrics;
        let result = async {
            let plan = self.plan(ir).await?;
            let report = self.applier.apply(&plan, ir).await;
            Ok::<_, Error>((plan, report))
        }
        .await;
        let us = started.elapsed().as_micros() as u64;
        m.passes.fetch_add(1, Ordering::Relaxed);
        m.last_pass_us.store(us, Ordering::Relaxed);
        m.pass_us_total.fetch_add(us, Ordering::Relaxed);
        if result.is_err() {
            m.pass_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// One cron tick now.
    pub async fn cron_tick(
        &self,
        ir: &Deployment,
    ) -> Result<Vec<(JobDecision, JobOutcome)>, Error> {
        Ok(self.cron.tick(ir, self.clock.now()).await?)
    }

    /// Runs passes and cron ticks until `shutdown` resolves.
    pub async fn run(
        &self,
        deployed: DeployedWatch,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut next_pass = Instant::now();
        let mut next_cron = Instant::now();
        loop {
            let current = deployed.current();
            let ir = current.as_ref().map(|d| &*d.ir);
            let now = Instant::now();
            if now >= next_cron {
                if let Some(ir) = ir {
                    if let Err(e) = self.cron_tick(ir).await {
                        tracing::warn!("cron tick failed: {e}");
                    }
                }
                next_cron = later(self.cron_every);
            }
            if now >= next_pass {
                match self.pass(ir).await {
                    Ok((plan, report)) => {
                        if !plan.decisions.is_empty() {
                            tracing::info!(
                                decisions = plan.decisions.len(),
                                done = report.done(),
                                "pass"
                            );
                        }
                    }
                    Err(e) => tracing::warn!("pass failed: {e}"),
                }
                let every = ir
                    .and_then(|d| d.uglyfox.as_ref())
                    .map(|u| Duration::from_secs(u.pruning.check_interval_s.max(1)))
                    .unwrap_or(self.config.default_check_interval);
                next_pass = later(every);
            }
            let wake = next_pass.min(next_cron);
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }
}
