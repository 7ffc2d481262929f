//! The tofu runner: a runner's workspace prepared from its configuration (files written,
//! provider cache restored, `init` when anything changed), then plans made, stored and
//! applied ([`TofuRunner::plan_and_apply`]), stored plans applied again without planning
//! ([`TofuRunner::apply_stored`]), and the state read back ([`TofuRunner::resource`]).
//!
//! One operation at a time per workspace in this process (an async lock per directory);
//! across processes OpenTofu's state lock (the backend's lock table) serialises them.

use crate::cache::{ProviderCache, Restored};
use crate::cli::Tofu;
use crate::error::TofuError;
use crate::hcl;
use crate::plans::{Action, PlanStore};
use crate::render::{render_tofurc, RenderError};
use crate::workspace::{ConfigBundle, Workspace};
use gosling_state::{
    DeploymentPlan, ObjectStore, SecretString, SharedClock, StateStore, Versioned,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where the runner works and how OpenTofu protects what it stores.
#[derive(Clone)]
pub struct RunnerConfig {
    /// The workspaces' root directory (`ROOT/EGG/RUNNER/`).
    pub workspaces: PathBuf,
    /// Where provider plugins restored from the object store are unpacked (shared by the
    /// workspaces of this machine); default `WORKSPACES/.providers`.
    pub mirror_root: Option<PathBuf>,
    /// A provider network mirror used instead of the registry.
    pub network_mirror: Option<String>,
    /// When set, OpenTofu encrypts states and plan files (pbkdf2 key, AES-GCM, `enforced`),
    /// configured through `TF_ENCRYPTION` in its environment only. At least 16 characters.
    pub encryption_passphrase: Option<SecretString>,
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("workspaces", &self.workspaces)
            .field("mirror_root", &self.mirror_root)
            .field("network_mirror", &self.network_mirror)
            .field("encryption", &self.encryption_passphrase.is_some())
            .finish()
    }
}

impl RunnerConfig {
    /// Workspaces under `dir`, nothing else set.
    pub fn new(dir: impl Into<PathBuf>) -> RunnerConfig {
        RunnerConfig {
            workspaces: dir.into(),
            mirror_root: None,
            network_mirror: None,
            encryption_passphrase: None,
        }
    }
}

/// The `TF_ENCRYPTION` value for a passphrase: state and plans encrypted, enforced.
pub fn encryption_config(passphrase: &str) -> String {
    format!(
        "key_provider \"pbkdf2\" \"gosling\" {{\n  passphrase = {}\n}}\n\
         method \"aes_gcm\" \"gosling\" {{\n  keys = key_provider.pbkdf2.gosling\n}}\n\
         state {{\n  method   = method.aes_gcm.gosling\n  enforced = true\n}}\n\
         plan {{\n  method   = method.aes_gcm.gosling\n  enforced = true\n}}\n",
        hcl::quote(passphrase)
    )
}

/// Runs OpenTofu for runners.
pub struct TofuRunner {
    tofu: Tofu,
    config: RunnerConfig,
    cache: ProviderCache,
    plans: PlanStore,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for TofuRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TofuRunner")
            .field("tofu", &self.tofu)
            .field("config", &self.config)
            .finish()
    }
}

impl TofuRunner {
    /// A runner using `tofu`, keeping plans and the plugin cache in `objects` and plan
    /// records in `state`.
    pub fn new(
        mut tofu: Tofu,
        config: RunnerConfig,
        objects: Arc<dyn ObjectStore>,
        state: Arc<dyn StateStore>,
        clock: SharedClock,
    ) -> Result<TofuRunner, TofuError> {
        if let Some(p) = &config.encryption_passphrase {
            if p.expose().chars().count() < 16 {
                return Err(RenderError::Settings(
                    "the state encryption passphrase needs at least 16 characters".into(),
                )
                .into());
            }
            tofu.secrets.insert(
                "TF_ENCRYPTION".into(),
                SecretString::new(encryption_config(p.expose())),
            );
        }
        let mirror_root = config
            .mirror_root
            .clone()
            .unwrap_or_else(|| config.workspaces.join(".providers"));
        Ok(TofuRunner {
            tofu,
            cache: ProviderCache::new(objects.clone(), &mirror_root),
            plans: PlanStore::new(objects, state, clock),
            config,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// The `tofu` it runs.
    pub fn tofu(&self) -> &Tofu {
        &self.tofu
    }

    /// The stored plans.
    pub fn plans(&self) -> &PlanStore {
        &self.plans
    }

    /// The workspace of a runner.
    pub fn workspace(&self, egg: &str, runner_id: &str) -> Workspace {
        Workspace::for_runner(&self.config.workspaces, egg, runner_id)
    }

    /// Waits for, and holds, the workspace's lock in this process.
    pub async fn lock(&self, ws: &Workspace) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Forget the locks nobody holds or waits for.
            locks.retain(|_, m| Arc::strong_count(m) > 1);
            locks.entry(ws.dir.clone()).or_default().clone()
        };
        m.lock_owned().await
    }

    async fn tofurc(
        &self,
        ws: &Workspace,
        bundle: &ConfigBundle,
        mirror: &std::path::Path,
    ) -> Result<bool, TofuError> {
        let sources: Vec<String> = bundle.requirements.keys().cloned().collect();
        let text = render_tofurc(
            &ws.plugin_cache_dir(),
            mirror,
            &sources,
            self.config.network_mirror.as_deref(),
        )?;
        ws.write_tofurc(&text)
    }

    /// Makes the runner's workspace ready: writes the configuration (and the bundle's lock
    /// file, if it has one), restores the provider cache, runs `init` when anything
    /// changed or it never ran, stores new cache entries, and records the lock file in
    /// `bundle`. The caller holds [`TofuRunner::lock`].
    pub async fn prepare(&self, bundle: &mut ConfigBundle) -> Result<Workspace, TofuError> {
        let ws = self.workspace(&bundle.egg, &bundle.runner_id);
        let before = ws.lock();
        let mut changed = ws.write(bundle)?;
        let restored = self
            .cache
            .restore(&ws, &bundle.requirements, bundle.lock.as_deref())
            .await?;
        // The CLI configuration only matters to `init`'s provider installation: a new
        // mirror path alone is no reason to run it again.
        self.tofurc(&ws, bundle, &restored.mirror_dir).await?;
        changed |= ws.lock() != before;
        if changed || !ws.initialised() {
            self.init(&ws, bundle, &restored).await?;
        }
        bundle.lock = ws.lock();
        Ok(ws)
    }

    async fn init(
        &self,
        ws: &Workspace,
        bundle: &ConfigBundle,
        restored: &Restored,
    ) -> Result<(), TofuError> {
        let readonly = restored.lock.is_some();
        let mut restored = restored.clone();
        match self.tofu.init(&ws.dir, readonly).await {
            Ok(()) => {}
            // Restored plugins that fail OpenTofu's checksum check are dropped, once.
            Err(e) if restored.plugins && mentions_checksum(&e) => {
                tracing::warn!(dir = %ws.dir.display(), "cached provider plugins failed their checksums; dropping them");
                if let Some(lock) = &restored.lock {
                    self.cache.invalidate(lock).await?;
                }
                restored.plugins = false;
                restored.mirror_dir = self.cache.no_mirror()?;
                self.tofurc(ws, bundle, &restored.mirror_dir).await?;
                self.tofu.init(&ws.dir, readonly).await?;
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = self.cache.save(ws, &bundle.requirements, &restored).await {
            // The cache only saves time: a failure to fill it fails nothing.
            tracing::warn!(error = %e, "could not store provider plugins in the cache");
        }
        Ok(())
    }

    /// The values of `address` in the runner's state (`tofu show -json`), if it is there.
    pub async fn resource(
        &self,
        ws: &Workspace,
        address: &str,
    ) -> Result<Option<serde_json::Value>, TofuError> {
        let state = self.tofu.show(&ws.dir).await?;
        let found = state["values"]["root_module"]["resources"]
            .as_array()
            .and_then(|rs| {
                rs.iter()
                    .find(|r| r["address"].as_str() == Some(address))
                    .map(|r| r["values"].clone())
            });
        Ok(found)
    }

    /// Reads every resource of the state back from the cloud (`apply -refresh-only`).
    pub async fn refresh(&self, ws: &Workspace) -> Result<(), TofuError> {
        self.tofu.refresh(&ws.dir, &[]).await
    }

    /// Plans (`plan -out`, `-destroy` for [`Action::Destroy`]); when anything changes,
    /// stores the plan (`pending`), applies it and marks it `applied` or `failed`. Returns
    /// the plan's record, or `None` when there was nothing to do. `vars` are given to
    /// `plan` only (a saved plan carries them).
    pub async fn plan_and_apply(
        &self,
        ws: &Workspace,
        bundle: &ConfigBundle,
        action: Action,
        vars: &[(&str, &SecretString)],
    ) -> Result<Option<Versioned<DeploymentPlan>>, TofuError> {
        let id = self.plans.new_id();
        let file = Workspace::plan_file(&id);
        let path = ws.dir.join(&file);
        let outcome = self
            .plan_apply_file(ws, bundle, action, vars, &id, &file)
            .await;
        // The plan file holds what was planned with (the user data): never left behind.
        let _ = std::fs::remove_file(&path);
        outcome
    }

    async fn plan_apply_file(
        &self,
        ws: &Workspace,
        bundle: &ConfigBundle,
        action: Action,
        vars: &[(&str, &SecretString)],
        id: &str,
        file: &str,
    ) -> Result<Option<Versioned<DeploymentPlan>>, TofuError> {
        let changes = self
            .tofu
            .plan(&ws.dir, file, action == Action::Destroy, vars)
            .await?;
        if !changes {
            return Ok(None);
        }
        let path = ws.dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| TofuError::io(&path, e))?;
        let record = self.plans.record(id, bundle, action, bytes).await?;
        let applied = self.tofu.apply_plan(&ws.dir, file).await;
        let message = applied.as_ref().err().map(|e| e.to_string());
        let record = self
            .plans
            .mark(&record, message.as_deref().map_or(Ok(()), Err))
            .await?;
        applied.map(|()| Some(record))
    }

    /// Applies stored plan `id` without planning again: its workspace is made from the
    /// configuration and lock file stored with it, the plan file is applied, and the
    /// record marked `applied` (or `failed`). A plan already applied is returned as it is.
    /// When the runner's last applied plan is newer than this one (a rollback), that one
    /// becomes `rolled_back`. OpenTofu refuses a plan whose state changed since it was made
    /// ("Saved plan is stale": [`TofuError::is_stale_plan`]); such a plan cannot be used.
    pub async fn apply_stored(&self, id: &str) -> Result<Versioned<DeploymentPlan>, TofuError> {
        let stored = self.plans.load(id).await?;
        if stored.record.item.status == gosling_state::PlanStatus::Applied {
            return Ok(stored.record);
        }
        let mut bundle = stored.bundle;
        let ws = self.workspace(&bundle.egg, &bundle.runner_id);
        let _guard = self.lock(&ws).await;
        let ws = self.prepare(&mut bundle).await?;
        let previous = self
            .plans
            .last_applied(&bundle.egg, &bundle.runner_id)
            .await?;
        let file = Workspace::plan_file(id);
        let path = ws.dir.join(&file);
        std::fs::write(&path, &stored.plan).map_err(|e| TofuError::io(&path, e))?;
        let applied = self.tofu.apply_plan(&ws.dir, &file).await;
        let _ = std::fs::remove_file(&path);
        let message = applied.as_ref().err().map(|e| e.to_string());
        let record = self
            .plans
            .mark(&stored.record, message.as_deref().map_or(Ok(()), Err))
            .await?;
        applied?;
        self.plans.put_config(&bundle).await?;
        if let Some(prev) = previous {
            if prev.item.id > record.item.id {
                self.plans.mark_rolled_back(&prev).await?;
            }
        }
        Ok(record)
    }
}

fn mentions_checksum(e: &TofuError) -> bool {
    matches!(e, TofuError::Failed { output, .. } if output.contains("checksum") || output.contains("doesn't match any of the checksums"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_config_quotes_the_passphrase() {
        let c = encryption_config("a\"b${c}");
        assert!(c.contains("passphrase = \"a\\\"b$${c}\""));
        assert!(c.contains("enforced = true"));
    }
}
