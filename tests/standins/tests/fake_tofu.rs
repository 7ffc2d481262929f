//! The fake tofu behaves like the real one where the OpenTofu path relies on it.

use gosling_standins::fake_tofu::FakeTofu;
use std::path::Path;
use std::process::Command;

const CONFIG: &str = r#"terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.0" }
  }

  backend "s3" {
    bucket = "b"
    key    = "tofu-states/e/r/terraform.tfstate"
    region = "eu-west-1"
  }
}

resource "aws_instance" "runner" {
  ami = "ami-1"
}

output "instance_id" {
  value = aws_instance.runner.id
}
"#;

fn tofu(fake: &FakeTofu, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-tofu"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("FAKE_TOFU_HOME", fake.home())
        .env("AWS_ACCESS_KEY_ID", "AKIDFAKE")
        .env("AWS_SECRET_ACCESS_KEY", "fake-secret")
        .env("TF_CLI_CONFIG_FILE", dir.join(".tofurc"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup() -> (TempDir, FakeTofu, std::path::PathBuf) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let tmp = TempDir(std::env::temp_dir().join(format!(
        "fake-tofu-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )));
    let fake = FakeTofu::new(&tmp.path().join("fake"));
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("main.tf"), CONFIG).unwrap();
    std::fs::write(
        ws.join(".tofurc"),
        format!(
            "plugin_cache_dir = \"{}\"\n",
            tmp.path().join("cache").display()
        ),
    )
    .unwrap();
    (tmp, fake, ws)
}

#[test]
fn plan_apply_show_destroy_like_tofu() {
    let (_tmp, fake, ws) = setup();
    let (code, _, err) = tofu(&fake, &ws, &["plan", "-out=p"]);
    assert_eq!(code, 1);
    assert!(err.contains("please run \"tofu init\""));
    assert_eq!(tofu(&fake, &ws, &["init", "-input=false"]).0, 0);
    assert!(ws.join(".terraform.lock.hcl").is_file());
    let (code, out, _) = tofu(&fake, &ws, &["plan", "-detailed-exitcode", "-out=p.tfplan"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("1 to add"));
    // A missing plan file is refused.
    let (code, _, err) = tofu(&fake, &ws, &["apply", "missing.tfplan"]);
    assert_eq!(code, 1);
    assert!(err.contains("Failed to load \"missing.tfplan\" as a plan file"));
    assert_eq!(
        tofu(&fake, &ws, &["apply", "-input=false", "p.tfplan"]).0,
        0
    );
    let (_, show, _) = tofu(&fake, &ws, &["show", "-json"]);
    let state: serde_json::Value = serde_json::from_str(&show).unwrap();
    let id = state["values"]["root_module"]["resources"][0]["values"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("i-"));
    assert_eq!(fake.cloud().get(&id).map(String::as_str), Some("running"));
    let (_, outputs, _) = tofu(&fake, &ws, &["output", "-json"]);
    let outputs: serde_json::Value = serde_json::from_str(&outputs).unwrap();
    assert_eq!(outputs["instance_id"]["value"], id.as_str());
    // Applying the same plan again: the state changed since, so it is stale.
    let (code, _, err) = tofu(&fake, &ws, &["apply", "p.tfplan"]);
    assert_eq!(code, 1);
    assert!(err.contains("Saved plan is stale"));
    // Nothing left to do.
    assert_eq!(
        tofu(&fake, &ws, &["plan", "-detailed-exitcode", "-out=q"]).0,
        0
    );
    // Refresh reads the cloud back.
    fake.set_cloud(&id, Some("stopped"));
    tofu(&fake, &ws, &["apply", "-refresh-only", "-auto-approve"]);
    let (_, show, _) = tofu(&fake, &ws, &["show", "-json"]);
    assert!(show.contains("\"instance_state\":\"stopped\""));
    assert_eq!(tofu(&fake, &ws, &["destroy", "-auto-approve"]).0, 0);
    assert!(fake.cloud().is_empty());
    assert_eq!(
        tofu(&fake, &ws, &["show", "-json"]).1.trim(),
        "{\"format_version\":\"1.0\"}"
    );
    // The log has every call, with arguments, environment and files.
    let log = fake.log();
    assert_eq!(log[0].command(), "plan");
    let init = log.iter().find(|i| i.command() == "init").unwrap();
    assert!(init.files.contains(&"main.tf".to_string()));
    assert_eq!(
        init.env.get("AWS_SECRET_ACCESS_KEY").map(String::as_str),
        Some("fake-secret")
    );
    assert!(init
        .events
        .iter()
        .any(|e| e.starts_with("downloaded registry.opentofu.org/hashicorp/aws")));
}

#[test]
fn failures_can_be_injected_and_credentials_are_required() {
    let (_tmp, fake, ws) = setup();
    fake.fail("init", "Error: boom", Some(1), None);
    let (code, _, err) = tofu(&fake, &ws, &["init"]);
    assert_eq!(code, 1);
    assert!(err.contains("boom"));
    assert_eq!(tofu(&fake, &ws, &["init"]).0, 0, "only once");
    fake.fail("plan", "never for this config", None, Some("no such text"));
    assert_eq!(tofu(&fake, &ws, &["plan", "-out=p"]).0, 0);
    let out = Command::new(env!("CARGO_BIN_EXE_fake-tofu"))
        .arg("init")
        .current_dir(&ws)
        .env_clear()
        .env("FAKE_TOFU_HOME", fake.home())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No valid credential sources"));
}

#[test]
fn a_lock_file_that_does_not_match_is_refused_readonly() {
    let (_tmp, fake, ws) = setup();
    assert_eq!(tofu(&fake, &ws, &["init"]).0, 0);
    std::fs::write(ws.join("main.tf"), CONFIG.replace("~> 5.0", "~> 6.0")).unwrap();
    let (code, _, err) = tofu(&fake, &ws, &["init", "-lockfile=readonly"]);
    assert_eq!(code, 1);
    assert!(err.contains("lock file does not match"));
}
