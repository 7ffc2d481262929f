//! Serverless runners on Yandex Serverless Containers: one container per runner.
//!
//! How one runner is started: the container is created (name from the runner id, so a
//! second create finds it), a revision is deployed in the *task* runtime (the platform runs
//! the image's entrypoint, `gosling runner`, once per call instead of expecting an HTTP
//! server), with the bootstrap as its environment, concurrency 1 and one instance per
//! zone; the container is marked `gosling-started` and then called once asynchronously
//! (`X-Ycf-Container-Integration-Type: async`, answered 202), which starts the runner
//! process. The mark comes first, so a retried create never starts the runner twice
//! (at worst not at all, which MotherGoose sees as a runner that never came up).
//!
//! Long-lived containers: a revision whose `executionTimeout` is over ten minutes is a
//! long-lived container — the platform's rule for anything up to the 60-minute maximum.
//! For the request that means: `executionTimeout` is the egg's job timeout plus set-up
//! time, at most `"3600s"`; the call is asynchronous (the platform recommends it for
//! long-lived containers, and nothing waits for an hour-long HTTP answer); and the
//! platform may stop such an instance early after a ten-minute notice, which runner mode
//! treats like SIGTERM on a VM (finish or hand back the job).

use super::compute::{folder, labels, yandex_name};
use super::{name_filter, Api, ApiError, Endpoints};
use crate::errors::grpc;
use crate::settings::{SettingsError, YandexSettings};
use crate::sizing;
use async_trait::async_trait;
use gosling_fleet::{Handle, MachineStatus, Provider, ProviderError, RunnerSpec};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The provider name in handles.
pub const NAME: &str = "yandex-serverless";

/// The label that says the runner was started.
pub const STARTED_LABEL: &str = "gosling-started";

/// The most environment a revision takes, names included (4 KB).
pub const ENVIRONMENT_MAX: usize = 4096;

/// The runner image's entrypoint.
pub const ENTRYPOINT: [&str; 2] = ["/usr/local/bin/gosling", "runner"];

/// The CreateContainer request body.
pub fn container_request(spec: &RunnerSpec, s: &YandexSettings) -> Result<Value, ProviderError> {
    let folder = folder(&spec.egg, s).ok_or_else(|| {
        ProviderError::permanent(NAME, "no folder_id: set `yandex.folder_id` or the egg's")
    })?;
    Ok(json!({
        "folderId": folder,
        "name": yandex_name(&spec.runner_id, false),
        "description": format!("Gosling runner {} of egg {}", spec.runner_id, spec.egg.name)
            .chars().take(256).collect::<String>(),
        "labels": labels(spec),
    }))
}

/// The DeployRevision request body, exactly as the API documents it: memory in bytes and
/// int64 values as strings, `executionTimeout` as a duration (`"3600s"`), the task
/// runtime, the bootstrap as the environment.
pub fn revision_request(
    spec: &RunnerSpec,
    s: &YandexSettings,
    container_id: &str,
) -> Result<Value, ProviderError> {
    let egg = &spec.egg;
    let size = sizing::yandex_container_size(egg.resources.cpu, egg.resources.memory_mb)
        .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
    let image = s.runner_image.clone().ok_or_else(|| {
        ProviderError::permanent(NAME, "no runner image: set `yandex.runner_image`")
    })?;
    let sa = s.service_account_id.clone().ok_or_else(|| {
        ProviderError::permanent(NAME, "serverless runners need `yandex.service_account_id`")
    })?;
    let env = crate::runner_env(spec);
    let env_size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if env_size > ENVIRONMENT_MAX {
        return Err(ProviderError::permanent(
            NAME,
            format!("the runner's environment is {env_size} bytes, more than the 4 KB a container takes"),
        ));
    }
    let timeout = sizing::yandex_execution_timeout_s(egg.runner.timeout_s);
    let mut body = json!({
        "containerId": container_id,
        "description": format!("runner {}", spec.runner_id).chars().take(256).collect::<String>(),
        "resources": {
            "memory": size.memory_bytes.to_string(),
            "cores": size.cores.to_string(),
            "coreFraction": "100",
        },
        "executionTimeout": format!("{timeout}s"),
        "serviceAccountId": sa,
        "imageSpec": {
            "imageUrl": image,
            "command": { "command": ENTRYPOINT },
            "environment": env,
        },
        "concurrency": "1",
        "scalingPolicy": { "zoneInstancesLimit": "1", "zoneRequestsLimit": "1" },
        "runtime": { "task": {} },
        "asyncInvocationConfig": { "serviceAccountId": sa },
    });
    if let Some(net) = &s.network_id {
        body["connectivity"] = json!({ "networkId": net });
    }
    Ok(body)
}

/// Serverless runners on Yandex Serverless Containers.
#[derive(Debug)]
pub struct ServerlessProvider {
    settings: YandexSettings,
    api: Api,
}

impl ServerlessProvider {
    /// A provider (`yandex.runner_image` and `yandex.service_account_id` are needed).
    pub fn new(
        settings: YandexSettings,
        endpoints: Endpoints,
        tokens: Arc<super::TokenSource>,
    ) -> Result<ServerlessProvider, SettingsError> {
        if settings.runner_image.is_none() {
            return Err(SettingsError::Missing("yandex.runner_image".into()));
        }
        if settings.service_account_id.is_none() {
            return Err(SettingsError::Missing("yandex.service_account_id".into()));
        }
        let poll = settings.poll();
        Ok(ServerlessProvider {
            settings,
            api: Api::new(endpoints, tokens, poll),
        })
    }

    fn base(&self) -> &str {
        &self.api.endpoints.serverless_containers
    }

    fn handle(&self, id: &str, spec: &RunnerSpec, folder: &str) -> Handle {
        let mut details = BTreeMap::new();
        details.insert("folder_id".into(), folder.to_string());
        details.insert("runner_id".into(), spec.runner_id.clone());
        Handle {
            provider: NAME.into(),
            id: id.to_string(),
            details,
        }
    }

    async fn find(&self, folder: &str, name: &str) -> Result<Option<Value>, ApiError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/containers/v1/containers", self.base()),
            &[("folderId", folder), ("filter", &name_filter(name))],
        )
        .map_err(|e| ApiError::Network(e.to_string()))?;
        let list = self.api.call(Method::GET, url.as_str(), None).await?;
        Ok(list
            .get("containers")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            })
            .cloned())
    }

    async fn has_revision(&self, container_id: &str) -> Result<bool, ApiError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/containers/v1/revisions", self.base()),
            &[("containerId", container_id)],
        )
        .map_err(|e| ApiError::Network(e.to_string()))?;
        let list = self.api.call(Method::GET, url.as_str(), None).await?;
        Ok(list
            .get("revisions")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter().any(|r| {
                    matches!(
                        r.get("status").and_then(Value::as_str),
                        Some("ACTIVE" | "CREATING")
                    )
                })
            }))
    }

    /// Creates the container, or finds the one a previous attempt made.
    async fn container(&self, body: &Value) -> Result<(Value, bool), ProviderError> {
        let url = format!("{}/containers/v1/containers", self.base());
        let created = match self.api.call(Method::POST, &url, Some(body)).await {
            Ok(op) => self.api.wait(op).await,
            Err(e) => Err(e),
        };
        match created {
            Ok(op) => {
                let container = op.get("response").cloned().unwrap_or(Value::Null);
                if container.get("id").is_some() {
                    return Ok((container, true));
                }
                let id = op
                    .pointer("/metadata/containerId")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ProviderError::retryable(NAME, "CreateContainer: no container id")
                    })?;
                let url = format!("{}/containers/v1/containers/{id}", self.base());
                let c = self
                    .api
                    .call(Method::GET, &url, None)
                    .await
                    .map_err(|e| e.into_provider(NAME, "GetContainer"))?;
                Ok((c, true))
            }
            Err(e) if e.code() == Some(grpc::ALREADY_EXISTS) => {
                let folder = body["folderId"].as_str().unwrap_or_default();
                let name = body["name"].as_str().unwrap_or_default();
                match self.find(folder, name).await {
                    Ok(Some(c)) => Ok((c, false)),
                    Ok(None) => Err(ProviderError::retryable(
                        NAME,
                        format!("container {name} exists but is not listed yet"),
                    )),
                    Err(e) => Err(e.into_provider(NAME, "ListContainers")),
                }
            }
            Err(e) => Err(e.into_provider(NAME, "CreateContainer")),
        }
    }
}

#[async_trait]
impl Provider for ServerlessProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        let body = container_request(spec, &self.settings)?;
        let folder = body["folderId"].as_str().unwrap_or_default().to_string();
        // Checked before anything is made.
        revision_request(spec, &self.settings, "")?;
        let (container, fresh) = self.container(&body).await?;
        let id = container
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::retryable(NAME, "a container without an id"))?
            .to_string();
        if container
            .pointer(&format!("/labels/{STARTED_LABEL}"))
            .is_some()
        {
            return Ok(self.handle(&id, spec, &folder));
        }
        let deployed = !fresh
            && self
                .has_revision(&id)
                .await
                .map_err(|e| e.into_provider(NAME, "ListRevisions"))?;
        if !deployed {
            let revision = revision_request(spec, &self.settings, &id)?;
            let url = format!("{}/containers/v1/revisions:deploy", self.base());
            self.api
                .call_and_wait(Method::POST, &url, Some(&revision))
                .await
                .map_err(|e| e.into_provider(NAME, "DeployRevision"))?;
        }
        let mut marked = labels(spec);
        marked[STARTED_LABEL] = json!("true");
        let url = format!("{}/containers/v1/containers/{id}", self.base());
        self.api
            .call_and_wait(
                Method::PATCH,
                &url,
                Some(&json!({ "updateMask": "labels", "labels": marked })),
            )
            .await
            .map_err(|e| e.into_provider(NAME, "UpdateContainer"))?;
        let invoke = container
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::retryable(NAME, "the container has no URL yet"))?;
        self.api
            .call_with(
                Method::POST,
                invoke,
                Some(&json!({ "runner_id": spec.runner_id })),
                &[("X-Ycf-Container-Integration-Type", "async")],
            )
            .await
            .map_err(|e| e.into_provider(NAME, "invoking the container"))?;
        Ok(self.handle(&id, spec, &folder))
    }

    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError> {
        let url = format!("{}/containers/v1/containers/{}", self.base(), handle.id);
        match self.api.call(Method::GET, &url, None).await {
            Ok(c) => Ok(
                match c.get("status").and_then(Value::as_str).unwrap_or("") {
                    "CREATING" => MachineStatus::Starting,
                    "ACTIVE" => MachineStatus::Running,
                    "ERROR" => MachineStatus::Stopped,
                    _ => MachineStatus::Gone,
                },
            ),
            Err(e) if e.code() == Some(grpc::NOT_FOUND) => Ok(MachineStatus::Gone),
            Err(e) => Err(e.into_provider(NAME, "GetContainer")),
        }
    }

    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError> {
        let url = format!("{}/containers/v1/containers/{}", self.base(), handle.id);
        match self.api.call_and_wait(Method::DELETE, &url, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(grpc::NOT_FOUND) => Ok(()),
            Err(e) => Err(e.into_provider(NAME, "DeleteContainer")),
        }
    }
}
