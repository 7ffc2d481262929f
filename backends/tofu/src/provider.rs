//! [`TofuProvider`]: runner machines made by OpenTofu, behind gosling-fleet's
//! [`Provider`] interface (the keys `aws/vm/tofu` and `yandex/vm/tofu` of
//! [`gosling_fleet::provider_key`]).
//!
//! - `create`: render the runner's configuration, prepare its workspace (`init` when
//!   needed), and when its state already holds the machine return that (idempotent by
//!   runner id: nothing is planned or applied); else plan, store the plan, apply it, and
//!   read the machine's id from the state. A preemptible AWS egg whose spot request fails
//!   for capacity (the SDK path's fallback codes) is planned once more on-demand.
//! - `status`: `apply -refresh-only`, then the machine's status in `show -json`
//!   (`instance_state` on AWS, `status` on Yandex Cloud); no machine in the state: `Gone`.
//! - `terminate`: a stored destroy plan, applied; nothing to destroy is success. The
//!   workspace is removed afterwards; the stored plans and configuration stay.
//!
//! Errors: [`TofuError::to_provider_error`] (see [`crate::error`] for the mapping). Serverless
//! eggs are refused as permanent errors (see [`crate::render`] for why).

use crate::error::TofuError;
use crate::plans::Action;
use crate::render::{render, RenderError, RenderOptions, TofuSettings};
use crate::runner::TofuRunner;
use crate::workspace::ConfigBundle;
use async_trait::async_trait;
use gosling_fleet::{Handle, MachineStatus, Provider, ProviderError, Providers, RunnerSpec};
use gosling_state::SecretString;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The provider name in handles.
pub const NAME: &str = "tofu";

/// Runner machines through OpenTofu.
#[derive(Debug)]
pub struct TofuProvider {
    name: String,
    runner: Arc<TofuRunner>,
    settings: TofuSettings,
}

impl TofuProvider {
    /// A provider rendering with `settings` and running `runner`.
    pub fn new(runner: Arc<TofuRunner>, settings: TofuSettings) -> TofuProvider {
        TofuProvider {
            name: NAME.into(),
            runner,
            settings,
        }
    }

    /// The [`Providers`] keys it serves: `CLOUD/vm/tofu` and `CLOUD/serverless/tofu` for
    /// each configured cloud (serverless eggs get a permanent error that says why).
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (cloud, on) in [
            ("aws", self.settings.aws.is_some()),
            ("yandex", self.settings.yandex.is_some()),
        ] {
            if on {
                keys.push(format!("{cloud}/vm/tofu"));
                keys.push(format!("{cloud}/serverless/tofu"));
            }
        }
        keys
    }

    /// Adds the provider to `providers` under its [`keys`](TofuProvider::keys).
    pub fn register(self: Arc<Self>, providers: &mut Providers) {
        for key in self.keys() {
            providers.by_key.insert(key, self.clone());
        }
    }

    /// The runner it uses.
    pub fn runner(&self) -> &TofuRunner {
        &self.runner
    }

    async fn create_machine(&self, spec: &RunnerSpec) -> Result<Handle, TofuError> {
        if spec.egg.kind == fly_ir::RunnerKind::Serverless {
            return Err(RenderError::Unsupported(format!(
                "serverless runners (egg `{}`): a serverless runner is one run (a Fargate task, a container call), which OpenTofu has no resource for; use provisioning = sdk",
                spec.egg.name
            ))
            .into());
        }
        let ws = self.runner.workspace(&spec.egg.name, &spec.runner_id);
        let _guard = self.runner.lock(&ws).await;
        let mut opts = RenderOptions::default();
        loop {
            let rendered = render(spec, &self.settings, opts)?;
            let address = rendered.address;
            let mut bundle = ConfigBundle::new(&spec.egg.name, &spec.runner_id, &rendered);
            let ws = self.runner.prepare(&mut bundle).await?;
            if let Some(values) = self.runner.resource(&ws, address).await? {
                if self
                    .runner
                    .plans()
                    .config(&bundle.egg, &bundle.runner_id)
                    .await?
                    .is_none()
                {
                    self.runner.plans().put_config(&bundle).await?;
                }
                return self.handle(&bundle, &values);
            }
            let user_data = rendered
                .user_data
                .as_ref()
                .map(|u| SecretString::new(u.as_str()))
                .unwrap_or_else(|| SecretString::new(""));
            // Stored first: whatever happens next, terminate finds the configuration.
            self.runner.plans().put_config(&bundle).await?;
            let spot =
                spec.egg.cloud.preemptible && spec.egg.cloud.provider == fly_ir::Provider::Aws;
            match self
                .runner
                .plan_and_apply(
                    &ws,
                    &bundle,
                    Action::Create,
                    &[("TF_VAR_user_data", &user_data)],
                )
                .await
            {
                Ok(_) => {}
                Err(e) if spot && !opts.on_demand && e.is_spot_capacity() => {
                    tracing::warn!(runner = %spec.runner_id, "no spot capacity; asking for on-demand");
                    opts.on_demand = true;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let values =
                self.runner
                    .resource(&ws, address)
                    .await?
                    .ok_or_else(|| TofuError::Output {
                        command: "show".into(),
                        message: format!("the apply finished but the state holds no {address}"),
                    })?;
            return self.handle(&bundle, &values);
        }
    }

    fn handle(
        &self,
        bundle: &ConfigBundle,
        values: &serde_json::Value,
    ) -> Result<Handle, TofuError> {
        let id = values["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TofuError::Output {
                command: "show".into(),
                message: format!("{} has no id", bundle.address),
            })?;
        let details: BTreeMap<String, String> = [
            ("egg", bundle.egg.as_str()),
            ("runner_id", bundle.runner_id.as_str()),
            ("cloud", bundle.cloud.as_str()),
            ("address", bundle.address.as_str()),
            ("state_key", bundle.state_key.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Ok(Handle {
            provider: self.name.clone(),
            id: id.to_string(),
            details,
        })
    }

    fn runner_of(handle: &Handle) -> Result<(String, String), ProviderError> {
        match (handle.details.get("egg"), handle.details.get("runner_id")) {
            (Some(e), Some(r)) => Ok((e.clone(), r.clone())),
            _ => Err(ProviderError::permanent(
                NAME,
                format!("handle {} names no egg and runner", handle.id),
            )),
        }
    }

    async fn machine_status(&self, egg: &str, runner_id: &str) -> Result<MachineStatus, TofuError> {
        let Some(mut bundle) = self.runner.plans().config(egg, runner_id).await? else {
            return Ok(MachineStatus::Gone);
        };
        let ws = self.runner.workspace(egg, runner_id);
        let _guard = self.runner.lock(&ws).await;
        let ws = self.runner.prepare(&mut bundle).await?;
        self.runner.refresh(&ws).await?;
        let values = self.runner.resource(&ws, &bundle.address).await?;
        Ok(values.map_or(MachineStatus::Gone, |v| machine_status(&bundle.cloud, &v)))
    }

    async fn terminate_machine(&self, egg: &str, runner_id: &str) -> Result<(), TofuError> {
        let Some(mut bundle) = self.runner.plans().config(egg, runner_id).await? else {
            // Nothing was ever applied for it here.
            return Ok(());
        };
        let ws = self.runner.workspace(egg, runner_id);
        let _guard = self.runner.lock(&ws).await;
        let ws = self.runner.prepare(&mut bundle).await?;
        self.runner
            .plan_and_apply(&ws, &bundle, Action::Destroy, &[])
            .await?;
        ws.remove()
    }
}

/// A machine's status from its state values: `instance_state` of an `aws_instance`,
/// `status` of a `yandex_compute_instance`.
pub fn machine_status(cloud: &str, values: &serde_json::Value) -> MachineStatus {
    let field = if cloud == "aws" {
        "instance_state"
    } else {
        "status"
    };
    match values[field].as_str().unwrap_or("") {
        "running" => MachineStatus::Running,
        "stopping" | "stopped" | "crashed" | "error" => MachineStatus::Stopped,
        "shutting-down" | "terminated" | "deleting" => MachineStatus::Gone,
        // pending, provisioning, starting, restarting, updating, or not yet known.
        _ => MachineStatus::Starting,
    }
}

#[async_trait]
impl Provider for TofuProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        self.create_machine(spec)
            .await
            .map_err(|e| e.to_provider_error(&self.name))
    }

    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError> {
        let (egg, runner) = Self::runner_of(handle)?;
        self.machine_status(&egg, &runner)
            .await
            .map_err(|e| e.to_provider_error(&self.name))
    }

    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError> {
        let (egg, runner) = Self::runner_of(handle)?;
        self.terminate_machine(&egg, &runner)
            .await
            .map_err(|e| e.to_provider_error(&self.name))
    }
}
