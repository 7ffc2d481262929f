//! The systemd unit and the container image start `rift` with flags and variables it has,
//! and the image is built from this repository.

use std::collections::BTreeMap;
use std::process::Command;

use clap::Parser;

fn packaging(file: &str) -> String {
    std::fs::read_to_string(format!("{}/packaging/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `rift --help`, as an operator reads it.
fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rift"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn unit() -> BTreeMap<String, String> {
    packaging("rift.service")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_systemd_unit_runs_rift_with_flags_it_has() {
    let u = unit();
    let exec: Vec<&str> = u["ExecStart"].split_whitespace().collect();
    assert_eq!(exec[0], "/usr/local/bin/rift");
    let help = help();
    for flag in exec.iter().filter(|a| a.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        assert!(help.contains(name), "`{name}` is not in `rift --help`");
    }
    let cli = rift::config::Cli::try_parse_from(exec.iter().copied()).unwrap();
    assert_eq!(cli.config.as_deref(), Some("/etc/rift/rift.toml".as_ref()));
    // The data directory is the service's state directory.
    let data = cli.data_dir.unwrap();
    assert_eq!(
        data,
        std::path::Path::new("/var/lib").join(&u["StateDirectory"])
    );
    // Secrets come from a root-only environment file (optional: a Rift may run with an
    // auth file only), never from the command line.
    assert_eq!(u["EnvironmentFile"], "-/etc/rift/rift.env");
    assert!(packaging("rift.service").contains(rift::config::TOKEN_ENV));
    assert!(!u["ExecStart"].contains("token"));
    // SIGHUP reloads; SIGTERM stops after transfers in flight, which may take the default
    // shutdown grace, before systemd's SIGKILL.
    assert_eq!(u["ExecReload"], "/bin/kill -HUP $MAINPID");
    assert_eq!(u["KillSignal"], "SIGTERM");
    let stop: u64 = u["TimeoutStopSec"].parse().unwrap();
    let grace = rift::Config::new("/d", "/a").shutdown_grace.as_secs();
    assert!(
        stop > grace,
        "TimeoutStopSec={stop} cuts the {grace} s shutdown grace"
    );
    assert_eq!(u["Restart"], "on-failure");
}

#[test]
fn the_image_is_built_from_the_workspace_and_runs_rift() {
    let file = packaging("Dockerfile");
    let lines: Vec<&str> = file.lines().filter(|l| !l.starts_with('#')).collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cargo build --release --locked -p rift --bin rift")),
        "rift is compiled from the copied workspace"
    );
    assert!(file.contains("COPY --from=build /src/target/release/rift /usr/local/bin/rift"));
    for fetch in ["curl", "wget", "ADD http"] {
        assert!(
            !lines.iter().any(|l| l.contains(fetch)),
            "nothing is downloaded ({fetch})"
        );
    }
    let directive = |name: &str| {
        lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    let entry: Vec<String> = serde_json::from_str(&directive("ENTRYPOINT")).unwrap();
    assert_eq!(entry, ["/usr/local/bin/rift"]);
    assert_eq!(directive("STOPSIGNAL"), "SIGTERM");
    assert_ne!(directive("USER"), "root");
    // The variables it sets are rift's, and it listens where it says it exposes.
    let help = help();
    let env: Vec<&str> = file
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter(|w| w.starts_with("RIFT_") && w.contains('='))
        .collect();
    assert!(!env.is_empty());
    for kv in &env {
        let (name, _) = kv.split_once('=').unwrap();
        assert!(
            help.contains(&format!("env: {name}")),
            "{name} is not in `rift --help`"
        );
    }
    assert!(env.contains(&"RIFT_LISTEN=0.0.0.0:9000"));
    assert!(directive("EXPOSE").split_whitespace().any(|p| p == "9000"));
    // The context is the repository: its build output stays out of it.
    let ignore = packaging("Dockerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}
