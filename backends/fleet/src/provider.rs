//! The provider interface: how a runner's machine (a VM, a container, a local process)
//! comes to exist and goes away. MotherGoose creates through it, MotherGoose and UglyFox
//! terminate through it; every cloud (and the `local` provider) implements it once.

use async_trait::async_trait;
use gosling_state::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a provider needs to start a runner.
#[derive(Clone, Debug)]
pub struct RunnerSpec {
    /// The runner's id (the provider's idempotency key: creating the same id twice gives
    /// the same machine).
    pub runner_id: String,
    /// The egg, as deployed.
    pub egg: fly_ir::Egg,
    /// How the runner finds MotherGoose and proves who it is.
    pub bootstrap: Bootstrap,
    /// A single-job runner (ended after its job) rather than a pool runner.
    pub ephemeral: bool,
    /// Extra environment for the runner process (cloud-init / container / child process).
    pub extra_env: BTreeMap<String, String>,
}

/// What a new runner is given so that it can fetch the rest (its egg's IR, its GitLab
/// token) from MotherGoose: no database credential ever reaches a runner.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// MotherGoose's base URL as the runner reaches it.
    pub mothergoose_url: String,
    /// The runner's own credential.
    pub credential: SecretString,
    /// PEM of the CA that signed MotherGoose's certificate, when it is not publicly trusted.
    pub ca_pem: Option<String>,
}

impl Bootstrap {
    /// The environment a runner process reads its bootstrap from (`gosling runner`'s
    /// `GOSLING_*` variables).
    pub fn env(&self, runner_id: &str, egg: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("RUNNER_ID".into(), runner_id.to_string());
        env.insert("EGG_NAME".into(), egg.to_string());
        env.insert(
            "GOSLING_MOTHERGOOSE_URL".into(),
            self.mothergoose_url.clone(),
        );
        env.insert(
            "GOSLING_RUNNER_CREDENTIAL".into(),
            self.credential.expose().to_string(),
        );
        if let Some(ca) = &self.ca_pem {
            env.insert("GOSLING_MOTHERGOOSE_CA".into(), ca.clone());
        }
        env
    }
}

/// A created machine, as the provider identifies it (stored with the runner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    /// The provider that made it (`local`, `aws-ec2`, `aws-ecs`, `yandex-compute`, …).
    pub provider: String,
    /// Its id there (a pid, an instance id, a task ARN, …).
    pub id: String,
    /// Anything else the provider needs to find it again (region, cluster, folder…).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// What a provider says a machine is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineStatus {
    /// Being created or starting.
    Starting,
    /// Running.
    Running,
    /// Stopped or stopping (may be started again).
    Stopped,
    /// Gone (terminated, exited, or never existed).
    Gone,
}

/// Why a provider call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// May succeed later (throttling, capacity, network, 5xx): retried with backoff.
    #[error("{provider}: {message} (will retry)")]
    Retryable {
        /// The provider.
        provider: String,
        /// What happened.
        message: String,
    },
    /// Will not succeed as asked (bad configuration, permission denied, quota).
    #[error("{provider}: {message}")]
    Permanent {
        /// The provider.
        provider: String,
        /// What happened.
        message: String,
    },
}

impl ProviderError {
    /// A retryable failure.
    pub fn retryable(provider: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::Retryable {
            provider: provider.into(),
            message: message.into(),
        }
    }

    /// A permanent failure.
    pub fn permanent(provider: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::Permanent {
            provider: provider.into(),
            message: message.into(),
        }
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Retryable { .. })
    }
}

/// Creates, inspects and removes runner machines.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's name (as in [`Handle::provider`]).
    fn name(&self) -> &str;

    /// Creates the machine for `spec`. Idempotent by `spec.runner_id`: when a machine for
    /// that runner exists already, its handle is returned and nothing new is made.
    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError>;

    /// What the machine is doing.
    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError>;

    /// Removes the machine. Idempotent: a machine that is already gone is not an error.
    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError>;

    /// Removes what a `create` of `runner_id` may have made before its handle was stored
    /// (the process that called it died), for a runner ending without a handle. Providers
    /// that cannot find a machine by runner id do nothing.
    async fn terminate_unrecorded(&self, _runner_id: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A shared provider.
pub type SharedProvider = Arc<dyn Provider>;

/// The providers of a deployment, chosen per egg.
#[derive(Clone, Default)]
pub struct Providers {
    /// Used for every egg (development: `local`).
    pub all: Option<SharedProvider>,
    /// By key: `yandex/vm`, `yandex/serverless`, `aws/vm`, `aws/serverless`, optionally
    /// suffixed `/tofu` for eggs that ask for the OpenTofu path.
    pub by_key: BTreeMap<String, SharedProvider>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("all", &self.all.as_ref().map(|p| p.name().to_string()))
            .field("by_key", &self.by_key.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The key [`Providers::for_egg`] looks up for an egg: `{cloud}/{kind}` (`yandex/vm`,
/// `aws/serverless`, …), suffixed `/tofu` when the egg asks for the OpenTofu path
/// (`provisioning = tofu`: `aws/vm/tofu`), so the SDK and OpenTofu provisioners of one
/// cloud can be configured side by side and an egg never silently gets the other one.
pub fn provider_key(egg: &fly_ir::Egg) -> String {
    let cloud = match egg.cloud.provider {
        fly_ir::Provider::Yandex => "yandex",
        fly_ir::Provider::Aws => "aws",
    };
    let kind = match egg.kind {
        fly_ir::RunnerKind::Vm => "vm",
        fly_ir::RunnerKind::Serverless => "serverless",
    };
    match egg.cloud.provisioning {
        fly_ir::Provisioning::Sdk => format!("{cloud}/{kind}"),
        fly_ir::Provisioning::Tofu => format!("{cloud}/{kind}/tofu"),
    }
}

impl Providers {
    /// One provider for every egg.
    pub fn single(p: SharedProvider) -> Providers {
        Providers {
            all: Some(p),
            by_key: BTreeMap::new(),
        }
    }

    /// The provider that makes runners of `egg`.
    pub fn for_egg(&self, egg: &fly_ir::Egg) -> Result<SharedProvider, ProviderError> {
        if let Some(p) = &self.all {
            return Ok(p.clone());
        }
        let key = provider_key(egg);
        self.by_key.get(&key).cloned().ok_or_else(|| {
            ProviderError::permanent(
                &key,
                format!(
                    "no provider is configured for {key} runners (egg `{}`)",
                    egg.name
                ),
            )
        })
    }

    /// The provider that made `handle`.
    pub fn for_handle(&self, handle: &Handle) -> Result<SharedProvider, ProviderError> {
        if let Some(p) = &self.all {
            if p.name() == handle.provider {
                return Ok(p.clone());
            }
        }
        self.by_key
            .values()
            .find(|p| p.name() == handle.provider)
            .cloned()
            .ok_or_else(|| {
                ProviderError::permanent(
                    &handle.provider,
                    format!(
                        "runner machine {} was made by provider `{}`, which is not configured here",
                        handle.id, handle.provider
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egg(
        provider: fly_ir::Provider,
        kind: fly_ir::RunnerKind,
        provisioning: fly_ir::Provisioning,
    ) -> fly_ir::Egg {
        fly_ir::Egg {
            name: "e".into(),
            kind,
            cloud: fly_ir::Cloud {
                provider,
                region: "r".into(),
                folder_id: None,
                subnet_id: None,
                preemptible: false,
                provisioning,
                image_id: None,
                security_group_id: None,
            },
            resources: fly_ir::Resources {
                cpu: 2,
                memory_mb: 2048,
                disk_gb: 20,
            },
            runner: fly_ir::RunnerSettings {
                tags: vec![],
                concurrent: 1,
                idle_timeout_s: 600,
                timeout_s: 3600,
                image: "alpine:3".into(),
                privileged: false,
                run_untagged: false,
                max_runners: 10,
            },
            gitlab: fly_ir::GitLab {
                url: "https://gitlab.com".into(),
                project_id: 1,
                token_secret: "vault://t".into(),
            },
            environment: BTreeMap::new(),
            rift: None,
            config_hash: String::new(),
        }
    }

    #[test]
    fn provider_key_names_cloud_kind_and_the_tofu_path() {
        use fly_ir::{Provider as P, Provisioning as How, RunnerKind as K};
        let cases = [
            (P::Yandex, K::Vm, How::Sdk, "yandex/vm"),
            (P::Yandex, K::Serverless, How::Sdk, "yandex/serverless"),
            (P::Aws, K::Vm, How::Sdk, "aws/vm"),
            (P::Aws, K::Serverless, How::Sdk, "aws/serverless"),
            (P::Yandex, K::Vm, How::Tofu, "yandex/vm/tofu"),
            (P::Aws, K::Vm, How::Tofu, "aws/vm/tofu"),
            (P::Aws, K::Serverless, How::Tofu, "aws/serverless/tofu"),
        ];
        for (p, k, how, want) in cases {
            assert_eq!(provider_key(&egg(p, k, how)), want);
        }
    }

    #[test]
    fn a_tofu_egg_does_not_fall_back_to_the_sdk_provider() {
        struct Named;
        #[async_trait]
        impl Provider for Named {
            fn name(&self) -> &str {
                "aws-ec2"
            }
            async fn create(&self, _: &RunnerSpec) -> Result<Handle, ProviderError> {
                unreachable!()
            }
            async fn status(&self, _: &Handle) -> Result<MachineStatus, ProviderError> {
                unreachable!()
            }
            async fn terminate(&self, _: &Handle) -> Result<(), ProviderError> {
                unreachable!()
            }
        }
        let mut providers = Providers::default();
        providers.by_key.insert("aws/vm".into(), Arc::new(Named));
        let sdk = egg(
            fly_ir::Provider::Aws,
            fly_ir::RunnerKind::Vm,
            fly_ir::Provisioning::Sdk,
        );
        let tofu = egg(
            fly_ir::Provider::Aws,
            fly_ir::RunnerKind::Vm,
            fly_ir::Provisioning::Tofu,
        );
        assert!(providers.for_egg(&sdk).is_ok());
        let err = providers.for_egg(&tofu).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("aws/vm/tofu")));
    }
}
