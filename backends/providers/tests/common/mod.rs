//! Eggs and runner specs for the provider tests.
#![allow(dead_code)]

use gosling_fleet::{Bootstrap, RunnerSpec};
use gosling_providers::GoslingBinary;
use gosling_state::SecretString;
use std::collections::BTreeMap;

/// The credential every test runner gets (asserted never to leak).
pub const CREDENTIAL: &str = "gosling-test-credential-9f8e7d6c5b4a";

/// An egg of `provider` and `kind` with the language's defaults.
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
            provisioning: fly_ir::Provisioning::Sdk,
            image_id: None,
            security_group_id: None,
        },
        resources: fly_ir::Resources {
            cpu: 2,
            memory_mb: 2048,
            disk_gb: 20,
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

/// The binary the cloud-init downloads.
pub fn binary() -> GoslingBinary {
    GoslingBinary {
        url: "https://downloads.example.com/gosling/0.1.0/gosling-linux-amd64".into(),
        sha256: "5f".repeat(32),
    }
}
