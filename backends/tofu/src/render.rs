//! The OpenTofu configuration of one runner, rendered with minijinja from the design's
//! template set (`templates/`): `versions.tf` (required version, providers, the S3 backend
//! with its lock table), `providers.tf`, `variables.tf`, `data.tf`, `resources.tf`,
//! `checks.tf`, and the CLI configuration `.tofurc` ([`render_tofurc`]).
//!
//! The values come from the same builders the SDK path sends ([`gosling_providers`]):
//! [`ec2_launch`](gosling_providers::aws::ec2_launch) for an `aws_instance`,
//! [`instance_request`](gosling_providers::yandex::instance_request) for a
//! `yandex_compute_instance`, [`ecs_task`](gosling_providers::aws::ecs_task) for an
//! `aws_ecs_task_definition` — so one egg gets the same machine on either path. The VM's
//! user data is the runner cloud-init of [`gosling_providers::cloud_init`]; it holds the
//! runner's credential, so it is never written into the configuration: `variables.tf`
//! declares `var.user_data` (sensitive) and the runner passes it as `TF_VAR_user_data`.
//!
//! Every interpolated value is written as an HCL literal by the engine's formatter
//! ([`crate::hcl`]): no value can break out of its string.
//!
//! What the OpenTofu path supports: VM eggs on both clouds. A serverless runner is one
//! *run* (a Fargate RunTask, a Yandex container call), and OpenTofu manages declared
//! resources, not runs: an AWS serverless egg renders its task definition (family
//! `gosling-EGG`, the one the SDK path's RunTask uses) but [`TofuProvider`](crate::TofuProvider)
//! does not start runners for it; a Yandex serverless egg is [`RenderError::Unsupported`]
//! (its revision would carry one runner's credential and still start nothing).

use crate::hcl;
use gosling_fleet::RunnerSpec;
use gosling_providers::cloud_init::{self, CloudInitError, UserData};
use gosling_providers::{AwsSettings, GoslingBinary, YandexSettings};
use minijinja::{Environment, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

/// The templates, in the order they are rendered, with the file each becomes.
pub const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "versions.tf",
        "tofu_versions_tf.j2",
        include_str!("../templates/tofu_versions_tf.j2"),
    ),
    (
        "providers.tf",
        "tofu_providers_tf.j2",
        include_str!("../templates/tofu_providers_tf.j2"),
    ),
    (
        "variables.tf",
        "tofu_variables_tf.j2",
        include_str!("../templates/tofu_variables_tf.j2"),
    ),
    (
        "data.tf",
        "tofu_data_tf.j2",
        include_str!("../templates/tofu_data_tf.j2"),
    ),
    (
        "resources.tf",
        "tofu_resources_tf.j2",
        include_str!("../templates/tofu_resources_tf.j2"),
    ),
    (
        "checks.tf",
        "tofu_checks_tf.j2",
        include_str!("../templates/tofu_checks_tf.j2"),
    ),
];

/// The CLI configuration template.
pub const TOFURC_TEMPLATE: &str = include_str!("../templates/tofu_rc.j2");

/// The resource a VM runner is, by cloud.
pub const AWS_INSTANCE: &str = "aws_instance.runner";
/// The resource a VM runner is on Yandex Cloud.
pub const YANDEX_INSTANCE: &str = "yandex_compute_instance.runner";
/// The task definition of an AWS serverless egg.
pub const AWS_TASK_DEFINITION: &str = "aws_ecs_task_definition.runner";

/// The runner container's name and entrypoint (as in the SDK path's task definition).
const CONTAINER: &str = "runner";
const ENTRYPOINT: [&str; 2] = ["/usr/local/bin/gosling", "runner"];

/// Where OpenTofu keeps each runner's state: an S3 bucket (AWS S3 or Yandex Object
/// Storage) with a lock table (DynamoDB, or YDB's Document API, whose table needs a
/// string partition key `LockID`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// Bucket.
    pub bucket: String,
    /// Region (`ru-central1` for Yandex Object Storage).
    pub region: String,
    /// S3 endpoint (`https://storage.yandexcloud.net`); none: AWS S3.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Lock table; none: no state locking.
    #[serde(default)]
    pub lock_table: Option<String>,
    /// Lock table endpoint (`https://docapi.serverless.yandexcloud.net/ru-central1/FOLDER/DB`
    /// for YDB's Document API); none: DynamoDB of `region`.
    #[serde(default)]
    pub lock_endpoint: Option<String>,
    /// Key prefix: states are `PREFIX/EGG/RUNNER/terraform.tfstate`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

fn default_key_prefix() -> String {
    "tofu-states".into()
}

fn default_required_version() -> String {
    ">= 1.6.0".into()
}

fn default_aws_version() -> String {
    "~> 5.0".into()
}

fn default_yandex_version() -> String {
    ">= 0.100.0".into()
}

/// What the OpenTofu path renders from besides the egg.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TofuSettings {
    /// The state backend.
    pub backend: BackendSettings,
    /// `terraform { required_version }`.
    #[serde(default = "default_required_version")]
    pub required_version: String,
    /// The `hashicorp/aws` version constraint.
    #[serde(default = "default_aws_version")]
    pub aws_provider_version: String,
    /// The `yandex-cloud/yandex` version constraint.
    #[serde(default = "default_yandex_version")]
    pub yandex_provider_version: String,
    /// A provider network mirror (`https://terraform-mirror.yandexcloud.net/`) used
    /// instead of the registry.
    #[serde(default)]
    pub network_mirror: Option<String>,
    /// Tags (AWS) / labels (Yandex) added to every runner resource.
    #[serde(default)]
    pub extra_tags: BTreeMap<String, String>,
    /// The gosling binary VM runners download (cloud-init).
    #[serde(default)]
    pub gosling_binary: Option<GoslingBinary>,
    /// Public SSH keys for a `gosling` admin user on VM runners.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// AWS (the SDK path's settings: one file describes both paths).
    #[serde(default)]
    pub aws: Option<AwsSettings>,
    /// Yandex Cloud.
    #[serde(default)]
    pub yandex: Option<YandexSettings>,
}

impl TofuSettings {
    /// Settings with this backend and everything else at its default.
    pub fn new(backend: BackendSettings) -> TofuSettings {
        TofuSettings {
            backend,
            required_version: default_required_version(),
            aws_provider_version: default_aws_version(),
            yandex_provider_version: default_yandex_version(),
            network_mirror: None,
            extra_tags: BTreeMap::new(),
            gosling_binary: None,
            ssh_authorized_keys: Vec::new(),
            aws: None,
            yandex: None,
        }
    }
}

/// Why no configuration could be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The OpenTofu path does not make this kind of runner.
    #[error("the OpenTofu path cannot provision {0}")]
    Unsupported(String),
    /// A setting the egg needs is missing or invalid.
    #[error("{0}")]
    Settings(String),
    /// The runner's cloud-init could not be made.
    #[error("cloud-init: {0}")]
    CloudInit(#[from] CloudInitError),
    /// A template failed (a bug: the message names the template and line, never a value).
    #[error("template: {0}")]
    Template(String),
}

/// How to render (the provider's retry knobs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Ask for on-demand capacity even when the egg is preemptible (the spot fallback).
    pub on_demand: bool,
}

/// A runner's rendered configuration.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// File name → content (`versions.tf`, …; never a secret).
    pub files: BTreeMap<String, String>,
    /// The VM's cloud-init (passed as `TF_VAR_user_data`); none for a task definition.
    pub user_data: Option<UserData>,
    /// The state's key in the backend bucket.
    pub state_key: String,
    /// The resource that is the runner's machine (`aws_instance.runner`, …).
    pub address: &'static str,
    /// `aws` or `yandex`.
    pub cloud: &'static str,
    /// The provider requirements (`source` → constraint), for the plugin cache key.
    pub requirements: BTreeMap<String, String>,
}

/// A name usable as one segment of an object key, a state key and a directory name:
/// `[A-Za-z0-9_-]`, at most 100 bytes, with a short hash when anything had to change.
pub fn segment(s: &str) -> String {
    gosling_providers::safe_name(s, 100)
}

/// The state key of a runner.
pub fn state_key(prefix: &str, egg: &str, runner_id: &str) -> String {
    let prefix = prefix.trim_matches('/');
    format!(
        "{prefix}/{}/{}/terraform.tfstate",
        segment(egg),
        segment(runner_id)
    )
}

fn ident(s: String) -> Result<Value, minijinja::Error> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(Value::from_safe_string(s))
    } else {
        Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "not an HCL identifier",
        ))
    }
}

fn environment() -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_formatter(|out, _state, value| {
        let mut s = String::new();
        hcl::write_value(&mut s, value)?;
        out.write_str(&s).map_err(minijinja::Error::from)
    });
    env.add_filter("ident", ident);
    for (_, name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| RenderError::Template(e.to_string()))?;
    }
    env.add_template("tofu_rc.j2", TOFURC_TEMPLATE)
        .map_err(|e| RenderError::Template(e.to_string()))?;
    Ok(env)
}

fn render_all(ctx: &serde_json::Value) -> Result<BTreeMap<String, String>, RenderError> {
    let env = environment()?;
    let ctx = Value::from_serialize(ctx);
    let mut files = BTreeMap::new();
    for (file, name, _) in TEMPLATES {
        let text = env
            .get_template(name)
            .and_then(|t| t.render(&ctx))
            // The message names the template and the line, never a value.
            .map_err(|e| RenderError::Template(format!("{name}: {e}")))?;
        files.insert(file.to_string(), text);
    }
    Ok(files)
}

/// The CLI configuration for a workspace: the plugin cache, the provider mirror restored
/// from the object store (tried first for `providers`), then the registry or
/// `network_mirror`.
pub fn render_tofurc(
    plugin_cache_dir: &Path,
    mirror_dir: &Path,
    providers: &[String],
    network_mirror: Option<&str>,
) -> Result<String, RenderError> {
    let env = environment()?;
    let include: Vec<String> = providers
        .iter()
        .map(|s| format!("registry.opentofu.org/{s}"))
        .collect();
    let ctx = json!({
        "plugin_cache_dir": plugin_cache_dir.to_string_lossy(),
        "mirror_dir": mirror_dir.to_string_lossy(),
        "include": include,
        "network_mirror": network_mirror,
    });
    env.get_template("tofu_rc.j2")
        .and_then(|t| t.render(Value::from_serialize(&ctx)))
        .map_err(|e| RenderError::Template(format!("tofu_rc.j2: {e}")))
}

/// The instance profile *name* (`aws_instance` takes a name; the settings may give an ARN).
fn profile_name(p: &str) -> String {
    if p.starts_with("arn:") {
        p.rsplit('/').next().unwrap_or(p).to_string()
    } else {
        p.to_string()
    }
}

fn settings_error(e: gosling_fleet::ProviderError) -> RenderError {
    match e {
        gosling_fleet::ProviderError::Permanent { message, .. }
        | gosling_fleet::ProviderError::Retryable { message, .. } => RenderError::Settings(message),
    }
}

fn binary(settings: &TofuSettings) -> Result<&GoslingBinary, RenderError> {
    settings.gosling_binary.as_ref().ok_or_else(|| {
        RenderError::Settings("VM runners need `gosling_binary` (url and sha256)".into())
    })
}

/// Renders the configuration of the runner `spec` describes.
pub fn render(
    spec: &RunnerSpec,
    settings: &TofuSettings,
    opts: RenderOptions,
) -> Result<Rendered, RenderError> {
    let egg = &spec.egg;
    let b = &settings.backend;
    let mut endpoints = serde_json::Map::new();
    if let Some(e) = &b.endpoint {
        endpoints.insert("s3".into(), json!(e));
    }
    if let Some(e) = &b.lock_endpoint {
        endpoints.insert("dynamodb".into(), json!(e));
    }
    // A task definition is the egg's (one per egg), a VM the runner's.
    let state_key = match egg.kind {
        fly_ir::RunnerKind::Vm => state_key(&b.key_prefix, &egg.name, &spec.runner_id),
        fly_ir::RunnerKind::Serverless => format!(
            "{}/{}/task-definition/terraform.tfstate",
            b.key_prefix.trim_matches('/'),
            segment(&egg.name)
        ),
    };
    let mut ctx = json!({
        "egg": egg.name,
        "runner_id": spec.runner_id,
        "kind": match egg.kind { fly_ir::RunnerKind::Vm => "vm", fly_ir::RunnerKind::Serverless => "serverless" },
        "required_version": settings.required_version,
        "backend": {
            "bucket": b.bucket,
            "key": state_key,
            "region": b.region,
            "endpoints": endpoints,
            "lock_table": b.lock_table,
            // A non-AWS S3 (Yandex Object Storage) skips AWS-only validation.
            "compat": b.endpoint.is_some() || b.lock_endpoint.is_some(),
        },
    });
    let mut requirements = BTreeMap::new();
    let (cloud, address, user_data) = match egg.cloud.provider {
        fly_ir::Provider::Aws => {
            let aws = settings.aws.as_ref().ok_or_else(|| {
                RenderError::Settings(format!("egg `{}` is on AWS: set `[aws]`", egg.name))
            })?;
            requirements.insert(
                "hashicorp/aws".to_string(),
                settings.aws_provider_version.clone(),
            );
            ctx["providers"] = json!([{ "name": "aws", "source": "hashicorp/aws", "version": settings.aws_provider_version }]);
            ctx["aws"] = json!({ "region": aws.region, "endpoint": aws.endpoint });
            let mut tags: BTreeMap<String, String> = settings.extra_tags.clone();
            match egg.kind {
                fly_ir::RunnerKind::Vm => {
                    let mut with_settings = aws.clone();
                    with_settings.gosling_binary = Some(binary(settings)?.clone());
                    let launch = gosling_providers::aws::ec2_launch(spec, &with_settings)
                        .map_err(settings_error)?;
                    tags.extend(launch.tags.iter().cloned());
                    let user_data =
                        cloud_init::render(spec, binary(settings)?, &settings.ssh_authorized_keys)?;
                    cloud_init::check_ec2_size(&user_data)?;
                    ctx["vm"] = json!({
                        "ami": launch.image_id,
                        "instance_type": launch.instance_type,
                        "subnet_id": launch.subnet_id,
                        "security_group_ids": launch.security_group_ids,
                        "instance_profile": launch.instance_profile.as_deref().map(profile_name),
                        "disk_gib": launch.disk_gib,
                        "spot": launch.spot && !opts.on_demand,
                        "tags": tags,
                    });
                    ("aws", AWS_INSTANCE, Some(user_data))
                }
                fly_ir::RunnerKind::Serverless => {
                    let task =
                        gosling_providers::aws::ecs_task(spec, aws).map_err(settings_error)?;
                    tags.extend(task.tags.iter().cloned());
                    // The family is the egg's: no runner's tag belongs on it.
                    tags.remove("gosling:runner");
                    tags.insert("Name".into(), task.family.clone());
                    ctx["task"] = json!({
                        "family": task.family,
                        "image": task.image,
                        "cpu": task.size.cpu_units,
                        "memory": task.size.memory_mib,
                        "storage_gib": task.size.storage_gib,
                        "execution_role_arn": task.execution_role_arn,
                        "task_role_arn": task.task_role_arn,
                        "entry_point": ENTRYPOINT,
                        "container": CONTAINER,
                        "tags": tags,
                    });
                    ("aws", AWS_TASK_DEFINITION, None)
                }
            }
        }
        fly_ir::Provider::Yandex => {
            if egg.kind == fly_ir::RunnerKind::Serverless {
                return Err(RenderError::Unsupported(format!(
                    "Yandex serverless runners (egg `{}`): a container revision would hold one runner's credential and still start nothing; use provisioning = sdk",
                    egg.name
                )));
            }
            let yc = settings.yandex.as_ref().ok_or_else(|| {
                RenderError::Settings(format!(
                    "egg `{}` is on Yandex Cloud: set `[yandex]`",
                    egg.name
                ))
            })?;
            requirements.insert(
                "yandex-cloud/yandex".to_string(),
                settings.yandex_provider_version.clone(),
            );
            ctx["providers"] = json!([{ "name": "yandex", "source": "yandex-cloud/yandex", "version": settings.yandex_provider_version }]);
            let user_data =
                cloud_init::render(spec, binary(settings)?, &settings.ssh_authorized_keys)?;
            let req = gosling_providers::yandex::instance_request(spec, yc, &user_data)
                .map_err(settings_error)?;
            ctx["vm"] = yandex_vm(&req, &settings.extra_tags, opts)?;
            ctx["yandex"] = json!({
                "folder_id": req["folderId"],
                "zone": req["zoneId"],
            });
            ("yandex", YANDEX_INSTANCE, Some(user_data))
        }
    };
    ctx["cloud"] = json!(cloud);
    let files = render_all(&ctx)?;
    Ok(Rendered {
        files,
        user_data,
        state_key,
        address,
        cloud,
        requirements,
    })
}

const GIB: u64 = 1 << 30;

/// The `yandex_compute_instance` values from the Compute API request the SDK path sends
/// (memory and disk in bytes there, GB here).
fn yandex_vm(
    req: &serde_json::Value,
    extra: &BTreeMap<String, String>,
    opts: RenderOptions,
) -> Result<serde_json::Value, RenderError> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let num = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
    let bad = || RenderError::Template("unexpected Compute request shape".into());
    let res = &req["resourcesSpec"];
    let disk = &req["bootDiskSpec"]["diskSpec"];
    let nic = &req["networkInterfaceSpecs"][0];
    let mut labels: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| {
            (
                gosling_providers::yandex_label(k),
                gosling_providers::yandex_label(v),
            )
        })
        .collect();
    if let Some(m) = req["labels"].as_object() {
        for (k, v) in m {
            labels.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let name = text(&req["name"]).ok_or_else(bad)?;
    Ok(json!({
        "name": name,
        // A hostname has no underscores.
        "hostname": name.replace('_', "-"),
        "description": req["description"],
        "folder_id": req["folderId"],
        "zone": req["zoneId"],
        "platform_id": req["platformId"],
        "cores": num(&res["cores"]).ok_or_else(bad)?,
        "memory_gb": num(&res["memory"]).ok_or_else(bad)? / GIB,
        "core_fraction": num(&res["coreFraction"]).unwrap_or(100),
        "disk_type": disk["typeId"],
        "disk_gb": num(&disk["size"]).ok_or_else(bad)? / GIB,
        "image_id": disk["imageId"],
        "subnet_id": nic["subnetId"],
        "nat": nic["primaryV4AddressSpec"].get("oneToOneNatSpec").is_some(),
        "security_group_ids": nic.get("securityGroupIds").cloned().unwrap_or(json!([])),
        "preemptible": req["schedulingPolicy"]["preemptible"].as_bool().unwrap_or(false) && !opts.on_demand,
        "service_account_id": req.get("serviceAccountId"),
        "labels": labels,
    }))
}
