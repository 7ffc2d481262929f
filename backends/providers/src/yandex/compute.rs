//! VM runners on Yandex Compute: `POST /compute/v1/instances` (name = runner id, so a
//! second create finds the first: ALREADY_EXISTS → look it up by name), status and delete.

use super::{name_filter, Api, ApiError, Endpoints};
use crate::cloud_init::{self, UserData};
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
pub const NAME: &str = "yandex-compute";

/// The largest metadata value Compute takes (256 KB).
pub const METADATA_VALUE_MAX: usize = 256 * 1024;

/// A Yandex resource name for a runner id: the id itself when it already is one
/// (`[a-z]([-_a-z0-9]{0,61}[a-z0-9])?`; `[a-z][-a-z0-9]{1,61}[a-z0-9]` without
/// underscores for containers), else a readable prefix and a hash of the id, so that one
/// runner id always gives one name.
pub fn yandex_name(runner_id: &str, underscores: bool) -> String {
    let ok_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (underscores && c == '_')
    };
    let valid = runner_id.len() >= 3
        && runner_id.len() <= 63
        && runner_id.starts_with(|c: char| c.is_ascii_lowercase())
        && runner_id.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && runner_id.chars().all(ok_char);
    if valid {
        return runner_id.to_string();
    }
    let mut prefix: String = runner_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if ok_char(c) { c } else { '-' })
        .take(40)
        .collect();
    prefix = prefix.trim_matches('-').to_string();
    let hash = crate::short_hash(runner_id);
    if prefix.is_empty() {
        format!("r-{hash}")
    } else {
        format!("r-{prefix}-{hash}")
    }
}

/// The zone a runner goes to: the settings' zone, else the egg's region when it names a
/// zone (`ru-central1-a`).
pub(crate) fn zone(egg: &fly_ir::Egg, s: &YandexSettings) -> Option<String> {
    s.zone.clone().or_else(|| {
        let r = &egg.cloud.region;
        let looks_like_zone = r.rsplit_once('-').is_some_and(|(_, z)| z.len() == 1);
        looks_like_zone.then(|| r.clone())
    })
}

/// The folder: the egg's, else the settings'.
pub(crate) fn folder(egg: &fly_ir::Egg, s: &YandexSettings) -> Option<String> {
    egg.cloud.folder_id.clone().or_else(|| s.folder_id.clone())
}

/// The labels of a runner's resources.
pub(crate) fn labels(spec: &RunnerSpec) -> Value {
    json!({
        "egg": crate::yandex_label(&spec.egg.name),
        "runner": crate::yandex_label(&spec.runner_id),
        "managed-by": "gosling",
    })
}

/// The CreateInstance request body for `spec`, exactly as the API documents it (int64
/// values as strings, memory and disk in bytes).
pub fn instance_request(
    spec: &RunnerSpec,
    s: &YandexSettings,
    user_data: &UserData,
) -> Result<Value, ProviderError> {
    let egg = &spec.egg;
    let missing = |what: &str| {
        ProviderError::permanent(NAME, format!("no {what}: set `yandex.{what}` or the egg's"))
    };
    let folder = folder(egg, s).ok_or_else(|| missing("folder_id"))?;
    let zone = zone(egg, s).ok_or_else(|| missing("zone"))?;
    let subnet = egg
        .cloud
        .subnet_id
        .clone()
        .or_else(|| s.subnet_id.clone())
        .ok_or_else(|| missing("subnet_id"))?;
    let image = crate::settings::egg_image_id(egg)
        .or_else(|| s.image_id.clone())
        .ok_or_else(|| missing("image_id"))?;
    let size = sizing::yandex_vm_size(
        egg.resources.cpu,
        egg.resources.memory_mb,
        egg.resources.disk_gb,
        s.min_disk_gb,
    )
    .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
    if user_data.len() > METADATA_VALUE_MAX {
        return Err(ProviderError::permanent(
            NAME,
            format!(
                "the cloud-init is {} bytes, more than the 256 KB metadata limit",
                user_data.len()
            ),
        ));
    }
    let mut address = json!({});
    if s.nat {
        address = json!({ "oneToOneNatSpec": { "ipVersion": "IPV4" } });
    }
    let mut nic = json!({ "subnetId": subnet, "primaryV4AddressSpec": address });
    if let Some(sg) = crate::settings::egg_security_group_id(egg) {
        nic["securityGroupIds"] = json!([sg]);
    }
    let mut body = json!({
        "folderId": folder,
        "name": yandex_name(&spec.runner_id, true),
        "description": format!("Gosling runner {} of egg {}", spec.runner_id, egg.name)
            .chars().take(256).collect::<String>(),
        "labels": labels(spec),
        "zoneId": zone,
        "platformId": sizing::YANDEX_PLATFORM,
        "resourcesSpec": {
            "memory": size.memory_bytes.to_string(),
            "cores": size.cores.to_string(),
            "coreFraction": "100",
        },
        "metadata": { "user-data": user_data.as_str() },
        "bootDiskSpec": {
            "autoDelete": true,
            "diskSpec": {
                "typeId": s.disk_type,
                "size": size.disk_bytes.to_string(),
                "imageId": image,
            },
        },
        "networkInterfaceSpecs": [nic],
        "schedulingPolicy": { "preemptible": egg.cloud.preemptible },
    });
    if let Some(sa) = &s.service_account_id {
        body["serviceAccountId"] = json!(sa);
    }
    Ok(body)
}

/// VM runners on Yandex Compute.
#[derive(Debug)]
pub struct ComputeProvider {
    settings: YandexSettings,
    api: Api,
}

impl ComputeProvider {
    /// A provider; nothing is contacted until the first call.
    pub fn new(
        settings: YandexSettings,
        endpoints: Endpoints,
        tokens: Arc<super::TokenSource>,
    ) -> Result<ComputeProvider, SettingsError> {
        settings.binary()?;
        let poll = settings.poll();
        Ok(ComputeProvider {
            settings,
            api: Api::new(endpoints, tokens, poll),
        })
    }

    fn handle(&self, id: &str, spec: &RunnerSpec, body: &Value) -> Handle {
        let mut details = BTreeMap::new();
        for (k, field) in [
            ("folder_id", "folderId"),
            ("zone", "zoneId"),
            ("name", "name"),
        ] {
            if let Some(v) = body.get(field).and_then(Value::as_str) {
                details.insert(k.to_string(), v.to_string());
            }
        }
        details.insert("runner_id".into(), spec.runner_id.clone());
        Handle {
            provider: NAME.into(),
            id: id.to_string(),
            details,
        }
    }

    async fn find(&self, folder: &str, name: &str) -> Result<Option<String>, ApiError> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/compute/v1/instances", self.api.endpoints.compute),
            &[("folderId", folder), ("filter", &name_filter(name))],
        )
        .map_err(|e| ApiError::Network(e.to_string()))?;
        let list = self.api.call(Method::GET, url.as_str(), None).await?;
        Ok(list
            .get("instances")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|i| i.get("id").and_then(Value::as_str))
            .map(str::to_string))
    }
}

#[async_trait]
impl Provider for ComputeProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        let binary = self
            .settings
            .binary()
            .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
        let user_data = cloud_init::render(spec, &binary, &self.settings.ssh_authorized_keys)
            .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
        let body = instance_request(spec, &self.settings, &user_data)?;
        let folder = body["folderId"].as_str().unwrap_or_default().to_string();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let url = format!("{}/compute/v1/instances", self.api.endpoints.compute);
        let result = match self.api.call(Method::POST, &url, Some(&body)).await {
            Ok(op) => self.api.wait(op).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(op) => {
                let id = op
                    .pointer("/metadata/instanceId")
                    .or_else(|| op.pointer("/response/id"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ProviderError::retryable(
                            NAME,
                            "CreateInstance: the operation names no instance",
                        )
                    })?;
                Ok(self.handle(id, spec, &body))
            }
            Err(e) if e.code() == Some(grpc::ALREADY_EXISTS) => {
                match self.find(&folder, &name).await {
                    Ok(Some(id)) => Ok(self.handle(&id, spec, &body)),
                    Ok(None) => Err(ProviderError::retryable(
                        NAME,
                        format!("instance {name} exists but is not listed yet"),
                    )),
                    Err(e) => Err(e.into_provider(NAME, "ListInstances")),
                }
            }
            Err(e) => Err(e.into_provider(NAME, "CreateInstance")),
        }
    }

    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError> {
        let url = format!(
            "{}/compute/v1/instances/{}",
            self.api.endpoints.compute, handle.id
        );
        match self.api.call(Method::GET, &url, None).await {
            Ok(i) => Ok(
                match i.get("status").and_then(Value::as_str).unwrap_or("") {
                    "PROVISIONING" | "STARTING" => MachineStatus::Starting,
                    "RUNNING" | "UPDATING" | "RESTARTING" => MachineStatus::Running,
                    "STOPPING" | "STOPPED" | "CRASHED" | "ERROR" => MachineStatus::Stopped,
                    _ => MachineStatus::Gone,
                },
            ),
            Err(e) if e.code() == Some(grpc::NOT_FOUND) => Ok(MachineStatus::Gone),
            Err(e) => Err(e.into_provider(NAME, "GetInstance")),
        }
    }

    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError> {
        let url = format!(
            "{}/compute/v1/instances/{}",
            self.api.endpoints.compute, handle.id
        );
        match self.api.call_and_wait(Method::DELETE, &url, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(grpc::NOT_FOUND) => Ok(()),
            Err(e) => Err(e.into_provider(NAME, "DeleteInstance")),
        }
    }
}
