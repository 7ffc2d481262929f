//! End-to-end runs of the `fly` binary: exit codes, outputs and file effects.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn fly(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fly"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("fly runs")
}

fn fly_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fly"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fly runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GOOD: &str = "egg \"a\" {\n  type = \"vm\"\n\n  cloud {\n    provider = \"aws\"\n    region   = \"eu-west-1\"\n  }\n\n  gitlab {\n    project_id   = 7\n    token_secret = \"vault://gitlab/token\"\n  }\n}\n";
const UGLY: &str = "egg \"a\" {\ntype=\"vm\"\n\n  cloud {\n  provider = \"aws\"\n    region= \"eu-west-1\"\n  }\n\n\n  gitlab {\n    project_id   = 7\n    token_secret = \"vault://gitlab/token\"\n  }\n}\n";
const BAD: &str = "egg \"a\" {\n  cpu 2\n  memory =\n}\n";

fn nest(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

#[test]
fn check_exit_codes() {
    let dir = nest(&[("Eggs/a.fly", GOOD), ("ignored.txt", "not fly")]);
    let out = fly(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("checked 1 file: 0 errors"));

    std::fs::write(dir.path().join("Eggs/b.fly"), BAD).unwrap();
    let out = fly(&["check", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error[F0001]: expected `=` after attribute name `cpu`"),
        "{err}"
    );
    assert!(err.contains("Eggs/b.fly:2:7"), "{err}");
    assert!(err.contains("help:"), "{err}");

    let out = fly(&["check", "missing-dir"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let out = fly(&["check", "--no-such-flag"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_json_format() {
    let dir = nest(&[("b.fly", BAD)]);
    let out = fly(&["check", "--format", "json", "b.fly"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let diags: Vec<&serde_json::Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "F0001")
        .collect();
    assert_eq!(diags.len(), 2, "{json:#}");
    let first = diags[0];
    assert_eq!(first["file"], "b.fly");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["range"]["start"]["line"], 2);
    assert_eq!(first["range"]["start"]["column"], 7);
    assert_eq!(first["range"]["end"]["column"], 8);
    assert_eq!(diags[1]["range"]["start"]["line"], 3);
    // The checker runs too: the egg lacks its required blocks.
    let codes: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert!(codes.contains(&"F1015"), "{codes:?}");
}

#[test]
fn build_writes_the_ir() {
    let dir = nest(&[("Eggs/a.fly", GOOD)]);
    let out = fly(&["build", ".", "-o", "ir.json"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ir: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("ir.json")).unwrap())
            .unwrap();
    assert_eq!(ir["ir_version"], 1);
    assert_eq!(ir["eggs"][0]["name"], "a");
    assert_eq!(ir["source_map"]["egg.a"]["file"], "Eggs/a.fly");
    std::fs::write(dir.path().join("Eggs/b.fly"), BAD).unwrap();
    let out = fly(&["build", ".", "-o", "ir2.json"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !dir.path().join("ir2.json").exists(),
        "nothing is written on errors"
    );
}

#[test]
fn fmt_rewrites_in_place_and_check_lists() {
    let dir = nest(&[("Eggs/ugly.fly", UGLY), ("Eggs/good.fly", GOOD)]);
    let out = fly(&["fmt", "--check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "Eggs/ugly.fly\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Eggs/ugly.fly")).unwrap(),
        UGLY
    );

    let out = fly(&["fmt", "--diff", "Eggs"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out.stdout);
    assert!(
        diff.contains("--- a/Eggs/ugly.fly") && diff.contains("+  type = \"vm\""),
        "{diff}"
    );

    let out = fly(&["fmt"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Eggs/ugly.fly")).unwrap(),
        GOOD
    );
    let out = fly(&["fmt", "--check"], dir.path());
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn fmt_never_rewrites_a_file_with_errors() {
    let dir = nest(&[("bad.fly", BAD)]);
    let out = fly(&["fmt", "bad.fly"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("F0001"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("bad.fly")).unwrap(),
        BAD
    );
}

#[test]
fn fmt_stdin_to_stdout() {
    let out = fly_stdin(&["fmt", "-"], UGLY);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), GOOD);
    let out = fly_stdin(&["fmt", "-"], BAD);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn example_nest_is_clean_and_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = fly(&["check", "examples/nest"], root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = fly(&["fmt", "--check", "examples/nest"], root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
