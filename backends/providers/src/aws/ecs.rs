//! Serverless runners on ECS Fargate.
//!
//! Why Fargate and not Lambda: a Lambda invocation stops after 15 minutes, and a
//! serverless runner must hold a job for up to 60. A Fargate task runs the runner image
//! (`gosling runner` as its entrypoint) for as long as the job takes and is stopped with
//! StopTask.
//!
//! One task definition per egg (family `gosling-EGG`), registered on first use and reused
//! while it is unchanged; one RunTask per runner (`startedBy` = runner id, a `clientToken`,
//! and a ListTasks by `startedBy` first so that a retried create finds the task it made).

use super::{runner_tags, SdkConfigCell};
use crate::errors::aws_error;
use crate::settings::{AwsSettings, SettingsError};
use crate::sizing::{self, FargateSize};
use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, ContainerOverride,
    DesiredStatus, EphemeralStorage, KeyValuePair, LaunchType, NetworkConfiguration, NetworkMode,
    Tag, TaskOverride,
};
use gosling_fleet::{Handle, MachineStatus, Provider, ProviderError, RunnerSpec};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::Mutex;

/// The provider name in handles.
pub const NAME: &str = "aws-ecs";

/// The runner container's name in the task definition.
pub const CONTAINER: &str = "runner";

/// The runner image's entrypoint.
pub const ENTRYPOINT: [&str; 2] = ["/usr/local/bin/gosling", "runner"];

/// Everything the task definition and RunTask are given for one runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcsTask {
    /// Task definition family: `gosling-EGG`.
    pub family: String,
    /// The runner image.
    pub image: String,
    /// Fargate size, from [`sizing::fargate_size`].
    pub size: FargateSize,
    /// Subnets (awsvpc).
    pub subnets: Vec<String>,
    /// Security groups (awsvpc).
    pub security_groups: Vec<String>,
    /// Give the task a public IP (needed without a NAT gateway).
    pub assign_public_ip: bool,
    /// Role that pulls the image and writes logs.
    pub execution_role_arn: Option<String>,
    /// Role the runner runs as.
    pub task_role_arn: Option<String>,
    /// `startedBy` (the runner id, at most 128 of `[A-Za-z0-9_-]`).
    pub started_by: String,
    /// `clientToken` (at most 64 characters).
    pub client_token: String,
    /// Tags of the task.
    pub tags: Vec<(String, String)>,
}

/// The task for `spec`: the egg's subnet and security group win over the settings'.
pub fn ecs_task(spec: &RunnerSpec, settings: &AwsSettings) -> Result<EcsTask, ProviderError> {
    let egg = &spec.egg;
    let size = sizing::fargate_size(
        egg.resources.cpu,
        egg.resources.memory_mb,
        egg.resources.disk_gb,
    )
    .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
    let image = settings
        .runner_image
        .clone()
        .ok_or_else(|| ProviderError::permanent(NAME, "no runner image: set `aws.runner_image`"))?;
    let subnets = match &egg.cloud.subnet_id {
        Some(s) => vec![s.clone()],
        None => settings.subnets.clone(),
    };
    if subnets.is_empty() {
        return Err(ProviderError::permanent(
            NAME,
            "Fargate tasks need a subnet: set `aws.subnets` or the egg's `subnet_id`",
        ));
    }
    let security_groups = match crate::settings::egg_security_group_id(egg) {
        Some(sg) => vec![sg],
        None => settings.security_groups.clone(),
    };
    Ok(EcsTask {
        family: format!("gosling-{}", crate::safe_name(&egg.name, 240)),
        image,
        size,
        subnets,
        security_groups,
        assign_public_ip: settings.assign_public_ip,
        execution_role_arn: settings.execution_role_arn.clone(),
        task_role_arn: settings.task_role_arn.clone(),
        started_by: crate::safe_name(&spec.runner_id, 128),
        client_token: crate::safe_name(&spec.runner_id, 64),
        tags: runner_tags(&egg.name, &spec.runner_id),
    })
}

/// The container definition of the runner.
pub fn container_definition(task: &EcsTask) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(CONTAINER)
        .image(&task.image)
        .essential(true)
        .set_entry_point(Some(ENTRYPOINT.iter().map(|s| s.to_string()).collect()))
        .cpu(task.size.cpu_units as i32)
        .memory(task.size.memory_mib as i32)
        .build()
}

/// The RegisterTaskDefinition input (checked by the SDK's builder).
pub fn register_input(
    task: &EcsTask,
) -> Result<
    aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput,
    ProviderError,
> {
    let storage = task
        .size
        .storage_gib
        .map(|g| EphemeralStorage::builder().size_in_gib(g as i32).build());
    aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput::builder()
        .family(&task.family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu(task.size.cpu_units.to_string())
        .memory(task.size.memory_mib.to_string())
        .set_execution_role_arn(task.execution_role_arn.clone())
        .set_task_role_arn(task.task_role_arn.clone())
        .set_ephemeral_storage(storage)
        .container_definitions(container_definition(task))
        .build()
        .map_err(|e| ProviderError::permanent(NAME, format!("RegisterTaskDefinition: {e}")))
}

/// The awsvpc network configuration.
pub fn network_configuration(task: &EcsTask) -> Result<NetworkConfiguration, ProviderError> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(task.subnets.clone()))
        .set_security_groups(Some(task.security_groups.clone()))
        .assign_public_ip(if task.assign_public_ip {
            AssignPublicIp::Enabled
        } else {
            AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| ProviderError::permanent(NAME, format!("awsvpc configuration: {e}")))?;
    Ok(NetworkConfiguration::builder()
        .awsvpc_configuration(vpc)
        .build())
}

/// The container overrides: the runner's bootstrap environment.
pub fn overrides(env: &BTreeMap<String, String>) -> TaskOverride {
    let env: Vec<KeyValuePair> = env
        .iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect();
    TaskOverride::builder()
        .container_overrides(
            ContainerOverride::builder()
                .name(CONTAINER)
                .set_environment(Some(env))
                .build(),
        )
        .build()
}

fn tags(task: &EcsTask) -> Vec<Tag> {
    task.tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The RunTask input for a registered task definition (checked by the SDK's builder).
pub fn run_task_input(
    task: &EcsTask,
    cluster: &str,
    task_definition_arn: &str,
    env: &BTreeMap<String, String>,
) -> Result<aws_sdk_ecs::operation::run_task::RunTaskInput, ProviderError> {
    aws_sdk_ecs::operation::run_task::RunTaskInput::builder()
        .cluster(cluster)
        .task_definition(task_definition_arn)
        .launch_type(LaunchType::Fargate)
        .count(1)
        .started_by(&task.started_by)
        .client_token(&task.client_token)
        .network_configuration(network_configuration(task)?)
        .overrides(overrides(env))
        .set_tags(Some(tags(task)))
        .build()
        .map_err(|e| ProviderError::permanent(NAME, format!("RunTask: {e}")))
}

/// What a registered task definition is compared by (unchanged → reused).
fn fingerprint(task: &EcsTask) -> String {
    format!(
        "{}|{}|{}|{:?}|{:?}|{:?}",
        task.image,
        task.size.cpu_units,
        task.size.memory_mib,
        task.size.storage_gib,
        task.execution_role_arn,
        task.task_role_arn
    )
}

/// Serverless runners on ECS Fargate.
#[derive(Debug)]
pub struct EcsProvider {
    settings: AwsSettings,
    cluster: String,
    config: SdkConfigCell,
    client: tokio::sync::OnceCell<aws_sdk_ecs::Client>,
    /// family → (fingerprint, task definition ARN).
    definitions: Mutex<HashMap<String, (String, String)>>,
}

impl EcsProvider {
    /// A provider for these settings (`aws.ecs_cluster` and `aws.runner_image` are needed).
    pub fn new(settings: AwsSettings) -> Result<EcsProvider, SettingsError> {
        let cluster = settings
            .ecs_cluster
            .clone()
            .ok_or_else(|| SettingsError::Missing("aws.ecs_cluster".into()))?;
        if settings.runner_image.is_none() {
            return Err(SettingsError::Missing("aws.runner_image".into()));
        }
        Ok(EcsProvider {
            settings,
            cluster,
            config: SdkConfigCell::default(),
            client: tokio::sync::OnceCell::new(),
            definitions: Mutex::new(HashMap::new()),
        })
    }

    async fn client(&self) -> &aws_sdk_ecs::Client {
        self.client
            .get_or_init(|| async {
                aws_sdk_ecs::Client::new(self.config.get(&self.settings).await)
            })
            .await
    }

    fn handle(&self, arn: &str, spec: &RunnerSpec) -> Handle {
        let mut details = BTreeMap::new();
        details.insert("region".into(), self.settings.region.clone());
        details.insert("cluster".into(), self.cluster.clone());
        details.insert("runner_id".into(), spec.runner_id.clone());
        Handle {
            provider: NAME.into(),
            id: arn.to_string(),
            details,
        }
    }

    /// The egg's task definition: the one registered before if it is unchanged, else a new
    /// revision.
    async fn task_definition(&self, task: &EcsTask) -> Result<String, ProviderError> {
        let want = fingerprint(task);
        let mut defs = self.definitions.lock().await;
        if let Some((fp, arn)) = defs.get(&task.family) {
            if *fp == want {
                return Ok(arn.clone());
            }
        }
        // Not known to this process: the latest revision may still be the same.
        if let Ok(out) = self
            .client()
            .await
            .describe_task_definition()
            .task_definition(&task.family)
            .send()
            .await
        {
            if let Some(td) = out.task_definition() {
                let c = td.container_definitions().first();
                let same = td.cpu() == Some(task.size.cpu_units.to_string().as_str())
                    && td.memory() == Some(task.size.memory_mib.to_string().as_str())
                    && td.execution_role_arn() == task.execution_role_arn.as_deref()
                    && td.task_role_arn() == task.task_role_arn.as_deref()
                    && td.ephemeral_storage().map(|s| s.size_in_gib() as u64)
                        == task.size.storage_gib
                    && c.and_then(|c| c.image()) == Some(task.image.as_str())
                    && c.and_then(|c| c.name()) == Some(CONTAINER);
                if let (true, Some(arn)) = (same, td.task_definition_arn()) {
                    defs.insert(task.family.clone(), (want, arn.to_string()));
                    return Ok(arn.to_string());
                }
            }
        }
        let input = register_input(task)?;
        let out = self
            .client()
            .await
            .register_task_definition()
            .set_family(input.family)
            .set_network_mode(input.network_mode)
            .set_requires_compatibilities(input.requires_compatibilities)
            .set_cpu(input.cpu)
            .set_memory(input.memory)
            .set_execution_role_arn(input.execution_role_arn)
            .set_task_role_arn(input.task_role_arn)
            .set_ephemeral_storage(input.ephemeral_storage)
            .set_container_definitions(input.container_definitions)
            .send()
            .await
            .map_err(|e| aws_error(NAME, "RegisterTaskDefinition", &e))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| {
                ProviderError::retryable(NAME, "RegisterTaskDefinition returned no ARN")
            })?
            .to_string();
        defs.insert(task.family.clone(), (want, arn.clone()));
        Ok(arn)
    }

    async fn running_task(&self, started_by: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .client()
            .await
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(started_by)
            .desired_status(DesiredStatus::Running)
            .send()
            .await
            .map_err(|e| aws_error(NAME, "ListTasks", &e))?;
        Ok(out.task_arns().first().cloned())
    }
}

/// Whether a RunTask failure reason is about capacity (retry later).
fn capacity_reason(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    [
        "capacity",
        "resource:",
        "agent",
        "throttl",
        "unavailable",
        "timeout",
    ]
    .iter()
    .any(|w| r.contains(w))
}

#[async_trait]
impl Provider for EcsProvider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        let task = ecs_task(spec, &self.settings)?;
        if let Some(arn) = self.running_task(&task.started_by).await? {
            return Ok(self.handle(&arn, spec));
        }
        let definition = self.task_definition(&task).await?;
        let env = crate::runner_env(spec);
        let input = run_task_input(&task, &self.cluster, &definition, &env)?;
        let out = self
            .client()
            .await
            .run_task()
            .set_cluster(input.cluster)
            .set_task_definition(input.task_definition)
            .set_launch_type(input.launch_type)
            .set_count(input.count)
            .set_started_by(input.started_by)
            .set_client_token(input.client_token)
            .set_network_configuration(input.network_configuration)
            .set_overrides(input.overrides)
            .set_tags(input.tags)
            .send()
            .await
            .map_err(|e| aws_error(NAME, "RunTask", &e))?;
        if let Some(arn) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(self.handle(arn, spec));
        }
        let reason = out
            .failures()
            .first()
            .and_then(|f| f.reason())
            .unwrap_or("no task and no failure reason")
            .to_string();
        if capacity_reason(&reason) {
            Err(ProviderError::retryable(NAME, format!("RunTask: {reason}")))
        } else {
            Err(ProviderError::permanent(NAME, format!("RunTask: {reason}")))
        }
    }

    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError> {
        let cluster = handle.details.get("cluster").unwrap_or(&self.cluster);
        let out = self
            .client()
            .await
            .describe_tasks()
            .cluster(cluster)
            .tasks(&handle.id)
            .send()
            .await
            .map_err(|e| aws_error(NAME, "DescribeTasks", &e))?;
        let Some(t) = out
            .tasks()
            .iter()
            .find(|t| t.task_arn() == Some(handle.id.as_str()))
        else {
            return Ok(MachineStatus::Gone);
        };
        Ok(match t.last_status().unwrap_or("") {
            "PROVISIONING" | "PENDING" | "ACTIVATING" => MachineStatus::Starting,
            "RUNNING" => MachineStatus::Running,
            "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" => MachineStatus::Stopped,
            _ => MachineStatus::Gone,
        })
    }

    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError> {
        let cluster = handle.details.get("cluster").unwrap_or(&self.cluster);
        match self
            .client()
            .await
            .stop_task()
            .cluster(cluster)
            .task(&handle.id)
            .reason("terminated by gosling")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // A task that is gone cannot be stopped, and that is what was asked: AWS
                // answers InvalidParameterException ("task not found"), moto a 500 page.
                if matches!(self.status(handle).await, Ok(MachineStatus::Gone)) {
                    return Ok(());
                }
                Err(aws_error(NAME, "StopTask", &e))
            }
        }
    }
}
