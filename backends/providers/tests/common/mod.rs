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

/// Yandex settings pointing at a fake API at `base`, with the fake's key written to `dir`.
pub fn yandex_settings(base: &str, dir: &std::path::Path) -> gosling_providers::ProviderSettings {
    let key = dir.join("yc-key.json");
    std::fs::write(&key, gosling_standins::yandex::FakeYandex::key_json()).unwrap();
    let toml = format!(
        r#"
[gosling_binary]
url = "https://downloads.example.com/gosling/0.1.0/gosling-linux-amd64"
sha256 = "{sha}"

[yandex]
folder_id = "b1gfolder0000000000"
zone = "ru-central1-a"
subnet_id = "e9bsubnet0000000000"
image_id = "fd8image00000000000"
service_account_id = "ajerunnersa000000000"
key_file = "{key}"
runner_image = "cr.yandex/crp0000000000/gosling-runner:1"
poll_initial_ms = 5
poll_max_ms = 20
operation_timeout_s = 10

[yandex.endpoints]
iam = "{base}"
compute = "{base}"
serverless_containers = "{base}"
operation = "{base}"
metadata = "{base}"
"#,
        sha = "5f".repeat(32),
        key = key.display(),
    );
    gosling_providers::ProviderSettings::from_toml(&toml, std::path::Path::new("test.toml"))
        .unwrap()
}
