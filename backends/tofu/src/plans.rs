//! Stored plans: every plan a runner's state is changed by is kept, so it can be applied
//! later without planning again (a rollback, or finishing an interrupted apply).
//!
//! For plan `ID` of runner `R` of egg `E` (names made key-safe):
//!
//! - `tofu-plans/E/R/ID.tfplan`: the plan file `tofu plan -out` wrote;
//! - `tofu-plans/E/R/ID.config.json`: the [`ConfigBundle`] it was made from (a saved plan
//!   is applied in a workspace initialised from the same configuration and lock file);
//! - a `deployment_plans` record: `id` = `ID`, `plan_type` `runner`, `egg_name` E,
//!   `plan_key` (the plan file), `ir_key` (the bundle), `config_hash` (SHA-256 of the
//!   bundle), `status` `pending` → `applied` | `failed`, `rollback_plan_id` (the runner's
//!   plan that was applied before it), and in `metadata` the runner, the action
//!   (`create`/`destroy`), the plan file's SHA-256 and, on failure, the error.
//!
//! `ID` is `tofu-{milliseconds:013}-{random hex}`, so a runner's plans list in time order.
//! Runner plans carry `version` 0: they never move the Nest's deployment numbering, which
//! counts whole-Nest deployments only.
//!
//! The plan file holds the values OpenTofu planned with, the user data (and so the
//! runner's credential) included: configure state and plan encryption
//! ([`crate::runner::RunnerConfig::encryption_passphrase`]) in production.

use crate::cache::sha256_hex;
use crate::error::TofuError;
use crate::render::segment;
use crate::workspace::ConfigBundle;
use gosling_state::{
    DeploymentPlan, Expect, ObjectStore, PlanStatus, SharedClock, StateStore, Versioned,
};
use serde_json::json;
use std::sync::Arc;

/// `plan_type` of a runner's plan.
pub const PLAN_TYPE: &str = "runner";

/// What a plan does to the runner's machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Creates (or changes) it.
    Create,
    /// Destroys it.
    Destroy,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Destroy => "destroy",
        }
    }
}

/// A stored plan, read back and checked.
#[derive(Clone, Debug)]
pub struct StoredPlan {
    /// Its record.
    pub record: Versioned<DeploymentPlan>,
    /// The plan file.
    pub plan: Vec<u8>,
    /// The configuration it was made from.
    pub bundle: ConfigBundle,
}

/// Stored plans in the object store and the `deployment_plans` table.
#[derive(Clone)]
pub struct PlanStore {
    objects: Arc<dyn ObjectStore>,
    state: Arc<dyn StateStore>,
    clock: SharedClock,
}

impl std::fmt::Debug for PlanStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanStore")
            .field("objects", &self.objects.describe())
            .finish()
    }
}

/// The object key prefix of a runner's plans.
pub fn runner_prefix(egg: &str, runner_id: &str) -> String {
    format!("tofu-plans/{}/{}/", segment(egg), segment(runner_id))
}

/// The key of the runner's latest configuration.
pub fn config_key(egg: &str, runner_id: &str) -> String {
    format!("{}config.json", runner_prefix(egg, runner_id))
}

impl PlanStore {
    /// Plans in these stores.
    pub fn new(
        objects: Arc<dyn ObjectStore>,
        state: Arc<dyn StateStore>,
        clock: SharedClock,
    ) -> PlanStore {
        PlanStore {
            objects,
            state,
            clock,
        }
    }

    /// A fresh plan id.
    pub fn new_id(&self) -> String {
        format!(
            "tofu-{:013}-{:08x}",
            self.clock.now().timestamp_millis().max(0),
            rand::random::<u32>()
        )
    }

    /// Stores the runner's latest configuration (what status and terminate work from when
    /// the workspace is gone).
    pub async fn put_config(&self, bundle: &ConfigBundle) -> Result<(), TofuError> {
        self.objects
            .put(
                &config_key(&bundle.egg, &bundle.runner_id),
                bundle.to_bytes(),
            )
            .await?;
        Ok(())
    }

    /// The runner's latest configuration.
    pub async fn config(
        &self,
        egg: &str,
        runner_id: &str,
    ) -> Result<Option<ConfigBundle>, TofuError> {
        let Some(bytes) = self.objects.get(&config_key(egg, runner_id)).await? else {
            return Ok(None);
        };
        ConfigBundle::from_bytes(&bytes)
            .map(Some)
            .map_err(|reason| TofuError::BadPlan {
                id: config_key(egg, runner_id),
                reason,
            })
    }

    /// The runner's plans, newest first.
    pub async fn runner_plans(&self, egg: &str, runner_id: &str) -> Result<Vec<String>, TofuError> {
        let prefix = runner_prefix(egg, runner_id);
        let mut ids: Vec<String> = self
            .objects
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix(&prefix)
                    .and_then(|n| n.strip_suffix(".tfplan"))
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids.reverse();
        Ok(ids)
    }

    /// The runner's most recent applied plan.
    pub async fn last_applied(
        &self,
        egg: &str,
        runner_id: &str,
    ) -> Result<Option<Versioned<DeploymentPlan>>, TofuError> {
        for id in self.runner_plans(egg, runner_id).await? {
            if let Some(p) = self.state.plan(&id).await? {
                if p.item.status == PlanStatus::Applied {
                    return Ok(Some(p));
                }
            }
        }
        Ok(None)
    }

    /// Stores a new plan (`pending`).
    pub async fn record(
        &self,
        id: &str,
        bundle: &ConfigBundle,
        action: Action,
        plan: Vec<u8>,
    ) -> Result<Versioned<DeploymentPlan>, TofuError> {
        let prefix = runner_prefix(&bundle.egg, &bundle.runner_id);
        let plan_key = format!("{prefix}{id}.tfplan");
        let config_key = format!("{prefix}{id}.config.json");
        let bundle_bytes = bundle.to_bytes();
        let config_hash = sha256_hex(&bundle_bytes);
        let plan_sha = sha256_hex(&plan);
        let rollback = self
            .last_applied(&bundle.egg, &bundle.runner_id)
            .await?
            .map(|p| p.item.id);
        self.objects.put(&config_key, bundle_bytes).await?;
        self.objects.put(&plan_key, plan).await?;
        let record = DeploymentPlan {
            id: id.to_string(),
            version: 0,
            egg_name: Some(bundle.egg.clone()),
            plan_type: PLAN_TYPE.into(),
            plan_key,
            ir_key: config_key,
            config_hash,
            created_at: self.clock.now(),
            applied_at: None,
            status: PlanStatus::Pending,
            rollback_plan_id: rollback,
            metadata: json!({
                "runner_id": bundle.runner_id,
                "action": action.as_str(),
                "address": bundle.address,
                "state_key": bundle.state_key,
                "plan_sha256": plan_sha,
            }),
        };
        let version = self.state.put_plan(&record, Expect::Absent).await?;
        Ok(Versioned {
            item: record,
            version,
        })
    }

    /// Marks a plan `applied` (now) or `failed` (with the error).
    pub async fn mark(
        &self,
        plan: &Versioned<DeploymentPlan>,
        outcome: Result<(), &str>,
    ) -> Result<Versioned<DeploymentPlan>, TofuError> {
        let mut item = plan.item.clone();
        match outcome {
            Ok(()) => {
                item.status = PlanStatus::Applied;
                item.applied_at = Some(self.clock.now());
                if let Some(m) = item.metadata.as_object_mut() {
                    m.remove("error");
                }
            }
            Err(e) => {
                item.status = PlanStatus::Failed;
                let e: String = e.chars().take(4000).collect();
                item.metadata["error"] = json!(e);
            }
        }
        let version = self
            .state
            .put_plan(&item, Expect::Version(plan.version))
            .await?;
        Ok(Versioned { item, version })
    }

    /// Marks an applied plan `rolled_back` (another stored plan replaced it).
    pub async fn mark_rolled_back(
        &self,
        plan: &Versioned<DeploymentPlan>,
    ) -> Result<(), TofuError> {
        let mut item = plan.item.clone();
        item.status = PlanStatus::RolledBack;
        self.state
            .put_plan(&item, Expect::Version(plan.version))
            .await?;
        Ok(())
    }

    /// A stored plan with its plan file and configuration, each checked against the
    /// checksum the record holds.
    pub async fn load(&self, id: &str) -> Result<StoredPlan, TofuError> {
        let record = self
            .state
            .plan(id)
            .await?
            .ok_or_else(|| TofuError::NoSuchPlan(id.to_string()))?;
        let bad = |reason: &str| TofuError::BadPlan {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        if record.item.plan_type != PLAN_TYPE {
            return Err(bad("it is not a runner's OpenTofu plan"));
        }
        let bundle_bytes = self
            .objects
            .get(&record.item.ir_key)
            .await?
            .ok_or_else(|| bad("its configuration is missing from the object store"))?;
        if sha256_hex(&bundle_bytes) != record.item.config_hash {
            return Err(bad(
                "its configuration does not match the recorded checksum",
            ));
        }
        let plan = self
            .objects
            .get(&record.item.plan_key)
            .await?
            .ok_or_else(|| bad("its plan file is missing from the object store"))?;
        if record.item.metadata["plan_sha256"].as_str() != Some(sha256_hex(&plan).as_str()) {
            return Err(bad("its plan file does not match the recorded checksum"));
        }
        let bundle = ConfigBundle::from_bytes(&bundle_bytes).map_err(|r| bad(&r))?;
        Ok(StoredPlan {
            record,
            plan,
            bundle,
        })
    }
}
