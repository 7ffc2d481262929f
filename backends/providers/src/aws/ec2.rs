//! VM runners on EC2: RunInstances from the egg, DescribeInstances, TerminateInstances.

use super::{runner_tags, SdkConfigCell};
use crate::cloud_init::{self, UserData};
use crate::errors::{aws_code, aws_error, SPOT_FALLBACK_CODES};
use crate::settings::{AwsSettings, SettingsError};
use crate::sizing;
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataOptionsRequest,
    InstanceStateName, InstanceType, MarketType, ResourceType, ShutdownBehavior, SpotInstanceType,
    SpotMarketOptions, Tag, TagSpecification, VolumeType,
};
use gosling_fleet::{Handle, MachineStatus, Provider, ProviderError, RunnerSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// The provider name in handles.
pub const NAME: &str = "aws-ec2";

/// Everything RunInstances is given for one runner (without the user data, which holds
/// the runner's credential and is passed beside it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ec2Launch {
    /// AMI.
    pub image_id: String,
    /// Instance type, from [`sizing::ec2_instance_type`].
    pub instance_type: String,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// Instance profile: an ARN or a name.
    pub instance_profile: Option<String>,
    /// Root volume size, GiB.
    pub disk_gib: u64,
    /// Tags: `gosling:egg`, `gosling:runner`, `Name`.
    pub tags: Vec<(String, String)>,
    /// Ask for spot capacity.
    pub spot: bool,
    /// The idempotency token.
    pub client_token: String,
}

/// The ClientToken for a runner (at most 64 ASCII characters; a suffix tells the spot and
/// the on-demand attempt apart).
pub fn client_token(runner_id: &str, suffix: &str) -> String {
    let base = crate::safe_name(runner_id, 60 - suffix.len().min(20));
    format!("{base}{suffix}")
}

/// The RunInstances parameters for `spec`, from the egg and `settings` (the egg's subnet,
/// security group and image win over the settings').
pub fn ec2_launch(spec: &RunnerSpec, settings: &AwsSettings) -> Result<Ec2Launch, ProviderError> {
    let egg = &spec.egg;
    let instance_type = sizing::ec2_instance_type(egg.resources.cpu, egg.resources.memory_mb)
        .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
    let image_id = crate::settings::egg_image_id(egg)
        .or(settings.ami.clone())
        .ok_or_else(|| {
            ProviderError::permanent(NAME, "no AMI: set `aws.ami` or the egg's `image_id`")
        })?;
    let subnet_id = egg
        .cloud
        .subnet_id
        .clone()
        .or_else(|| settings.subnets.first().cloned());
    let security_group_ids = match crate::settings::egg_security_group_id(egg) {
        Some(sg) => vec![sg],
        None => settings.security_groups.clone(),
    };
    let disk_gib = egg
        .resources
        .disk_gb
        .max(settings.min_disk_gb)
        .clamp(sizing::EBS_GP3_GIB.0, sizing::EBS_GP3_GIB.1);
    if egg.resources.disk_gb > sizing::EBS_GP3_GIB.1 {
        return Err(ProviderError::permanent(
            NAME,
            format!(
                "egg `{}` asks for a {} GB disk; EBS gp3 volumes hold at most {} GiB",
                egg.name,
                egg.resources.disk_gb,
                sizing::EBS_GP3_GIB.1
            ),
        ));
    }
    Ok(Ec2Launch {
        image_id,
        instance_type: instance_type.to_string(),
        subnet_id,
        security_group_ids,
        instance_profile: settings.instance_profile.clone(),
        disk_gib,
        tags: runner_tags(&egg.name, &spec.runner_id),
        spot: egg.cloud.preemptible,
        client_token: client_token(&spec.runner_id, ""),
    })
}

/// Applies an [`Ec2Launch`] to a RunInstances input builder or fluent builder (they have
/// the same setters), so the request sent and the one Property 8 checks are one.
macro_rules! apply_launch {
    ($b:expr, $l:expr, $root:expr, $user_data:expr) => {{
        let l: &Ec2Launch = $l;
        let tags: Vec<Tag> = l
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let mut b = $b
            .image_id(&l.image_id)
            .instance_type(InstanceType::from(l.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(&l.client_token)
            .user_data($user_data)
            .set_subnet_id(l.subnet_id.clone())
            .set_security_group_ids(
                (!l.security_group_ids.is_empty()).then(|| l.security_group_ids.clone()),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name($root)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(l.disk_gib as i32)
                            .volume_type(VolumeType::Gp3)
                            .delete_on_termination(true)
                            .encrypted(true)
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate);
        if let Some(p) = &l.instance_profile {
            let spec = if p.starts_with("arn:") {
                IamInstanceProfileSpecification::builder().arn(p).build()
            } else {
                IamInstanceProfileSpecification::builder().name(p).build()
            };
            b = b.iam_instance_profile(spec);
        }
        if l.spot {
            b = b.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        b
    }};
}

/// The RunInstances input for a launch, as the SDK's builder makes it (Property 8 checks
/// these; [`Ec2Provider`] sends the same through the fluent builder).
pub fn run_instances_input(
    launch: &Ec2Launch,
    root_device: &str,
    user_data_b64: &str,
) -> Result<aws_sdk_ec2::operation::run_instances::RunInstancesInput, ProviderError> {
    apply_launch!(
        aws_sdk_ec2::operation::run_instances::RunInstancesInput::builder(),
        launch,
        root_device,
        user_data_b64
    )
    .build()
    .map_err(|e| ProviderError::permanent(NAME, format!("RunInstances: {e}")))
}

/// VM runners on EC2.
#[derive(Debug)]
pub struct Ec2Provider {
    settings: AwsSettings,
    config: SdkConfigCell,
    client: tokio::sync::OnceCell<aws_sdk_ec2::Client>,
    root_devices: Mutex<HashMap<String, String>>,
}

impl Ec2Provider {
    /// A provider for these settings (the client is made on first use).
    pub fn new(settings: AwsSettings) -> Result<Ec2Provider, SettingsError> {
        settings.binary()?;
        Ok(Ec2Provider {
            settings,
            config: SdkConfigCell::default(),
            client: tokio::sync::OnceCell::new(),
            root_devices: Mutex::new(HashMap::new()),
        })
    }

    async fn client(&self) -> &aws_sdk_ec2::Client {
        self.client
            .get_or_init(|| async {
                aws_sdk_ec2::Client::new(self.config.get(&self.settings).await)
            })
            .await
    }

    fn handle(&self, id: &str, spec: &RunnerSpec, market: &str) -> Handle {
        let mut details = BTreeMap::new();
        details.insert("region".into(), self.settings.region.clone());
        details.insert("runner_id".into(), spec.runner_id.clone());
        details.insert("market".into(), market.into());
        Handle {
            provider: NAME.into(),
            id: id.to_string(),
            details,
        }
    }

    /// The AMI's root device name (so the boot volume is resized, not added), cached.
    async fn root_device(&self, ami: &str) -> Result<String, ProviderError> {
        if let Some(d) = self
            .root_devices
            .lock()
            .ok()
            .and_then(|m| m.get(ami).cloned())
        {
            return Ok(d);
        }
        let out = self
            .client()
            .await
            .describe_images()
            .image_ids(ami)
            .send()
            .await
            .map_err(|e| aws_error(NAME, "DescribeImages", &e))?;
        let device = out
            .images()
            .first()
            .ok_or_else(|| ProviderError::permanent(NAME, format!("AMI {ami} does not exist")))?
            .root_device_name()
            .unwrap_or("/dev/xvda")
            .to_string();
        if let Ok(mut m) = self.root_devices.lock() {
            m.insert(ami.to_string(), device.clone());
        }
        Ok(device)
    }

    /// The live instance already made for this runner, if any.
    async fn existing(&self, runner_id: &str) -> Result<Option<(String, bool)>, ProviderError> {
        let out = self
            .client()
            .await
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:gosling:runner")
                    .values(runner_id)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error(NAME, "DescribeInstances", &e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| {
                i.instance_id().map(|id| {
                    (
                        id.to_string(),
                        i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
                    )
                })
            }))
    }

    /// RunInstances. A spot attempt is sent once, without the SDK's retries, so that a
    /// capacity error falls back to on-demand at once instead of after five backoffs.
    async fn run(
        &self,
        launch: &Ec2Launch,
        root: &str,
        user_data: &str,
    ) -> Result<
        String,
        aws_sdk_ec2::error::SdkError<aws_sdk_ec2::operation::run_instances::RunInstancesError>,
    > {
        let request = apply_launch!(self.client().await.run_instances(), launch, root, user_data);
        let out = if launch.spot {
            request
                .customize()
                .config_override(
                    aws_sdk_ec2::config::Builder::default()
                        .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()),
                )
                .send()
                .await?
        } else {
            request.send().await?
        };
        Ok(out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .unwrap_or_default()
            .to_string())
    }
}

#[async_trait]
impl Provider for Ec2Provider {
    fn name(&self) -> &str {
        NAME
    }

    async fn create(&self, spec: &RunnerSpec) -> Result<Handle, ProviderError> {
        let mut launch = ec2_launch(spec, &self.settings)?;
        let user_data: UserData = cloud_init::render(
            spec,
            &self
                .settings
                .binary()
                .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?,
            &self.settings.ssh_authorized_keys,
        )
        .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
        let user_data = user_data
            .ec2_base64()
            .map_err(|e| ProviderError::permanent(NAME, e.to_string()))?;
        if let Some((id, spot)) = self.existing(&spec.runner_id).await? {
            return Ok(self.handle(&id, spec, if spot { "spot" } else { "on-demand" }));
        }
        let root = self.root_device(&launch.image_id).await?;
        let id = match self.run(&launch, &root, &user_data).await {
            Ok(id) => id,
            Err(e)
                if launch.spot
                    && aws_code(&e).is_some_and(|c| SPOT_FALLBACK_CODES.contains(&c.as_str())) =>
            {
                tracing::warn!(
                    runner = %spec.runner_id,
                    code = aws_code(&e).unwrap_or_default(),
                    "no spot capacity, launching on-demand"
                );
                launch.spot = false;
                launch.client_token = client_token(&spec.runner_id, "-od");
                self.run(&launch, &root, &user_data)
                    .await
                    .map_err(|e| aws_error(NAME, "RunInstances (on-demand)", &e))?
            }
            Err(e) => return Err(aws_error(NAME, "RunInstances", &e)),
        };
        if id.is_empty() {
            return Err(ProviderError::retryable(
                NAME,
                "RunInstances returned no instance",
            ));
        }
        Ok(self.handle(&id, spec, if launch.spot { "spot" } else { "on-demand" }))
    }

    async fn status(&self, handle: &Handle) -> Result<MachineStatus, ProviderError> {
        let out = match self
            .client()
            .await
            .describe_instances()
            .instance_ids(&handle.id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if aws_code(&e).as_deref() == Some("InvalidInstanceID.NotFound") => {
                return Ok(MachineStatus::Gone)
            }
            Err(e) => return Err(aws_error(NAME, "DescribeInstances", &e)),
        };
        let state = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(handle.id.as_str()))
            .and_then(|i| i.state())
            .and_then(|s| s.name().cloned());
        Ok(match state {
            Some(InstanceStateName::Pending) => MachineStatus::Starting,
            Some(InstanceStateName::Running) => MachineStatus::Running,
            Some(InstanceStateName::Stopping) | Some(InstanceStateName::Stopped) => {
                MachineStatus::Stopped
            }
            _ => MachineStatus::Gone,
        })
    }

    async fn terminate(&self, handle: &Handle) -> Result<(), ProviderError> {
        match self
            .client()
            .await
            .terminate_instances()
            .instance_ids(&handle.id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if aws_code(&e).as_deref() == Some("InvalidInstanceID.NotFound") => Ok(()),
            Err(e) => Err(aws_error(NAME, "TerminateInstances", &e)),
        }
    }
}
