//! The provider assembly MotherGoose and UglyFox share: a providers file (or the local
//! choice) becomes the providers by key, with errors that name the file and the setting.

use gosling_state::{system_clock, LocalObjects, SqliteStore};
use gosling_tofu::{build_providers, AssemblyError, ProviderChoice, ProvidersFile, Stores};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn stores(dir: &Path) -> Stores {
    Stores {
        state: Arc::new(SqliteStore::open(&dir.join("state.db"), false).unwrap()),
        objects: Arc::new(LocalObjects::new(&dir.join("objects"), false)),
        clock: system_clock(),
    }
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("providers.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const AWS: &str = r#"
[gosling_binary]
url = "https://downloads.example.com/gosling-linux-amd64"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[aws]
region = "eu-west-1"
subnets = ["subnet-1"]
security_groups = ["sg-1"]
ami = "ami-1"
"#;

fn keys(p: &gosling_fleet::Providers) -> Vec<&str> {
    p.by_key.keys().map(String::as_str).collect()
}

#[tokio::test]
async fn the_local_choice_is_one_local_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let choice = ProviderChoice::Local {
        dir: tmp.path().join("runners"),
        program: "gosling".into(),
        args: vec!["runner".into()],
    };
    let p = build_providers(&choice, &stores(tmp.path())).await.unwrap();
    assert_eq!(p.all.expect("one provider for every egg").name(), "local");
    assert!(p.by_key.is_empty());
}

#[tokio::test]
async fn a_file_with_aws_only_serves_aws_and_adds_tofu_keys_with_a_tofu_table() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = ProvidersFile::load(&write(tmp.path(), AWS), |_| None).unwrap();
    let p = plain.build(&stores(tmp.path())).await.unwrap();
    assert_eq!(
        keys(&p),
        ["aws/vm"],
        "no ECS without a cluster and an image"
    );
    assert!(plain.tofu.is_none());

    let fake = tmp.path().join("bin/tofu");
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    let text = format!(
        "{AWS}\n[tofu]\nbinary = \"bin/tofu\"\nworkspaces = \"ws\"\n\
         [tofu.backend]\nbucket = \"states\"\nregion = \"eu-west-1\"\n"
    );
    let with_tofu = ProvidersFile::load(&write(tmp.path(), &text), |_| None).unwrap();
    let t = with_tofu.tofu.as_ref().expect("the [tofu] table is read");
    assert_eq!(
        t.runner.workspaces,
        tmp.path().join("ws"),
        "relative to the file"
    );
    assert!(
        t.settings.aws.is_some(),
        "rendered with the same [aws] settings"
    );
    let p = with_tofu.build(&stores(tmp.path())).await.unwrap();
    // serverless/tofu is registered to refuse such eggs with the reason, not "not configured".
    assert_eq!(keys(&p), ["aws/serverless/tofu", "aws/vm", "aws/vm/tofu"]);
}

#[tokio::test]
async fn the_environment_can_configure_a_cloud_the_file_does_not_name() {
    let tmp = tempfile::tempdir().unwrap();
    let file = ProvidersFile::load(&write(tmp.path(), ""), |k| match k {
        "GOSLING_BINARY_URL" => Some("https://example.com/gosling".into()),
        "GOSLING_BINARY_SHA256" => Some("0".repeat(64)),
        "GOSLING_AWS_REGION" => Some("us-east-1".into()),
        "GOSLING_AWS_SUBNETS" => Some("subnet-9".into()),
        "GOSLING_AWS_SECURITY_GROUPS" => Some("sg-9".into()),
        "GOSLING_AWS_AMI" => Some("ami-9".into()),
        _ => None,
    })
    .unwrap();
    let p = file.build(&stores(tmp.path())).await.unwrap();
    assert_eq!(keys(&p), ["aws/vm"]);
}

#[tokio::test]
async fn errors_name_the_file_and_the_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let none = write(tmp.path(), "");
    let err = ProvidersFile::load(&none, |_| None)
        .unwrap()
        .build(&stores(tmp.path()))
        .await
        .unwrap_err();
    assert!(matches!(err, AssemblyError::NoCloud(_)), "{err}");
    assert!(err.to_string().contains("providers.toml"), "{err}");

    let missing = tmp.path().join("absent.toml");
    let err = ProvidersFile::load(&missing, |_| None).unwrap_err();
    assert!(err.to_string().contains("absent.toml"), "{err}");

    for (table, key) in [
        (
            "[tofu]\nbinary = \"nope/tofu\"\nworkspaces = \"ws\"\n[tofu.backend]\nbucket = \"b\"\nregion = \"r\"\n",
            "tofu.binary",
        ),
        (
            "[tofu]\nbinary = \"tofu\"\nversions_dir = \"v\"\nworkspaces = \"ws\"\n[tofu.backend]\nbucket = \"b\"\nregion = \"r\"\n",
            "tofu.binary",
        ),
        (
            "[tofu]\nworkspaces = \"ws\"\n[tofu.backend]\nbucket = \" \"\nregion = \"r\"\n",
            "tofu.backend.bucket",
        ),
        (
            "[tofu]\nworkspaces = \"ws\"\npassphrase_env = \"PASS\"\n[tofu.backend]\nbucket = \"b\"\nregion = \"r\"\n",
            "tofu.passphrase_env",
        ),
    ] {
        let p = write(tmp.path(), &format!("{AWS}\n{table}"));
        let err = ProvidersFile::load(&p, |_| None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(key) && msg.contains("providers.toml"), "{msg}");
    }

    let p = write(
        tmp.path(),
        &format!("{AWS}\n[tofu]\nworkspace = \"typo\"\n"),
    );
    let err = ProvidersFile::load(&p, |_| None).unwrap_err();
    assert!(err.to_string().contains("providers.toml"), "{err}");
}

#[tokio::test]
async fn a_short_passphrase_is_refused_and_never_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "{AWS}\n[tofu]\nworkspaces = \"ws\"\npassphrase_env = \"PASS\"\n\
         [tofu.backend]\nbucket = \"b\"\nregion = \"r\"\n"
    );
    let p = write(tmp.path(), &text);
    let err = ProvidersFile::load(&p, |k| (k == "PASS").then(|| "short-secret".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("16 characters") && !err.contains("short-secret"),
        "{err}"
    );
    let ok = ProvidersFile::load(&p, |k| {
        (k == "PASS").then(|| "a long enough passphrase".into())
    })
    .unwrap();
    assert!(ok.tofu.unwrap().runner.encryption_passphrase.is_some());
}
