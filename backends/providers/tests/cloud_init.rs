//! The VM cloud-init: rendered output (snapshots for a Yandex and an AWS egg), the env
//! file, the 16 KB EC2 limit, and the credential only in the env file.

mod common;

use base64::Engine as _;
use common::{binary, egg, spec, CREDENTIAL};
use fly_ir::{Provider, RunnerKind};
use gosling_providers::cloud_init::{self, env_file, CloudInitError, UserData};

fn env_section(doc: &str) -> String {
    let b64 = doc
        .lines()
        .skip_while(|l| !l.contains("/etc/gosling/runner-"))
        .find_map(|l| l.trim().strip_prefix("content: "))
        .expect("the env file entry has content");
    let b64: String = serde_json::from_str(b64).unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// The document with the embedded unit replaced by its name: the unit belongs to
/// `runner/packaging` (checked verbatim in `the_unit_is_the_packaged_one_and_started_by_id`),
/// so its wording does not churn these snapshots.
fn without_unit(doc: &UserData) -> String {
    let block: Vec<String> = cloud_init::RUNNER_UNIT
        .trim_end()
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("      {l}")
            }
        })
        .collect();
    let block = block.join("\n");
    assert!(
        doc.as_str().contains(&block),
        "the unit is embedded verbatim"
    );
    doc.as_str()
        .replace(&block, "      <runner/packaging/gosling-runner@.service>")
}

#[test]
fn yandex_vm_cloud_init() {
    let s = spec(
        "r-0123456789abcdef",
        egg("builds", Provider::Yandex, RunnerKind::Vm),
    );
    let doc = cloud_init::render(&s, &binary(), &[]).unwrap();
    insta::assert_snapshot!("yandex_vm", without_unit(&doc));
    insta::assert_snapshot!(
        "yandex_vm_env",
        env_section(doc.as_str()).replace(CREDENTIAL, "CREDENTIAL")
    );
}

#[test]
fn aws_vm_cloud_init_with_ca_and_admin_key() {
    let mut s = spec(
        "r-fedcba9876543210",
        egg("heavy", Provider::Aws, RunnerKind::Vm),
    );
    s.bootstrap.ca_pem = Some(
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n".into(),
    );
    s.ephemeral = true;
    s.extra_env
        .insert("RIFT_URL".into(), "http://rift.internal:9000".into());
    let keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGosling admin@example".to_string()];
    let doc = cloud_init::render(&s, &binary(), &keys).unwrap();
    insta::assert_snapshot!("aws_vm", without_unit(&doc));
    insta::assert_snapshot!(
        "aws_vm_env",
        env_section(doc.as_str()).replace(CREDENTIAL, "CREDENTIAL")
    );
    assert!(doc.ec2_base64().is_ok());
}

#[test]
fn the_credential_is_only_in_the_env_file() {
    let s = spec("r-1", egg("builds", Provider::Aws, RunnerKind::Vm));
    let doc = cloud_init::render(&s, &binary(), &[]).unwrap();
    assert!(
        !doc.as_str().contains(CREDENTIAL),
        "never in clear in the document"
    );
    assert!(
        env_section(doc.as_str()).contains(&format!("GOSLING_RUNNER_CREDENTIAL=\"{CREDENTIAL}\""))
    );
    // Neither Debug nor an error shows it.
    assert_eq!(
        format!("{doc:?}"),
        format!("UserData({} bytes, redacted)", doc.len())
    );
}

#[test]
fn the_unit_is_the_packaged_one_and_started_by_id() {
    let s = spec("r-42", egg("builds", Provider::Yandex, RunnerKind::Vm));
    let doc = cloud_init::render(&s, &binary(), &[]).unwrap();
    let text = doc.as_str();
    for line in cloud_init::RUNNER_UNIT.lines().filter(|l| !l.is_empty()) {
        assert!(
            text.contains(&format!("      {line}")),
            "unit line {line:?}"
        );
    }
    assert!(text.contains("systemctl start 'gosling-runner@r-42'"));
    assert!(text.contains("path: \"/etc/gosling/runner-r-42.env\""));
    assert!(text.contains("permissions: \"0600\""));
    assert!(text.contains("sha256sum -c --status"));
}

#[test]
fn env_file_escapes_what_systemd_would_expand() {
    let mut env = std::collections::BTreeMap::new();
    env.insert("A".to_string(), "x\"y$z`w\\v".to_string());
    env.insert("B".to_string(), "line1\nline2".to_string());
    assert_eq!(
        env_file(&env).unwrap(),
        "A=\"x\\\"y\\$z\\`w\\\\v\"\nB=\"line1\nline2\"\n"
    );
    env.insert("1BAD".to_string(), String::new());
    assert_eq!(env_file(&env), Err(CloudInitError::EnvName("1BAD".into())));
}

#[test]
fn bad_inputs_are_refused_before_rendering() {
    let s = spec(
        "r 1; rm -rf /",
        egg("builds", Provider::Aws, RunnerKind::Vm),
    );
    assert!(matches!(
        cloud_init::render(&s, &binary(), &[]),
        Err(CloudInitError::RunnerId(_))
    ));
    let s = spec("r-1", egg("builds", Provider::Aws, RunnerKind::Vm));
    let mut b = binary();
    b.sha256 = "nothex".into();
    assert!(matches!(
        cloud_init::render(&s, &b, &[]),
        Err(CloudInitError::Binary(_))
    ));
    let mut b = binary();
    b.url = "ftp://x".into();
    assert!(matches!(
        cloud_init::render(&s, &b, &[]),
        Err(CloudInitError::Binary(_))
    ));
    let keys = vec!["ssh-ed25519 AAA\nruncmd: evil".to_string()];
    assert_eq!(
        cloud_init::render(&s, &binary(), &keys),
        Err(CloudInitError::SshKey)
    );
}

#[test]
fn user_data_over_16_kb_is_refused_for_ec2() {
    let mut s = spec("r-1", egg("builds", Provider::Aws, RunnerKind::Vm));
    s.extra_env.insert("BIG".into(), "x".repeat(16 * 1024));
    let doc: UserData = cloud_init::render(&s, &binary(), &[]).unwrap();
    assert!(doc.len() > cloud_init::EC2_USER_DATA_MAX);
    assert!(matches!(
        doc.ec2_base64(),
        Err(CloudInitError::TooLarge { .. })
    ));
}
