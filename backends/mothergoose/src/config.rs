//! MotherGoose's settings: where the state, objects and queue are, how it listens, how
//! runners are made. With an embedded store (`sqlite://DIR/state.db`, what `gosling
//! deploy` uses) everything else defaults to the same folder, so `mothergoose serve
//! --state sqlite://NEST/.gosling/state.db` needs nothing more.

use gosling_state::SecretString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How runners are made: local processes or a providers file (shared with UglyFox).
pub use gosling_tofu::ProviderChoice;

/// Everything MotherGoose is told.
#[derive(Clone, Debug)]
pub struct Settings {
    /// State store URL.
    pub state: String,
    /// Object store URL (deployment IRs).
    pub objects: String,
    /// Queue URL.
    pub queue: String,
    /// Where to listen.
    pub listen: SocketAddr,
    /// MotherGoose's URL as runners reach it.
    pub public_url: String,
    /// PEM certificate chain and key: HTTPS, TLS 1.3 only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `GOSLING_STATE_KEY`, if set.
    pub state_key: Option<SecretString>,
    /// The state key file.
    pub state_key_file: PathBuf,
    /// How runners are made.
    pub provider: ProviderChoice,
    /// Tasks processed at once by the embedded workers (0: none — `serve` without workers).
    pub workers: usize,
    /// Largest webhook body accepted.
    pub max_body: usize,
    /// Standard Webhooks signing secret (`whsec_…`), when deliveries are signed.
    pub signing_secret: Option<SecretString>,
    /// How often GitLab is asked for pending jobs (zero: never).
    pub reconcile_interval: Duration,
    /// How often runners send heartbeats.
    pub heartbeat_interval: Duration,
    /// Deliveries of a task before it is dead-lettered.
    pub max_attempts: u32,
    /// How often the deployment pointer is checked for a new deployment.
    pub deployment_poll: Duration,
    /// How long a runner may stay `provisioning` before its machine is checked.
    pub provisioning_timeout: Duration,
    /// How long in-flight work may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How long a leased task is hidden from other workers; the worker renews it every
    /// third of this while the task runs, so it is delivered again this long after its
    /// worker died.
    pub lease: Duration,
}

/// The folder of an embedded (`sqlite://`) store's database, if the state is embedded.
pub fn embedded_dir(state: &str) -> Option<PathBuf> {
    let path = match state.split_once("://") {
        Some(("sqlite", p)) => p,
        Some(_) => return None,
        None => state,
    };
    let path = Path::new(path);
    Some(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    )
}

/// A default derived from an embedded store, or an error naming the flag to set.
pub fn beside_state(state: &str, name: &str, flag: &str) -> Result<String, String> {
    embedded_dir(state)
        .map(|d| d.join(name).display().to_string())
        .ok_or_else(|| {
            format!("{flag} is needed when the state is not embedded (sqlite://): `{state}`")
        })
}

/// Parses `30s`, `5m`, `1h30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}` is not a duration: {e}"))
}

/// `1MiB`, `512KiB`, `1048576`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("KiB") {
        (n, 1 << 10)
    } else {
        (s, 1)
    };
    num.trim()
        .parse::<usize>()
        .map(|n| n * mult)
        .map_err(|_| format!("`{s}` is not a size (e.g. 1MiB, 512KiB, 1048576)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_live_beside_an_embedded_store() {
        assert_eq!(
            beside_state("sqlite:///n/.gosling/state.db", "queue.db", "--queue").unwrap(),
            "/n/.gosling/queue.db"
        );
        assert_eq!(
            beside_state("state.db", "objects", "--objects").unwrap(),
            "./objects"
        );
        let e = beside_state("dynamodb://g?region=x", "queue.db", "--queue").unwrap_err();
        assert!(e.contains("--queue"), "{e}");
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    }
}
