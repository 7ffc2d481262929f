//! The systemd unit and the serverless image start runner mode the way it expects.

use clap::Parser;
use gosling_runner::RunnerArgs;
use std::collections::BTreeMap;

#[derive(Parser)]
struct Runner {
    #[command(flatten)]
    args: RunnerArgs,
}

fn packaging(file: &str) -> String {
    std::fs::read_to_string(format!("{}/packaging/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn unit() -> BTreeMap<String, String> {
    packaging("gosling-runner@.service")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_systemd_unit_runs_runner_mode_and_gives_it_time_to_stop() {
    let u = unit();
    let exec: Vec<&str> = u["ExecStart"].split_whitespace().collect();
    assert_eq!(&exec[..2], ["/usr/local/bin/gosling", "runner"]);
    // The arguments parse as runner mode's, with the instance and the bootstrap filled in.
    let filled: Vec<String> = exec[2..]
        .iter()
        .map(|a| {
            a.replace("%i", "runner-abc123")
                .replace("${EGG_NAME}", "my-app")
        })
        .collect();
    let args = Runner::try_parse_from(std::iter::once("runner".to_string()).chain(filled))
        .unwrap()
        .args;
    assert_eq!(args.runner_id.as_deref(), Some("runner-abc123"));
    assert_eq!(args.egg_name.as_deref(), Some("my-app"));
    assert!(u["EnvironmentFile"].starts_with("/etc/gosling/runner-%i.env"));
    // SIGTERM to runner mode alone (the agent is left to it), which then takes up to
    // --stop-timeout, plus 10 s to abort and 10 s for the last heartbeat.
    assert_eq!(u["KillSignal"], "SIGTERM");
    assert_eq!(u["KillMode"], "mixed");
    let stop: u64 = u["TimeoutStopSec"].parse().unwrap();
    assert!(
        stop >= args.stop_timeout.as_secs() + 20,
        "TimeoutStopSec={stop} leaves no time after --stop-timeout {:?}",
        args.stop_timeout
    );
    assert_eq!(u["Restart"], "on-failure", "exit 0 (drained) is final");
}

#[test]
fn the_serverless_image_enters_runner_mode() {
    let file = packaging("Dockerfile");
    let directive = |name: &str| {
        file.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_string()
    };
    let entry: Vec<String> = serde_json::from_str(&directive("ENTRYPOINT")).unwrap();
    assert_eq!(entry.len(), 2, "{entry:?}");
    assert!(
        entry[0] == "gosling" || entry[0].ends_with("/gosling"),
        "{entry:?}"
    );
    assert_eq!(entry[1], "runner");
    assert_eq!(directive("STOPSIGNAL"), "SIGTERM");
    assert!(
        !file.contains("CMD "),
        "the bootstrap comes from the environment"
    );
    // The agent runner mode supervises is the one the image installs.
    assert!(file.contains("COPY gitlab-runner /usr/local/bin/gitlab-runner"));
    assert!(file.contains("GOSLING_AGENT_PATH=/usr/local/bin/gitlab-runner"));
}
