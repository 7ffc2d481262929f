//! config.toml generated from the runner configuration: snapshots per egg shape, and
//! Properties 22 and 29.

mod common;

use common::*;
use gosling_api::RunnerConfig;
use gosling_runner::agent_config::{render, AgentFiles, RenderError, RenderOptions};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

fn parse(v: &Value) -> RunnerConfig {
    serde_json::from_value(v.clone()).expect("a RunnerConfig")
}

fn opts(listen: bool) -> RenderOptions {
    RenderOptions {
        work_dir: PathBuf::from("/var/lib/gosling-runner"),
        listen_address: listen.then(|| "127.0.0.1:9252".to_string()),
    }
}

fn rift(docker: bool) -> Value {
    let mut c = json!({
        "server_address": "rift.internal:9000",
        "bucket": "runner-cache",
        "path": "my-app",
        "access_key": "r1",
        "secret_key": "rift-secret",
        "insecure": false
    });
    if docker {
        c["docker_host"] = json!("tcp://rift.internal:2375");
        c["docker_token"] = json!("glrt-docker-token");
        c["ca_pem"] = json!("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    }
    c
}

fn toml_of(files: &AgentFiles) -> toml::Table {
    files.config_toml.parse().expect("valid TOML")
}

fn first_runner(t: &toml::Table) -> &toml::Table {
    t["runners"].as_array().unwrap()[0].as_table().unwrap()
}

#[test]
fn snapshot_vm_pool_runner() {
    let files = render(&parse(&runner_config("vm", false)), &opts(true)).unwrap();
    insta::assert_snapshot!("vm_pool", files.config_toml);
    assert!(files.docker_config.is_none());
}

#[test]
fn snapshot_serverless_single_job_runner() {
    let files = render(&parse(&runner_config("serverless", true)), &opts(false)).unwrap();
    insta::assert_snapshot!("serverless_single_job", files.config_toml);
}

#[test]
fn snapshot_vm_runner_with_rift() {
    let mut c = runner_config("vm", false);
    c["cache"] = rift(false);
    let files = render(&parse(&c), &opts(true)).unwrap();
    insta::assert_snapshot!("vm_with_rift_cache", files.config_toml);
}

#[test]
fn snapshot_serverless_runner_with_rift_and_its_docker_proxy() {
    let mut c = runner_config("serverless", true);
    c["cache"] = rift(true);
    let files = render(&parse(&c), &opts(false)).unwrap();
    insta::assert_snapshot!("serverless_with_rift_docker", files.config_toml);
    let docker: Value = serde_json::from_str(files.docker_config.as_deref().unwrap()).unwrap();
    assert_eq!(
        docker,
        json!({"HttpHeaders": {"X-Rift-Token": "glrt-docker-token"}})
    );
    assert!(files.docker_ca.is_some());
}

// Property 22: a runner configured without Rift gets no cache section, so gitlab-runner
// never contacts a cache; with Rift it gets exactly the S3 section pointing at it.
#[test]
fn property_22_no_cache_section_without_rift_and_a_correct_one_with_it() {
    for (kind, eph) in [("vm", false), ("serverless", true)] {
        let files = render(&parse(&runner_config(kind, eph)), &opts(!eph)).unwrap();
        let t = toml_of(&files);
        assert!(
            !first_runner(&t).contains_key("cache"),
            "{}",
            files.config_toml
        );
        for word in ["[runners.cache", "ServerAddress", "DOCKER_HOST", "rift"] {
            assert!(
                !files.config_toml.contains(word),
                "{word}: {}",
                files.config_toml
            );
        }
        assert!(files.docker_config.is_none() && files.docker_ca.is_none());
    }
    let mut c = runner_config("vm", false);
    c["cache"] = rift(false);
    let files = render(&parse(&c), &opts(true)).unwrap();
    let t = toml_of(&files);
    let cache = first_runner(&t)["cache"].as_table().unwrap();
    assert_eq!(cache["Type"].as_str(), Some("s3"));
    assert_eq!(cache["Shared"].as_bool(), Some(true));
    assert_eq!(
        cache["Path"].as_str(),
        Some("my-app"),
        "the egg's own prefix"
    );
    let s3 = cache["s3"].as_table().unwrap();
    assert_eq!(s3["ServerAddress"].as_str(), Some("rift.internal:9000"));
    assert_eq!(s3["AccessKey"].as_str(), Some("r1"));
    assert_eq!(s3["SecretKey"].as_str(), Some("rift-secret"));
    assert_eq!(s3["BucketName"].as_str(), Some("runner-cache"));
    assert_eq!(s3["Insecure"].as_bool(), Some(false));
    assert_eq!(s3["PathStyle"].as_bool(), Some(true));
    assert!(
        files.docker_config.is_none(),
        "no Docker proxy without docker_host"
    );
}

fn environment_of(files: &AgentFiles) -> Vec<String> {
    let t = toml_of(files);
    first_runner(&t)["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

// Property 29: every environment variable of the egg is in the agent's configuration,
// unchanged, so gitlab-runner sets it for every job.
#[test]
fn property_29_the_eggs_environment_is_in_config_toml() {
    let mut c = runner_config("vm", false);
    c["egg"]["environment"] = json!({"APP_ENV": "ci", "QUOTED": "a \"b\" = c", "EMPTY": ""});
    let files = render(&parse(&c), &opts(true)).unwrap();
    assert_eq!(
        environment_of(&files),
        vec!["APP_ENV=ci", "EMPTY=", "QUOTED=a \"b\" = c"]
    );
    // With Rift's Docker proxy the variables it needs are added, the egg's kept first.
    c["cache"] = rift(true);
    c["egg"]["environment"]["DOCKER_HOST"] = json!("unix:///mine.sock");
    let env = environment_of(&render(&parse(&c), &opts(true)).unwrap());
    assert!(
        env.contains(&"DOCKER_HOST=unix:///mine.sock".to_string()),
        "{env:?}"
    );
    assert!(!env.contains(&"DOCKER_HOST=tcp://rift.internal:2375".to_string()));
    assert!(env.contains(&"DOCKER_CONFIG=/gosling/docker".to_string()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Property 29, over generated environments: names and values of every kind come out
    // of config.toml exactly as the egg gives them.
    #[test]
    fn property_29_any_environment_survives_the_round_trip(
        env in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,20}", any::<String>(), 0..12),
        serverless in any::<bool>(),
    ) {
        let mut c = runner_config(if serverless { "serverless" } else { "vm" }, serverless);
        c["egg"]["environment"] = json!(env);
        let files = render(&parse(&c), &opts(!serverless)).unwrap();
        let want: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        prop_assert_eq!(environment_of(&files), want);
    }
}

#[test]
fn unusable_names_and_a_missing_token_are_errors_without_secrets() {
    for bad in ["", "A=B", "NUL\0"] {
        let mut c = runner_config("vm", false);
        let mut env = BTreeMap::new();
        env.insert(bad.to_string(), "x".to_string());
        c["egg"]["environment"] = json!(env);
        let e = render(&parse(&c), &opts(true)).err().unwrap();
        assert!(matches!(e, RenderError::BadName(_)), "{e}");
        assert!(!e.to_string().contains(TOKEN));
    }
    let mut c = runner_config("vm", false);
    c["gitlab_token"] = Value::Null;
    let e = render(&parse(&c), &opts(true)).err().unwrap();
    assert!(matches!(e, RenderError::NoToken), "{e}");
}

#[test]
fn files_are_written_private_and_the_docker_config_removed_with_rift() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = runner_config("serverless", true);
    c["cache"] = rift(true);
    let with = render(
        &parse(&c),
        &RenderOptions {
            work_dir: dir.path().into(),
            listen_address: None,
        },
    )
    .unwrap();
    with.write(dir.path()).unwrap();
    for f in ["config.toml", "docker/config.json", "docker/ca.pem"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(text.contains(&format!(
        "{}/docker:/gosling/docker:ro",
        dir.path().display()
    )));
    let without = render(&parse(&runner_config("serverless", true)), &opts(false)).unwrap();
    without.write(dir.path()).unwrap();
    assert!(!dir.path().join("docker/config.json").exists());
    assert!(!dir.path().join("docker/ca.pem").exists());
    assert!(!dir.path().join("config.toml.tmp").exists());
}
