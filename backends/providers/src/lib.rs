//! Cloud providers for runners, behind gosling-fleet's [`Provider`](gosling_fleet::Provider)
//! interface:
//!
//! - [`aws::Ec2Provider`] (`aws-ec2`, VM eggs on AWS) and [`aws::EcsProvider`] (`aws-ecs`,
//!   serverless eggs on AWS, as ECS Fargate tasks);
//! - [`yandex::ComputeProvider`] (`yandex-compute`, VM eggs on Yandex Cloud) and
//!   [`yandex::ServerlessProvider`] (`yandex-serverless`, serverless eggs on Yandex Cloud,
//!   as Serverless Containers);
//! - [`cloud_init`]: the VM runners' cloud-init (shared with the OpenTofu path);
//! - [`sizing`]: how an egg's cpu/memory/disk become instance types, Fargate sizes and
//!   Yandex resources (documented tables);
//! - [`settings`]: [`ProviderSettings`] and [`providers`], which builds the configured ones.
#![warn(missing_docs)]

pub mod aws;
pub mod cloud_init;
pub mod errors;
pub mod settings;
pub mod sizing;
pub mod yandex;

pub use cloud_init::{GoslingBinary, UserData};
pub use settings::{providers, AwsSettings, ProviderSettings, SettingsError, YandexSettings};

use gosling_fleet::RunnerSpec;
use std::collections::BTreeMap;

/// The variable that tells runner mode whether it ends after one job.
pub const EPHEMERAL_VAR: &str = "GOSLING_RUNNER_EPHEMERAL";

/// The environment every runner is started with, whatever the cloud: the spec's extra
/// environment, then the bootstrap ([`gosling_fleet::Bootstrap::env`]: it wins over an
/// extra variable of the same name) and [`EPHEMERAL_VAR`].
pub fn runner_env(spec: &RunnerSpec) -> BTreeMap<String, String> {
    let mut env = spec.extra_env.clone();
    env.extend(spec.bootstrap.env(&spec.runner_id, &spec.egg.name));
    env.insert(EPHEMERAL_VAR.into(), spec.ephemeral.to_string());
    env
}

/// `s` with every character outside `[A-Za-z0-9_-]` replaced by `-`, at most `max` bytes;
/// when anything had to change, a short hash of the original keeps different inputs apart.
pub fn safe_name(s: &str, max: usize) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if mapped == s && s.len() <= max && !s.is_empty() {
        return mapped;
    }
    let hash = short_hash(s);
    let keep = max.saturating_sub(hash.len() + 1);
    let mut prefix: String = mapped.chars().take(keep).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

/// The first 8 hex digits of the SHA-256 of `s`.
pub fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(s.as_bytes());
    gosling_state::hex(&h)[..8].to_string()
}

/// A Yandex Cloud label value or resource name part: lower case, `[-_a-z0-9]`.
pub fn yandex_label(s: &str) -> String {
    safe_name(&s.to_ascii_lowercase(), 63).to_ascii_lowercase()
}
