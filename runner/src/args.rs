//! `gosling runner`'s options and how they resolve into [`Settings`].

use crate::client::{check_url, MotherGoose};
use crate::error::RunnerError;
use crate::version::DEFAULT_DOWNLOAD_URL;
use clap::Args;
use gosling_api::RunnerConfig;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Parses `30s`, `5m`, `1h 30m` or plain seconds (`300`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string());
    }
    humantime::parse_duration(t).map_err(|e| format!("`{text}`: {e} (write e.g. 30s, 5m, 1h)"))
}

/// Runner mode: run and supervise the GitLab Runner agent of one runner, report its
/// health to MotherGoose, obey its instructions; or run one self-management job.
#[derive(Args, Clone, Debug)]
pub struct RunnerArgs {
    /// This runner's id (MotherGoose's).
    #[arg(long, env = "RUNNER_ID")]
    pub runner_id: Option<String>,
    /// Its egg; checked against the configuration MotherGoose gives.
    #[arg(long, env = "EGG_NAME")]
    pub egg_name: Option<String>,
    /// MotherGoose's URL: https:// (TLS 1.3), or http:// to a loopback address only.
    #[arg(long, env = "GOSLING_MOTHERGOOSE_URL")]
    pub mothergoose_url: Option<String>,
    /// The runner's credential (prefer the environment variable: arguments are visible to
    /// other users of the machine).
    #[arg(long, env = "GOSLING_RUNNER_CREDENTIAL", hide_env_values = true)]
    pub credential: Option<String>,
    /// The CA that signed MotherGoose's certificate: PEM text or a PEM file.
    #[arg(long, env = "GOSLING_MOTHERGOOSE_CA", hide_env_values = true)]
    pub mothergoose_ca: Option<String>,
    /// Read the runner configuration (MotherGoose's `GET /runners/{id}/config` JSON) from
    /// FILE instead of asking MotherGoose (tests, air-gapped hosts); SIGHUP reads it again.
    /// Heartbeats still go to MotherGoose when its URL is given.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Between heartbeats [default: the configuration's heartbeat_interval_s, else 30s].
    #[arg(long, value_parser = parse_duration)]
    pub metrics_interval: Option<Duration>,
    /// Between checks of GitLab's version against the agent's.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub update_check_interval: Duration,
    /// On SIGTERM, how long the agent may take to finish its jobs before they are aborted.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub stop_timeout: Duration,
    /// Without an answer from MotherGoose for this long, stop gracefully (as on SIGTERM).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub max_silence: Duration,
    /// Single-job runners: the agent gets SIGQUIT this long before the deadline, SIGKILL at it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub deadline_grace: Duration,
    /// The gitlab-runner binary (installed or updated there; the old one kept as .previous).
    #[arg(
        long,
        env = "GOSLING_AGENT_PATH",
        default_value = "/usr/local/bin/gitlab-runner"
    )]
    pub agent_path: PathBuf,
    /// Where gitlab-runner releases are downloaded from (…/v{version}/binaries/…).
    #[arg(long, env = "GOSLING_AGENT_DOWNLOAD_URL", default_value = DEFAULT_DOWNLOAD_URL)]
    pub agent_download_url: String,
    /// The runner's folder: config.toml (0600), the job script.
    #[arg(
        long,
        env = "GOSLING_RUNNER_DIR",
        default_value = "/var/lib/gosling-runner"
    )]
    pub work_dir: PathBuf,
    /// Run this self-management job (MotherGoose's assignment) instead of the agent.
    #[arg(long, env = "GOSLING_JOB", value_name = "NAME")]
    pub job: Option<String>,
    /// How often the agent's state is read.
    #[arg(long, default_value = "1s", value_parser = parse_duration, hide = true)]
    pub poll_interval: Duration,
}

impl RunnerArgs {
    /// `gosling`'s global `--config` (its own config file, also set by `GOSLING_CONFIG`)
    /// shares this option's name: keep the value only when `--config` is on the command
    /// line, so an inherited `GOSLING_CONFIG` is never read as a runner configuration.
    pub fn forget_inherited_config(&mut self, command_line: impl IntoIterator<Item = OsString>) {
        let given = command_line.into_iter().any(|a| {
            let a = a.to_string_lossy();
            a == "--config" || a.starts_with("--config=")
        });
        if !given {
            self.config = None;
        }
    }
}

/// Where the runner configuration comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// `--config FILE`.
    File(PathBuf),
    /// `GET /runners/{id}/config`.
    MotherGoose,
}

/// Resolved options.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The runner id, when known before the configuration is read.
    pub runner_id: Option<String>,
    /// The egg name expected.
    pub egg_name: Option<String>,
    /// Where the configuration comes from.
    pub source: Source,
    /// MotherGoose, when its URL is known.
    pub mothergoose: Option<MotherGoose>,
    /// The options as given.
    pub args: RunnerArgs,
}

fn ca_text(value: &str) -> Result<String, RunnerError> {
    if value.contains("-----BEGIN") {
        return Ok(value.to_string());
    }
    std::fs::read_to_string(value).map_err(|e| {
        RunnerError::Usage(format!(
            "GOSLING_MOTHERGOOSE_CA is neither PEM text nor a readable file ({value}): {e}"
        ))
    })
}

impl Settings {
    /// Checks the options.
    pub fn resolve(args: RunnerArgs) -> Result<Settings, RunnerError> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let runner_id = nonempty(&args.runner_id);
        let url = nonempty(&args.mothergoose_url);
        let credential = nonempty(&args.credential);
        let source = match &args.config {
            Some(p) => Source::File(p.clone()),
            None => Source::MotherGoose,
        };
        let mothergoose = match (&url, &credential) {
            (Some(url), Some(cred)) => {
                let id = runner_id.clone().ok_or_else(|| {
                    RunnerError::Usage(
                        "the runner id is needed to talk to MotherGoose: --runner-id or RUNNER_ID"
                            .into(),
                    )
                })?;
                let ca = args.mothergoose_ca.as_deref().map(ca_text).transpose()?;
                Some(MotherGoose::new(url, &id, cred, ca.as_deref())?)
            }
            (Some(url), None) => {
                check_url(url)?;
                return Err(RunnerError::Usage(
                    "MotherGoose's URL is given but not the runner's credential: set \
                     GOSLING_RUNNER_CREDENTIAL"
                        .into(),
                ));
            }
            (None, _) => None,
        };
        if matches!(source, Source::MotherGoose) && mothergoose.is_none() {
            return Err(RunnerError::Usage(
                "no configuration source: give MotherGoose's URL and the runner's credential \
                 (GOSLING_MOTHERGOOSE_URL, GOSLING_RUNNER_CREDENTIAL, RUNNER_ID), or --config FILE"
                    .into(),
            ));
        }
        for (name, d) in [
            ("--update-check-interval", args.update_check_interval),
            ("--max-silence", args.max_silence),
            ("--poll-interval", args.poll_interval),
        ] {
            if d.is_zero() {
                return Err(RunnerError::Usage(format!(
                    "{name} must be longer than zero"
                )));
            }
        }
        if args.metrics_interval.is_some_and(|d| d.is_zero()) {
            return Err(RunnerError::Usage(
                "--metrics-interval must be longer than zero".into(),
            ));
        }
        Ok(Settings {
            runner_id,
            egg_name: nonempty(&args.egg_name),
            source,
            mothergoose,
            args,
        })
    }

    /// Reads the runner configuration from its source and checks it is this runner's.
    pub async fn load_config(&self) -> Result<RunnerConfig, RunnerError> {
        let config = match (&self.source, &self.mothergoose) {
            (Source::File(path), _) => read_config_file(path)?,
            (Source::MotherGoose, Some(mg)) => mg.config().await?,
            (Source::MotherGoose, None) => {
                return Err(RunnerError::Usage("MotherGoose is not configured".into()))
            }
        };
        if let Some(id) = &self.runner_id {
            if &config.runner_id != id {
                return Err(RunnerError::Mismatch(format!(
                    "the configuration is runner `{}`'s, not `{id}`'s",
                    config.runner_id
                )));
            }
        }
        if let Some(egg) = &self.egg_name {
            if &config.egg.name != egg {
                return Err(RunnerError::Mismatch(format!(
                    "the configuration is for egg `{}`, not `{egg}`",
                    config.egg.name
                )));
            }
        }
        Ok(config)
    }

    /// The heartbeat interval: the flag, else the configuration's, else 30 s.
    pub fn heartbeat_interval(&self, config: &RunnerConfig) -> Duration {
        self.args
            .metrics_interval
            .unwrap_or(if config.heartbeat_interval_s > 0 {
                Duration::from_secs(config.heartbeat_interval_s)
            } else {
                Duration::from_secs(30)
            })
    }
}

/// Reads a `RunnerConfig` JSON file.
pub fn read_config_file(path: &Path) -> Result<RunnerConfig, RunnerError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunnerError::ConfigFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| RunnerError::ConfigFile {
        path: path.to_path_buf(),
        message: format!("not a runner configuration (MotherGoose's RunnerConfig JSON): {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunnerArgs,
    }

    fn parse(args: &[&str]) -> Result<RunnerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let a = parse(&["--config", "c.json", "--runner-id", "r1"]).unwrap();
        assert_eq!(a.update_check_interval, Duration::from_secs(300));
        assert_eq!(a.stop_timeout, Duration::from_secs(300));
        assert_eq!(a.max_silence, Duration::from_secs(1800));
        assert_eq!(a.metrics_interval, None);
        assert_eq!(a.agent_download_url, DEFAULT_DOWNLOAD_URL);
        assert!(parse(&["--config", "c.json", "--stop-timeout", "later"]).is_err());
    }

    #[test]
    fn settings_need_a_source_and_refuse_remote_plain_http() {
        let mut a = parse(&["--runner-id", "r1"]).unwrap();
        a.mothergoose_url = None;
        a.credential = None;
        a.config = None;
        let e = Settings::resolve(a.clone()).unwrap_err();
        assert!(e.to_string().contains("no configuration source"), "{e}");
        a.mothergoose_url = Some("http://10.1.2.3:8080".into());
        a.credential = Some("gsr_r1.secret".into());
        let e = Settings::resolve(a.clone()).unwrap_err().to_string();
        assert!(e.contains("plain HTTP") && !e.contains("secret"), "{e}");
        a.mothergoose_url = Some("http://127.0.0.1:8080".into());
        assert!(Settings::resolve(a).is_ok());
    }

    #[test]
    fn an_inherited_config_is_forgotten() {
        let mut a = parse(&["--config", "x.json"]).unwrap();
        a.forget_inherited_config(["gosling", "runner", "--runner-id", "r"].map(OsString::from));
        assert_eq!(a.config, None);
        let mut a = parse(&["--config", "x.json"]).unwrap();
        a.forget_inherited_config(["gosling", "runner", "--config=x.json"].map(OsString::from));
        assert_eq!(a.config, Some(PathBuf::from("x.json")));
    }
}
