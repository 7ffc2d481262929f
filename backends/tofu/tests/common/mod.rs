//! Eggs, runner specs and settings for the OpenTofu tests.
#![allow(dead_code)]

use gosling_fleet::{Bootstrap, RunnerSpec};
use gosling_providers::{AwsSettings, GoslingBinary, YandexSettings};
use gosling_state::SecretString;
use gosling_tofu::{BackendSettings, TofuSettings};
use std::collections::BTreeMap;

/// The credential every test runner gets (asserted never to reach a file).
pub const CREDENTIAL: &str = "gosling-test-credential-7a6b5c4d3e2f";

/// An egg of `provider` and `kind` on the OpenTofu path.
pub fn egg(name: &str, provider: fly_ir::Provider, kind: fly_ir::RunnerKind) -> fly_ir::Egg {
    fly_ir::Egg {
        name: name.into(),
        kind,
        cloud: fly_ir::Cloud {
            provider,
            region: match provider {
                fly_ir::Provider::Yandex => "ru-central1-a".into(),
                fly_ir::Provider::Aws => "eu-west-1".into(),
            },
            folder_id: None,
            subnet_id: None,
            preemptible: false,
            provisioning: fly_ir::Provisioning::Tofu,
            image_id: None,
            security_group_id: None,
        },
        resources: fly_ir::Resources {
            cpu: 2,
            memory_mb: 4096,
            disk_gb: 30,
        },
        runner: fly_ir::RunnerSettings {
            tags: vec!["docker".into(), "linux".into()],
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
            project_id: 12345,
            token_secret: "vault://gitlab/runner-token".into(),
        },
        environment: BTreeMap::new(),
        rift: None,
        config_hash: "0".repeat(64),
    }
}

/// A runner spec for `egg`.
pub fn spec(runner_id: &str, egg: fly_ir::Egg) -> RunnerSpec {
    RunnerSpec {
        runner_id: runner_id.into(),
        egg,
        bootstrap: Bootstrap {
            mothergoose_url: "https://mothergoose.example.com".into(),
            credential: SecretString::new(CREDENTIAL),
            ca_pem: None,
        },
        ephemeral: false,
        extra_env: BTreeMap::new(),
    }
}

/// Settings for both clouds, the state in Yandex Object Storage with a YDB lock table
/// (`yandex`) or in AWS S3 with a DynamoDB lock table.
pub fn settings(yandex_backend: bool) -> TofuSettings {
    let backend = if yandex_backend {
        BackendSettings {
            bucket: "polar-gosling-state".into(),
            region: "ru-central1".into(),
            endpoint: Some("https://storage.yandexcloud.net".into()),
            lock_table: Some("tofu-locks".into()),
            lock_endpoint: Some(
                "https://docapi.serverless.yandexcloud.net/ru-central1/b1gfolder/etndb".into(),
            ),
            key_prefix: "tofu-states".into(),
        }
    } else {
        BackendSettings {
            bucket: "polar-gosling-state".into(),
            region: "eu-west-1".into(),
            endpoint: None,
            lock_table: Some("tofu-locks".into()),
            lock_endpoint: None,
            key_prefix: "tofu-states".into(),
        }
    };
    let mut s = TofuSettings::new(backend);
    s.gosling_binary = Some(GoslingBinary {
        url: "https://downloads.example.com/gosling/0.1.0/gosling-linux-amd64".into(),
        sha256: "5f".repeat(32),
    });
    s.extra_tags.insert("cost-center".into(), "ci".into());
    s.aws = Some(AwsSettings {
        region: "eu-west-1".into(),
        subnets: vec!["subnet-0abc".into()],
        security_groups: vec!["sg-0abc".into()],
        ami: Some("ami-0123456789abcdef0".into()),
        instance_profile: Some("arn:aws:iam::123456789012:instance-profile/gosling-runner".into()),
        min_disk_gb: 10,
        runner_image: Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/gosling-runner:1".into()),
        execution_role_arn: Some("arn:aws:iam::123456789012:role/gosling-exec".into()),
        assign_public_ip: true,
        ..AwsSettings::default()
    });
    s.yandex = Some(YandexSettings {
        folder_id: Some("b1gfolder".into()),
        subnet_id: Some("e9bsubnet".into()),
        image_id: Some("fd8image".into()),
        service_account_id: Some("ajeaccount".into()),
        nat: true,
        disk_type: "network-ssd".into(),
        min_disk_gb: 10,
        ..YandexSettings::default()
    });
    s
}
