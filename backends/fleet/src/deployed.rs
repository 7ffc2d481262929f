//! The deployed IR, as the executors see it: the current deployment's IR read from the
//! object store (checked against its recorded hash), and a watch that reloads it when
//! `gosling deploy` or `gosling rollback` moves the pointer (Property 28).

use fly_ir::Deployment;
use gosling_state::{DeploymentPlan, ObjectStore, StateError, StateStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why the deployed IR could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DeployedError {
    /// The store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A stored deployment cannot be read back.
    #[error("deployment {id}: {reason}")]
    Stored {
        /// Its id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// The current deployment.
#[derive(Clone, Debug)]
pub struct Deployed {
    /// Its version.
    pub version: u64,
    /// Its `deployment_plans` id.
    pub plan_id: String,
    /// The version of the pointer when it was read (changes on every deploy/rollback).
    pub pointer_version: u64,
    /// The IR.
    pub ir: Arc<Deployment>,
}

impl Deployed {
    /// The egg with this name.
    pub fn egg(&self, name: &str) -> Option<&fly_ir::Egg> {
        self.ir.egg(name)
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    gosling_state::hex(&sha2::Sha256::digest(bytes))
}

/// The IR of a deployment record, checked against its hash.
pub async fn load_ir(
    objects: &dyn ObjectStore,
    p: &DeploymentPlan,
) -> Result<Deployment, DeployedError> {
    let stored = |reason: String| DeployedError::Stored {
        id: p.id.clone(),
        reason,
    };
    let bytes = objects.get(&p.ir_key).await?.ok_or_else(|| {
        stored(format!(
            "its IR `{}` is missing from {}",
            p.ir_key,
            objects.describe()
        ))
    })?;
    if sha256(&bytes) != p.config_hash {
        return Err(stored(format!(
            "its IR `{}` does not match the recorded hash",
            p.ir_key
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| stored("its IR is not UTF-8".into()))?;
    Deployment::from_json(&text).map_err(|e| stored(e.to_string()))
}

/// The current deployment, if there is one.
pub async fn load_current(
    store: &dyn StateStore,
    objects: &dyn ObjectStore,
) -> Result<Option<Deployed>, DeployedError> {
    let Some(pointer) = store.current().await? else {
        return Ok(None);
    };
    let plan = store
        .plan(&pointer.item.plan_id)
        .await?
        .ok_or_else(|| DeployedError::Stored {
            id: pointer.item.plan_id.clone(),
            reason: "the current deployment's record is missing".into(),
        })?;
    let ir = load_ir(objects, &plan.item).await?;
    Ok(Some(Deployed {
        version: plan.item.version,
        plan_id: plan.item.id,
        pointer_version: pointer.version,
        ir: Arc::new(ir),
    }))
}

/// The current deployment, kept up to date by a background task.
#[derive(Clone, Debug)]
pub struct DeployedWatch {
    rx: watch::Receiver<Option<Arc<Deployed>>>,
}

impl DeployedWatch {
    /// A watch that always shows `d` (tests, `--config` modes).
    pub fn fixed(d: Option<Deployed>) -> DeployedWatch {
        let (_tx, rx) = watch::channel(d.map(Arc::new));
        DeployedWatch { rx }
    }

    /// Loads the current deployment now, then checks the pointer every `every` and reloads
    /// when it moved. A failed reload keeps the deployment in force and is logged.
    pub async fn start(
        store: Arc<dyn StateStore>,
        objects: Arc<dyn ObjectStore>,
        every: Duration,
    ) -> Result<DeployedWatch, DeployedError> {
        let first = load_current(&*store, &*objects).await?;
        let (tx, rx) = watch::channel(first.map(Arc::new));
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                if tx.is_closed() {
                    return;
                }
                let seen = tx.borrow().as_ref().map(|d| d.pointer_version);
                let pointer = match store.current().await {
                    Ok(p) => p.map(|p| p.version),
                    Err(e) => {
                        if !failing {
                            tracing::warn!("reading the current deployment failed: {e}");
                        }
                        failing = true;
                        continue;
                    }
                };
                if pointer == seen {
                    failing = false;
                    continue;
                }
                match load_current(&*store, &*objects).await {
                    Ok(d) => {
                        failing = false;
                        if let Some(d) = &d {
                            tracing::info!(
                                version = d.version,
                                "a new deployment is current; using its IR"
                            );
                        }
                        tx.send_replace(d.map(Arc::new));
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(
                                "loading the new deployment failed, keeping the current one: {e}"
                            );
                        }
                        failing = true;
                    }
                }
            }
        });
        Ok(DeployedWatch { rx })
    }

    /// The deployment in force now.
    pub fn current(&self) -> Option<Arc<Deployed>> {
        self.rx.borrow().clone()
    }

    /// Waits until the deployment changes.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}
