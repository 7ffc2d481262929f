//! The providers' settings ([`ProviderSettings`], from a TOML file and the environment)
//! and [`providers`], which builds the configured ones. `providers.example.toml` (beside
//! this crate's `Cargo.toml`) is a commented example of the file, `[tofu]` table included
//! (that table is read by `gosling_tofu::assembly`).

use crate::aws::{Ec2Provider, EcsProvider};
use crate::cloud_init::GoslingBinary;
use crate::yandex::{ComputeProvider, Endpoints, ServerlessProvider, TokenSource};
use gosling_fleet::Providers;
use gosling_state::AwsCredentials;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting that is needed is missing.
    #[error("setting `{0}` is needed")]
    Missing(String),
    /// A setting has a bad value.
    #[error("setting `{name}`: {message}")]
    Invalid {
        /// The setting.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The Yandex Cloud key file is unusable.
    #[error("Yandex Cloud key: {0}")]
    Key(String),
}

/// All the providers' settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The gosling binary VM runners download.
    #[serde(default)]
    pub gosling_binary: Option<GoslingBinary>,
    /// Public SSH keys for a `gosling` admin user on VM runners.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// AWS.
    #[serde(default)]
    pub aws: Option<AwsSettings>,
    /// Yandex Cloud.
    #[serde(default)]
    pub yandex: Option<YandexSettings>,
    /// The `[tofu]` table of the same file: the OpenTofu path's settings, read by
    /// `gosling_tofu::assembly` (accepted here so that one file describes both paths).
    #[serde(default, skip_serializing)]
    pub tofu: Option<toml::Table>,
}

fn default_true() -> bool {
    true
}

fn default_min_disk() -> u64 {
    10
}

/// AWS settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region.
    pub region: String,
    /// Endpoint override (tests, moto).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Subnets: the first for EC2, all for Fargate (unless the egg names one).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Security groups (unless the egg names one).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// AMI for VM runners (unless the egg names one).
    #[serde(default)]
    pub ami: Option<String>,
    /// Instance profile (name or ARN) of VM runners.
    #[serde(default)]
    pub instance_profile: Option<String>,
    /// Smallest root volume, GiB (the AMI needs room).
    #[serde(default = "default_min_disk")]
    pub min_disk_gb: u64,
    /// ECS cluster of serverless runners.
    #[serde(default)]
    pub ecs_cluster: Option<String>,
    /// The runner image (`gosling runner` entrypoint).
    #[serde(default)]
    pub runner_image: Option<String>,
    /// Task execution role (image pull, logs).
    #[serde(default)]
    pub execution_role_arn: Option<String>,
    /// Task role of the runner.
    #[serde(default)]
    pub task_role_arn: Option<String>,
    /// Give Fargate tasks a public IP.
    #[serde(default = "default_true")]
    pub assign_public_ip: bool,
    /// The gosling binary (copied from [`ProviderSettings::gosling_binary`]).
    #[serde(skip)]
    pub gosling_binary: Option<GoslingBinary>,
    /// SSH keys (copied from [`ProviderSettings::ssh_authorized_keys`]).
    #[serde(skip)]
    pub ssh_authorized_keys: Vec<String>,
    /// Static credentials (tests); without them the AWS default chain.
    #[serde(skip)]
    pub credentials: Option<AwsCredentials>,
}

impl AwsSettings {
    /// The gosling binary VM runners download.
    pub fn binary(&self) -> Result<GoslingBinary, SettingsError> {
        self.gosling_binary
            .clone()
            .ok_or_else(|| SettingsError::Missing("gosling_binary.url and .sha256".into()))
    }
}

/// Yandex Cloud API endpoints (overridable for tests).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct YandexEndpoints {
    /// IAM token exchange base.
    pub iam: String,
    /// Compute API base.
    pub compute: String,
    /// Serverless Containers API base.
    pub serverless_containers: String,
    /// Operation API base.
    pub operation: String,
    /// Metadata service base.
    pub metadata: String,
}

impl Default for YandexEndpoints {
    fn default() -> Self {
        YandexEndpoints {
            iam: "https://iam.api.cloud.yandex.net".into(),
            compute: "https://compute.api.cloud.yandex.net".into(),
            serverless_containers: "https://serverless-containers.api.cloud.yandex.net".into(),
            operation: "https://operation.api.cloud.yandex.net".into(),
            metadata: "http://169.254.169.254".into(),
        }
    }
}

fn default_disk_type() -> String {
    "network-ssd".into()
}

fn default_poll_max_s() -> u64 {
    600
}

fn default_poll_initial_ms() -> u64 {
    500
}

fn default_poll_cap_ms() -> u64 {
    5000
}

/// Yandex Cloud settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YandexSettings {
    /// Folder (unless the egg names one).
    #[serde(default)]
    pub folder_id: Option<String>,
    /// Availability zone (default: the egg's region when it is a zone).
    #[serde(default)]
    pub zone: Option<String>,
    /// Subnet of VM runners (unless the egg names one).
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// Boot image of VM runners (unless the egg names one).
    #[serde(default)]
    pub image_id: Option<String>,
    /// Service account of the runners (VM, container revision, async invocation).
    #[serde(default)]
    pub service_account_id: Option<String>,
    /// Authorized key file of the service account MotherGoose acts as (JSON from `yc iam
    /// key create`); without it the metadata service gives the token.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Give VM runners a public IPv4 address (one-to-one NAT).
    #[serde(default = "default_true")]
    pub nat: bool,
    /// Boot disk type.
    #[serde(default = "default_disk_type")]
    pub disk_type: String,
    /// Smallest boot disk, GiB.
    #[serde(default = "default_min_disk")]
    pub min_disk_gb: u64,
    /// The runner image of serverless runners.
    #[serde(default)]
    pub runner_image: Option<String>,
    /// Network serverless containers are attached to.
    #[serde(default)]
    pub network_id: Option<String>,
    /// Longest wait for one operation, seconds.
    #[serde(default = "default_poll_max_s")]
    pub operation_timeout_s: u64,
    /// First wait before polling an operation, milliseconds (doubled up to
    /// `poll_max_ms`).
    #[serde(default = "default_poll_initial_ms")]
    pub poll_initial_ms: u64,
    /// Longest wait between two polls, milliseconds.
    #[serde(default = "default_poll_cap_ms")]
    pub poll_max_ms: u64,
    /// API endpoints.
    #[serde(default)]
    pub endpoints: YandexEndpoints,
    /// The gosling binary (copied from [`ProviderSettings::gosling_binary`]).
    #[serde(skip)]
    pub gosling_binary: Option<GoslingBinary>,
    /// SSH keys (copied from [`ProviderSettings::ssh_authorized_keys`]).
    #[serde(skip)]
    pub ssh_authorized_keys: Vec<String>,
}

impl YandexSettings {
    /// The gosling binary VM runners download.
    pub fn binary(&self) -> Result<GoslingBinary, SettingsError> {
        self.gosling_binary
            .clone()
            .ok_or_else(|| SettingsError::Missing("gosling_binary.url and .sha256".into()))
    }

    /// How operations are polled.
    pub fn poll(&self) -> crate::yandex::Poll {
        crate::yandex::Poll {
            initial: Duration::from_millis(self.poll_initial_ms.max(1)),
            max: Duration::from_millis(self.poll_max_ms.max(self.poll_initial_ms).max(1)),
            timeout: Duration::from_secs(self.operation_timeout_s.max(1)),
        }
    }
}

/// The environment variables that override the file, with the setting each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("GOSLING_BINARY_URL", "gosling_binary.url"),
    ("GOSLING_BINARY_SHA256", "gosling_binary.sha256"),
    ("GOSLING_AWS_REGION", "aws.region"),
    ("GOSLING_AWS_ENDPOINT", "aws.endpoint"),
    ("GOSLING_AWS_SUBNETS", "aws.subnets (comma-separated)"),
    (
        "GOSLING_AWS_SECURITY_GROUPS",
        "aws.security_groups (comma-separated)",
    ),
    ("GOSLING_AWS_AMI", "aws.ami"),
    ("GOSLING_AWS_INSTANCE_PROFILE", "aws.instance_profile"),
    ("GOSLING_AWS_ECS_CLUSTER", "aws.ecs_cluster"),
    ("GOSLING_AWS_RUNNER_IMAGE", "aws.runner_image"),
    ("GOSLING_YC_FOLDER_ID", "yandex.folder_id"),
    ("GOSLING_YC_ZONE", "yandex.zone"),
    ("GOSLING_YC_SUBNET_ID", "yandex.subnet_id"),
    ("GOSLING_YC_IMAGE_ID", "yandex.image_id"),
    ("GOSLING_YC_SERVICE_ACCOUNT_ID", "yandex.service_account_id"),
    ("GOSLING_YC_KEY_FILE", "yandex.key_file"),
    ("GOSLING_YC_RUNNER_IMAGE", "yandex.runner_image"),
];

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl ProviderSettings {
    /// Parses the TOML text of a settings file.
    pub fn from_toml(text: &str, path: &Path) -> Result<ProviderSettings, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads the file (if any), then applies the [`ENV_VARS`] found by `var`.
    pub fn load(
        path: Option<&Path>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ProviderSettings, SettingsError> {
        let mut s = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| SettingsError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                ProviderSettings::from_toml(&text, p)?
            }
            None => ProviderSettings::default(),
        };
        s.apply_env(var);
        Ok(s)
    }

    /// Reads the file (if any) and the process environment.
    pub fn from_env(path: Option<&Path>) -> Result<ProviderSettings, SettingsError> {
        ProviderSettings::load(path, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Applies the [`ENV_VARS`] found by `var` over what the file said.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let (Some(url), Some(sha256)) = (var("GOSLING_BINARY_URL"), var("GOSLING_BINARY_SHA256"))
        {
            self.gosling_binary = Some(GoslingBinary { url, sha256 });
        }
        let aws_vars = ENV_VARS
            .iter()
            .filter(|(k, _)| k.starts_with("GOSLING_AWS_"));
        if aws_vars.clone().any(|(k, _)| var(k).is_some()) {
            let a = self.aws.get_or_insert_with(|| AwsSettings {
                min_disk_gb: default_min_disk(),
                assign_public_ip: true,
                ..AwsSettings::default()
            });
            for (k, _) in aws_vars {
                let Some(v) = var(k) else { continue };
                match *k {
                    "GOSLING_AWS_REGION" => a.region = v,
                    "GOSLING_AWS_ENDPOINT" => a.endpoint = Some(v),
                    "GOSLING_AWS_SUBNETS" => a.subnets = list(&v),
                    "GOSLING_AWS_SECURITY_GROUPS" => a.security_groups = list(&v),
                    "GOSLING_AWS_AMI" => a.ami = Some(v),
                    "GOSLING_AWS_INSTANCE_PROFILE" => a.instance_profile = Some(v),
                    "GOSLING_AWS_ECS_CLUSTER" => a.ecs_cluster = Some(v),
                    "GOSLING_AWS_RUNNER_IMAGE" => a.runner_image = Some(v),
                    _ => {}
                }
            }
        }
        let yc_vars = ENV_VARS
            .iter()
            .filter(|(k, _)| k.starts_with("GOSLING_YC_"));
        if yc_vars.clone().any(|(k, _)| var(k).is_some()) {
            let y = self.yandex.get_or_insert_with(|| YandexSettings {
                nat: true,
                disk_type: default_disk_type(),
                min_disk_gb: default_min_disk(),
                operation_timeout_s: default_poll_max_s(),
                poll_initial_ms: default_poll_initial_ms(),
                poll_max_ms: default_poll_cap_ms(),
                ..YandexSettings::default()
            });
            for (k, _) in yc_vars {
                let Some(v) = var(k) else { continue };
                match *k {
                    "GOSLING_YC_FOLDER_ID" => y.folder_id = Some(v),
                    "GOSLING_YC_ZONE" => y.zone = Some(v),
                    "GOSLING_YC_SUBNET_ID" => y.subnet_id = Some(v),
                    "GOSLING_YC_IMAGE_ID" => y.image_id = Some(v),
                    "GOSLING_YC_SERVICE_ACCOUNT_ID" => y.service_account_id = Some(v),
                    "GOSLING_YC_KEY_FILE" => y.key_file = Some(PathBuf::from(v)),
                    "GOSLING_YC_RUNNER_IMAGE" => y.runner_image = Some(v),
                    _ => {}
                }
            }
        }
    }

    /// The AWS settings with the shared values copied in.
    pub fn aws_settings(&self) -> Option<AwsSettings> {
        self.aws.clone().map(|mut a| {
            a.gosling_binary = self.gosling_binary.clone();
            a.ssh_authorized_keys = self.ssh_authorized_keys.clone();
            a
        })
    }

    /// The Yandex settings with the shared values copied in.
    pub fn yandex_settings(&self) -> Option<YandexSettings> {
        self.yandex.clone().map(|mut y| {
            y.gosling_binary = self.gosling_binary.clone();
            y.ssh_authorized_keys = self.ssh_authorized_keys.clone();
            y
        })
    }
}

/// The providers the settings configure, by [`gosling_fleet::provider_key`]: `aws/vm`
/// with `[aws]`, `aws/serverless` with `aws.ecs_cluster` and `aws.runner_image`,
/// `yandex/vm` with `[yandex]`, `yandex/serverless` with `yandex.runner_image`. VM
/// providers need `gosling_binary`. Nothing is contacted here: clients and tokens are
/// made on first use.
pub fn providers(settings: &ProviderSettings) -> Result<Providers, SettingsError> {
    let mut out = Providers::default();
    if let Some(a) = settings.aws_settings() {
        if a.region.is_empty() {
            return Err(SettingsError::Missing("aws.region".into()));
        }
        out.by_key
            .insert("aws/vm".into(), Arc::new(Ec2Provider::new(a.clone())?));
        if a.ecs_cluster.is_some() || a.runner_image.is_some() {
            out.by_key
                .insert("aws/serverless".into(), Arc::new(EcsProvider::new(a)?));
        }
    }
    if let Some(y) = settings.yandex_settings() {
        let tokens = Arc::new(TokenSource::from_settings(&y)?);
        let endpoints = Endpoints::from(&y.endpoints);
        out.by_key.insert(
            "yandex/vm".into(),
            Arc::new(ComputeProvider::new(
                y.clone(),
                endpoints.clone(),
                tokens.clone(),
            )?),
        );
        if y.runner_image.is_some() {
            out.by_key.insert(
                "yandex/serverless".into(),
                Arc::new(ServerlessProvider::new(y, endpoints, tokens)?),
            );
        }
    }
    Ok(out)
}

/// The egg's own image, when it names one.
pub fn egg_image_id(egg: &fly_ir::Egg) -> Option<String> {
    egg.cloud.image_id.clone()
}

/// The egg's own security group, when it names one.
pub fn egg_security_group_id(egg: &fly_ir::Egg) -> Option<String> {
    egg.cloud.security_group_id.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = r#"
[gosling_binary]
url = "https://example.com/gosling"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[aws]
region = "eu-west-1"
subnets = ["subnet-1"]
ami = "ami-1"
"#;

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.toml");
        std::fs::write(&path, FILE).unwrap();
        let env: HashMap<&str, &str> = [
            ("GOSLING_AWS_SUBNETS", "subnet-2, subnet-3"),
            ("GOSLING_AWS_ECS_CLUSTER", "gosling"),
            ("GOSLING_AWS_RUNNER_IMAGE", "runner:1"),
            ("GOSLING_YC_FOLDER_ID", "b1g"),
        ]
        .into();
        let s = ProviderSettings::load(Some(&path), |k| env.get(k).map(|v| v.to_string())).unwrap();
        let a = s.aws_settings().unwrap();
        assert_eq!(a.subnets, ["subnet-2", "subnet-3"]);
        assert_eq!(a.ami.as_deref(), Some("ami-1"));
        assert_eq!(a.min_disk_gb, 10);
        assert!(a.gosling_binary.is_some());
        let y = s.yandex_settings().unwrap();
        assert_eq!(y.folder_id.as_deref(), Some("b1g"));
        assert_eq!(y.endpoints, YandexEndpoints::default());
        assert_eq!(y.disk_type, "network-ssd");
    }

    #[test]
    fn only_the_configured_providers_are_built() {
        let s = ProviderSettings::from_toml(FILE, Path::new("p.toml")).unwrap();
        let p = providers(&s).unwrap();
        assert_eq!(p.by_key.keys().collect::<Vec<_>>(), ["aws/vm"]);
        assert_eq!(p.by_key["aws/vm"].name(), "aws-ec2");

        let mut s2 = s.clone();
        s2.aws.as_mut().unwrap().runner_image = Some("runner:1".into());
        assert!(matches!(providers(&s2), Err(SettingsError::Missing(m)) if m == "aws.ecs_cluster"));

        let mut s3 = s.clone();
        s3.gosling_binary = None;
        assert!(matches!(providers(&s3), Err(SettingsError::Missing(_))));

        assert!(providers(&ProviderSettings::default())
            .unwrap()
            .by_key
            .is_empty());
    }

    #[test]
    fn the_example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers.example.toml");
        let s = ProviderSettings::load(Some(&path), |_| None).unwrap();
        assert_eq!(s.aws_settings().unwrap().region, "eu-west-1");
        assert!(s.yandex_settings().unwrap().runner_image.is_some());
        assert!(
            s.tofu.is_some(),
            "the [tofu] table is kept for gosling-tofu"
        );
    }

    #[test]
    fn unknown_keys_and_bad_key_files_are_refused() {
        let bad = ProviderSettings::from_toml(
            "[aws]\nregion = \"x\"\nsubnet = \"s\"\n",
            Path::new("p.toml"),
        );
        assert!(matches!(bad, Err(SettingsError::Parse { .. })));
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.json");
        std::fs::write(
            &key,
            r#"{"id":"k","service_account_id":"sa","private_key":"nope"}"#,
        )
        .unwrap();
        let s = ProviderSettings {
            gosling_binary: Some(GoslingBinary {
                url: "https://example.com/g".into(),
                sha256: "0".repeat(64),
            }),
            yandex: Some(YandexSettings {
                key_file: Some(key),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = providers(&s).unwrap_err();
        assert!(matches!(err, SettingsError::Key(_)), "{err}");
        assert!(!format!("{err}").contains("nope"));
    }
}
