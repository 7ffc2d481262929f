//! Configuration: command-line flags, environment variables (`RIFT_*`) and a TOML config
//! file, in that order of precedence, over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::fleet::{FleetConfig, Secret};
use crate::tls::TlsFiles;
use crate::units::{parse_duration, parse_size, UnitError};

/// Shown at the end of `rift --help`.
pub const EXAMPLE: &str = r#"EXAMPLE:
  # /etc/rift/rift.toml (every key is optional; flags and RIFT_* variables override it)
  listen = "0.0.0.0:9000"
  data_dir = "/var/lib/rift"
  auth_file = "/etc/rift/auth.toml"
  max_cache_size = "200GiB"
  max_object_size = "5GiB"
  max_age = "14d"
  tls_cert = "/etc/rift/tls/cert.pem"   # HTTPS, TLS 1.3 only (omit both for plain HTTP);
                                        # reloaded on SIGHUP or when the files change
  tls_key = "/etc/rift/tls/key.pem"
  docker_listen = "0.0.0.0:2375"
  docker_upstream = "unix:///var/run/docker.sock"
  origin_endpoint = "https://storage.yandexcloud.net"
  origin_region = "ru-central1"
  origin_bucket = "runner-cache"
  # Trust the runners MotherGoose creates (their access key is the runner id); the token
  # from `mothergoose token rift` goes in this 0600 file or in $RIFT_MOTHERGOOSE_TOKEN.
  mothergoose_url = "https://mothergoose.internal:8443"
  mothergoose_token_file = "/etc/rift/mothergoose-token"
  mothergoose_ca = "/etc/rift/mothergoose-ca.pem"   # when its certificate is private

  # /etc/rift/auth.toml (reloaded on SIGHUP or when it changes)
  tokens = ["glrt-..."]
  [[s3_keys]]
  access_key = "RIFTKEY"
  secret_key = "..."

  $ rift --config /etc/rift/rift.toml
  $ RIFT_LISTEN=127.0.0.1:9000 rift --data-dir /tmp/rift --auth-file auth.toml
  $ RIFT_MOTHERGOOSE_TOKEN_FILE=/etc/rift/mothergoose-token \
      rift --data-dir /var/lib/rift --mothergoose-url https://mothergoose.internal:8443

  gitlab-runner config.toml:
  [runners.cache]
    Type = "s3"
    Shared = true
    [runners.cache.s3]
      ServerAddress = "rift.internal:9000"
      AccessKey = "RIFTKEY"
      SecretKey = "..."
      BucketName = "runner-cache"
      Insecure = false  # HTTPS; true when Rift runs without tls_cert

  Plain cache:  curl -H "Authorization: Bearer glrt-..." -T file https://rift:9000/cache/some/key
                (add --cacert ca.pem for a private CA; http:// when Rift runs without tls_cert)
  Docker proxy: DOCKER_HOST=tcp://rift:2375 with {"HttpHeaders":{"X-Rift-Token":"glrt-..."}}
                in $DOCKER_CONFIG/config.json; with tls_cert, run
                `docker --tlsverify --tlscacert=ca.pem ...` (no client certificate needed)
"#;

/// Rift: the runner cache server (S3-compatible cache, runner-token auth, Docker API proxy).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "rift", version, about, after_long_help = EXAMPLE, after_help = EXAMPLE)]
pub struct Cli {
    /// TOML config file (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "RIFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the S3 / cache / metrics listener [default: 127.0.0.1:9000].
    #[arg(long, env = "RIFT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for cached objects [default: ./rift-data].
    #[arg(long, env = "RIFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with bearer tokens and S3 key pairs (required unless --mothergoose-url is
    /// set; both may be used at once).
    #[arg(long, env = "RIFT_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Total cache size; least recently used objects are evicted beyond it [default: 10GiB].
    #[arg(long, env = "RIFT_MAX_CACHE_SIZE")]
    pub max_cache_size: Option<String>,
    /// Largest single object accepted [default: 5GiB].
    #[arg(long, env = "RIFT_MAX_OBJECT_SIZE")]
    pub max_object_size: Option<String>,
    /// Evict objects older than this (e.g. 14d); unset or 0 keeps them until evicted by size.
    #[arg(long, env = "RIFT_MAX_AGE")]
    pub max_age: Option<String>,
    /// fsync uploads before making them visible [default: true].
    #[arg(long, env = "RIFT_FSYNC")]
    pub fsync: Option<bool>,
    /// Memory for small objects (up to 128KiB) served without disk access; 0 turns it off
    /// [default: 64MiB].
    #[arg(long, env = "RIFT_MEMORY_CACHE_SIZE")]
    pub memory_cache_size: Option<String>,
    /// Accepted clock difference for SigV4 requests [default: 15m].
    #[arg(long, env = "RIFT_CLOCK_SKEW")]
    pub clock_skew: Option<String>,
    /// How often the auth file and the TLS certificate are checked for changes [default: 2s].
    #[arg(long, env = "RIFT_AUTH_RELOAD_INTERVAL")]
    pub auth_reload_interval: Option<String>,
    /// Auth failures per client IP within the window before a lockout; 0 disables [default: 20].
    #[arg(long, env = "RIFT_AUTH_FAILURE_LIMIT")]
    pub auth_failure_limit: Option<u32>,
    /// Window over which auth failures are counted [default: 60s].
    #[arg(long, env = "RIFT_AUTH_FAILURE_WINDOW")]
    pub auth_failure_window: Option<String>,
    /// How long a client is refused after too many failures [default: 60s].
    #[arg(long, env = "RIFT_AUTH_LOCKOUT")]
    pub auth_lockout: Option<String>,
    /// Largest request head (request line and headers) accepted [default: 64KiB].
    #[arg(long, env = "RIFT_MAX_HEADER_SIZE")]
    pub max_header_size: Option<String>,
    /// Time allowed to receive a request head [default: 30s].
    #[arg(long, env = "RIFT_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// On SIGTERM/SIGINT, how long in-flight transfers may take to finish [default: 30s].
    #[arg(long, env = "RIFT_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// PEM certificate chain: serve HTTPS (TLS 1.3 only) on every listener; needs --tls-key.
    #[arg(long, env = "RIFT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "RIFT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Address of the Docker API proxy listener; the proxy is off when unset.
    #[arg(long, env = "RIFT_DOCKER_LISTEN")]
    pub docker_listen: Option<SocketAddr>,
    /// Upstream Docker daemon: unix:///var/run/docker.sock or tcp://host:port.
    #[arg(long, env = "RIFT_DOCKER_UPSTREAM")]
    pub docker_upstream: Option<String>,
    /// Pull-through origin endpoint (e.g. https://storage.yandexcloud.net); AWS when only the
    /// region is set. The origin is off when neither is set.
    #[arg(long, env = "RIFT_ORIGIN_ENDPOINT")]
    pub origin_endpoint: Option<String>,
    /// Pull-through origin region [default: us-east-1].
    #[arg(long, env = "RIFT_ORIGIN_REGION")]
    pub origin_region: Option<String>,
    /// Origin bucket for every Rift bucket; when unset, the same bucket name is used.
    #[arg(long, env = "RIFT_ORIGIN_BUCKET")]
    pub origin_bucket: Option<String>,
    /// Origin access key [default: $AWS_ACCESS_KEY_ID].
    #[arg(long, env = "RIFT_ORIGIN_ACCESS_KEY")]
    pub origin_access_key: Option<String>,
    /// Origin secret key [default: $AWS_SECRET_ACCESS_KEY].
    #[arg(long, env = "RIFT_ORIGIN_SECRET_KEY", hide_env_values = true)]
    pub origin_secret_key: Option<String>,
    /// Time allowed to connect to the origin and receive its response head [default: 10s].
    #[arg(long, env = "RIFT_ORIGIN_TIMEOUT")]
    pub origin_timeout: Option<String>,
    /// MotherGoose's URL: accept the S3 keys and tokens of the runners it created while they
    /// live (asked with POST /rift/verify). Its token comes from $RIFT_MOTHERGOOSE_TOKEN or
    /// --mothergoose-token-file, never from the command line.
    #[arg(long, env = "RIFT_MOTHERGOOSE_URL")]
    pub mothergoose_url: Option<String>,
    /// File holding Rift's MotherGoose token (`mothergoose token rift`); keep it mode 0600.
    #[arg(long, env = "RIFT_MOTHERGOOSE_TOKEN_FILE")]
    pub mothergoose_token_file: Option<PathBuf>,
    /// PEM CA of MotherGoose's certificate, when it is not publicly trusted.
    #[arg(long, env = "RIFT_MOTHERGOOSE_CA")]
    pub mothergoose_ca: Option<PathBuf>,
    /// Time allowed for a MotherGoose lookup [default: 5s].
    #[arg(long, env = "RIFT_MOTHERGOOSE_TIMEOUT")]
    pub mothergoose_timeout: Option<String>,
    /// Longest time MotherGoose's "the runner lives" is trusted; a terminated runner is
    /// refused within it (at most 30s) [default: 15s].
    #[arg(long, env = "RIFT_FLEET_ALLOW_TTL")]
    pub fleet_allow_ttl: Option<String>,
    /// Longest time MotherGoose's "no such runner" is trusted [default: 5s].
    #[arg(long, env = "RIFT_FLEET_DENY_TTL")]
    pub fleet_deny_ttl: Option<String>,
    /// MotherGoose lookups per second of runner ids not seen before (bursts of twice as
    /// many); 0 disables the limit [default: 20].
    #[arg(long, env = "RIFT_FLEET_LOOKUP_RATE")]
    pub fleet_lookup_rate: Option<u32>,
    /// Log filter (tracing EnvFilter syntax) [default: info].
    #[arg(long, env = "RIFT_LOG")]
    pub log: Option<String>,
}

/// The environment variable holding Rift's MotherGoose token.
pub const TOKEN_ENV: &str = "RIFT_MOTHERGOOSE_TOKEN";

/// Longest `fleet_allow_ttl` accepted: a terminated runner is refused within it.
pub const MAX_ALLOW_TTL: Duration = Duration::from_secs(30);

/// A size or duration in the config file: a string (`"5GiB"`) or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Human {
    Text(String),
    Number(u64),
}

impl Human {
    fn text(self) -> String {
        match self {
            Human::Text(s) => s,
            Human::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    auth_file: Option<PathBuf>,
    max_cache_size: Option<Human>,
    max_object_size: Option<Human>,
    max_age: Option<Human>,
    fsync: Option<bool>,
    memory_cache_size: Option<Human>,
    clock_skew: Option<Human>,
    auth_reload_interval: Option<Human>,
    auth_failure_limit: Option<u32>,
    auth_failure_window: Option<Human>,
    auth_lockout: Option<Human>,
    max_header_size: Option<Human>,
    header_read_timeout: Option<Human>,
    shutdown_grace: Option<Human>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    docker_listen: Option<SocketAddr>,
    docker_upstream: Option<String>,
    origin_endpoint: Option<String>,
    origin_region: Option<String>,
    origin_bucket: Option<String>,
    origin_access_key: Option<String>,
    origin_secret_key: Option<String>,
    origin_timeout: Option<Human>,
    mothergoose_url: Option<String>,
    mothergoose_token_file: Option<PathBuf>,
    mothergoose_ca: Option<PathBuf>,
    mothergoose_timeout: Option<Human>,
    fleet_allow_ttl: Option<Human>,
    fleet_deny_ttl: Option<Human>,
    fleet_lookup_rate: Option<u32>,
    log: Option<String>,
}

/// Errors resolving the configuration.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file {path}: {message}")]
    #[diagnostic(help("see `rift --help` for an example"))]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A size or duration could not be parsed.
    #[error("{field}: {source}")]
    Unit {
        /// The setting.
        field: &'static str,
        /// The parse error.
        source: UnitError,
    },
    /// A required setting is missing.
    #[error("missing setting: {0}")]
    #[diagnostic(help(
        "pass --auth-file (RIFT_AUTH_FILE, auth_file in the config file), --mothergoose-url \
         (RIFT_MOTHERGOOSE_URL) with RIFT_MOTHERGOOSE_TOKEN or --mothergoose-token-file, or both"
    ))]
    Missing(&'static str),
    /// A setting has an invalid value.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Where the Docker proxy forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerUpstream {
    /// A unix socket path.
    Unix(PathBuf),
    /// A `host:port` TCP address.
    Tcp(String),
}

impl DockerUpstream {
    /// Parses `unix:///path`, `/path` or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(DockerUpstream::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') {
            return Ok(DockerUpstream::Unix(PathBuf::from(s)));
        }
        if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let a = a.trim_end_matches('/');
            if a.contains(':') && !a.contains('/') {
                return Ok(DockerUpstream::Tcp(a.to_string()));
            }
        }
        Err(ConfigError::Invalid {
            field: "docker_upstream",
            message: format!("`{s}`: use unix:///path/to/docker.sock or tcp://host:port"),
        })
    }
}

/// The pull-through origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Custom endpoint (Yandex Object Storage, MinIO, another Rift); AWS when `None`.
    pub endpoint: Option<String>,
    /// Signing region.
    pub region: String,
    /// Fixed origin bucket; the requested bucket name when `None`.
    pub bucket: Option<String>,
    /// Access key.
    pub access_key: Option<String>,
    /// Secret key.
    pub secret_key: Option<String>,
    /// Connect and response-head timeout.
    pub timeout: Duration,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// S3 / cache / metrics listener.
    pub listen: SocketAddr,
    /// Object directory.
    pub data_dir: PathBuf,
    /// Auth file (tokens and S3 keys with full access).
    pub auth_file: Option<PathBuf>,
    /// Total cache size limit.
    pub max_cache_size: u64,
    /// Largest object.
    pub max_object_size: u64,
    /// Maximum object age.
    pub max_age: Option<Duration>,
    /// fsync uploads before commit.
    pub fsync: bool,
    /// Memory for small objects kept for reading (0 = off).
    pub memory_cache_size: u64,
    /// SigV4 clock-skew window.
    pub clock_skew: Duration,
    /// Auth file poll interval.
    pub auth_reload_interval: Duration,
    /// Auth failures before lockout (0 = off).
    pub auth_failure_limit: u32,
    /// Failure counting window.
    pub auth_failure_window: Duration,
    /// Lockout duration.
    pub auth_lockout: Duration,
    /// Request head size limit.
    pub max_header_size: usize,
    /// Request head timeout.
    pub header_read_timeout: Duration,
    /// Graceful shutdown limit.
    pub shutdown_grace: Duration,
    /// Certificate and key: HTTPS (TLS 1.3) on every listener when set.
    pub tls: Option<TlsFiles>,
    /// Docker proxy listener.
    pub docker_listen: Option<SocketAddr>,
    /// Docker upstream.
    pub docker_upstream: Option<DockerUpstream>,
    /// Pull-through origin.
    pub origin: Option<OriginConfig>,
    /// MotherGoose, when Rift trusts the fleet's runners.
    pub fleet: Option<FleetConfig>,
    /// Log filter.
    pub log: String,
}

impl Config {
    /// Defaults for everything but the data directory and the auth file.
    pub fn new(data_dir: impl Into<PathBuf>, auth_file: impl Into<PathBuf>) -> Self {
        Config {
            auth_file: Some(auth_file.into()),
            ..Config::without_auth_file(data_dir)
        }
    }

    /// Defaults, without an auth file (for a Rift that trusts only the fleet, see
    /// [`Config::fleet`]).
    pub fn without_auth_file(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            data_dir: data_dir.into(),
            auth_file: None,
            max_cache_size: 10 << 30,
            max_object_size: 5 << 30,
            max_age: None,
            fsync: true,
            memory_cache_size: 64 << 20,
            clock_skew: Duration::from_secs(15 * 60),
            auth_reload_interval: Duration::from_secs(2),
            auth_failure_limit: 20,
            auth_failure_window: Duration::from_secs(60),
            auth_lockout: Duration::from_secs(60),
            max_header_size: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            tls: None,
            docker_listen: None,
            docker_upstream: None,
            origin: None,
            fleet: None,
            log: "info".to_string(),
        }
    }

    /// Resolves flags and environment (already merged by clap) over the config file over the
    /// defaults; the MotherGoose token, if any, is read from [`TOKEN_ENV`].
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        Config::resolve_with_token(cli, token.map(Secret::new))
    }

    /// [`Config::resolve`] with the token of the environment given.
    pub fn resolve_with_token(cli: Cli, env_token: Option<Secret>) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let size = |field: &'static str, cli: Option<String>, file: Option<Human>| {
            cli.or(file.map(Human::text))
                .map(|s| parse_size(&s).map_err(|source| ConfigError::Unit { field, source }))
                .transpose()
        };
        let dur = |field: &'static str, cli: Option<String>, file: Option<Human>| {
            cli.or(file.map(Human::text))
                .map(|s| parse_duration(&s).map_err(|source| ConfigError::Unit { field, source }))
                .transpose()
        };
        let data_dir = cli
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("rift-data"));
        let mut c = Config::without_auth_file(data_dir);
        c.auth_file = cli.auth_file.or(file.auth_file);
        if let Some(v) = cli.listen.or(file.listen) {
            c.listen = v;
        }
        if let Some(v) = size("max_cache_size", cli.max_cache_size, file.max_cache_size)? {
            c.max_cache_size = v;
        }
        if let Some(v) = size("max_object_size", cli.max_object_size, file.max_object_size)? {
            c.max_object_size = v;
        }
        if let Some(v) = dur("max_age", cli.max_age, file.max_age)? {
            c.max_age = (!v.is_zero()).then_some(v);
        }
        if let Some(v) = cli.fsync.or(file.fsync) {
            c.fsync = v;
        }
        if let Some(v) = size(
            "memory_cache_size",
            cli.memory_cache_size,
            file.memory_cache_size,
        )? {
            c.memory_cache_size = v;
        }
        if let Some(v) = dur("clock_skew", cli.clock_skew, file.clock_skew)? {
            c.clock_skew = v;
        }
        if let Some(v) = dur(
            "auth_reload_interval",
            cli.auth_reload_interval,
            file.auth_reload_interval,
        )? {
            c.auth_reload_interval = v;
        }
        if let Some(v) = cli.auth_failure_limit.or(file.auth_failure_limit) {
            c.auth_failure_limit = v;
        }
        if let Some(v) = dur(
            "auth_failure_window",
            cli.auth_failure_window,
            file.auth_failure_window,
        )? {
            c.auth_failure_window = v;
        }
        if let Some(v) = dur("auth_lockout", cli.auth_lockout, file.auth_lockout)? {
            c.auth_lockout = v;
        }
        if let Some(v) = size("max_header_size", cli.max_header_size, file.max_header_size)? {
            c.max_header_size = usize::try_from(v).unwrap_or(usize::MAX);
        }
        if let Some(v) = dur(
            "header_read_timeout",
            cli.header_read_timeout,
            file.header_read_timeout,
        )? {
            c.header_read_timeout = v;
        }
        if let Some(v) = dur("shutdown_grace", cli.shutdown_grace, file.shutdown_grace)? {
            c.shutdown_grace = v;
        }
        // The pair comes from one place: flags/environment when they name either file, else
        // the config file (a flag's certificate never pairs with the file's key).
        let pair = if cli.tls_cert.is_some() || cli.tls_key.is_some() {
            (cli.tls_cert, cli.tls_key)
        } else {
            (file.tls_cert, file.tls_key)
        };
        c.tls = match pair {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "tls_cert",
                    message: "set both tls_cert and tls_key, or neither".into(),
                })
            }
        };
        c.docker_listen = cli.docker_listen.or(file.docker_listen);
        c.docker_upstream = cli
            .docker_upstream
            .or(file.docker_upstream)
            .map(|s| DockerUpstream::parse(&s))
            .transpose()?;
        let endpoint = cli.origin_endpoint.or(file.origin_endpoint);
        let region = cli.origin_region.or(file.origin_region);
        if endpoint.is_some() || region.is_some() {
            c.origin = Some(OriginConfig {
                endpoint,
                region: region.unwrap_or_else(|| "us-east-1".to_string()),
                bucket: cli.origin_bucket.or(file.origin_bucket),
                access_key: cli
                    .origin_access_key
                    .or(file.origin_access_key)
                    .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok()),
                secret_key: cli
                    .origin_secret_key
                    .or(file.origin_secret_key)
                    .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok()),
                timeout: dur("origin_timeout", cli.origin_timeout, file.origin_timeout)?
                    .unwrap_or(Duration::from_secs(10)),
            });
        }
        c.fleet = fleet_config(FleetSources {
            url: cli.mothergoose_url.or(file.mothergoose_url),
            token_file: cli.mothergoose_token_file.or(file.mothergoose_token_file),
            env_token,
            ca: cli.mothergoose_ca.or(file.mothergoose_ca),
            timeout: dur(
                "mothergoose_timeout",
                cli.mothergoose_timeout,
                file.mothergoose_timeout,
            )?,
            allow_ttl: dur("fleet_allow_ttl", cli.fleet_allow_ttl, file.fleet_allow_ttl)?,
            deny_ttl: dur("fleet_deny_ttl", cli.fleet_deny_ttl, file.fleet_deny_ttl)?,
            lookup_rate: cli.fleet_lookup_rate.or(file.fleet_lookup_rate),
        })?;
        if let Some(v) = cli.log.or(file.log) {
            c.log = v;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks cross-field constraints.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.auth_file.is_none() && self.fleet.is_none() {
            return Err(ConfigError::Missing("auth_file"));
        }
        if let Some(f) = &self.fleet {
            validate_fleet(f)?;
        }
        if self.docker_listen.is_some() && self.docker_upstream.is_none() {
            return Err(ConfigError::Invalid {
                field: "docker_upstream",
                message: "docker_listen is set but docker_upstream is not".into(),
            });
        }
        if self.max_header_size < 8192 {
            return Err(ConfigError::Invalid {
                field: "max_header_size",
                message: "must be at least 8KiB".into(),
            });
        }
        if self.header_read_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                field: "header_read_timeout",
                message: "must be positive (it also bounds the TLS handshake)".into(),
            });
        }
        if self.max_cache_size == 0 || self.max_object_size == 0 {
            return Err(ConfigError::Invalid {
                field: "max_cache_size",
                message: "sizes must be positive".into(),
            });
        }
        Ok(())
    }
}

/// The MotherGoose settings as given, before defaults.
struct FleetSources {
    url: Option<String>,
    token_file: Option<PathBuf>,
    env_token: Option<Secret>,
    ca: Option<PathBuf>,
    timeout: Option<Duration>,
    allow_ttl: Option<Duration>,
    deny_ttl: Option<Duration>,
    lookup_rate: Option<u32>,
}

/// The fleet credential source: on with a URL, which then needs exactly one token source.
fn fleet_config(s: FleetSources) -> Result<Option<FleetConfig>, ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        field: "mothergoose_url",
        message: message.to_string(),
    };
    let Some(url) = s.url else {
        if s.token_file.is_some() || s.ca.is_some() {
            return Err(invalid(
                "mothergoose_token_file or mothergoose_ca is set but mothergoose_url is not",
            ));
        }
        return Ok(None);
    };
    let token = match (s.token_file, s.env_token) {
        (Some(_), Some(_)) => {
            return Err(invalid(&format!(
                "set {TOKEN_ENV} or mothergoose_token_file, not both"
            )))
        }
        (None, None) => {
            return Err(invalid(&format!(
                "needs Rift's token (`mothergoose token rift`) in {TOKEN_ENV} or in the file \
                 named by mothergoose_token_file"
            )))
        }
        (None, Some(t)) => t,
        (Some(path), None) => read_token(&path)?,
    };
    let mut f = FleetConfig::new(url.trim_end_matches('/'), token);
    f.ca = s.ca;
    if let Some(t) = s.timeout {
        f.timeout = t;
    }
    if let Some(t) = s.allow_ttl {
        f.allow_ttl = t;
    }
    if let Some(t) = s.deny_ttl {
        f.deny_ttl = t;
    }
    if let Some(r) = s.lookup_rate {
        f.lookup_rate = r;
    }
    Ok(Some(f))
}

/// Reads the token file (surrounding whitespace ignored).
fn read_token(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Invalid {
            field: "mothergoose_token_file",
            message: format!("{} is empty", path.display()),
        });
    }
    Ok(Secret::new(token))
}

fn validate_fleet(f: &FleetConfig) -> Result<(), ConfigError> {
    let invalid = |field: &'static str, message: String| ConfigError::Invalid { field, message };
    match reqwest::Url::parse(&f.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            return Err(invalid(
                "mothergoose_url",
                format!(
                    "`{}`: use https://HOST[:PORT] (or http:// on a private network)",
                    f.url
                ),
            ))
        }
    }
    if f.allow_ttl > MAX_ALLOW_TTL {
        return Err(invalid(
            "fleet_allow_ttl",
            format!(
                "at most {}s, so that a terminated runner is refused in time",
                MAX_ALLOW_TTL.as_secs()
            ),
        ));
    }
    if f.timeout.is_zero() {
        return Err(invalid("mothergoose_timeout", "must be positive".into()));
    }
    Ok(())
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flags_over_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rift.toml");
        std::fs::write(
            &f,
            "auth_file = \"/a\"\nmax_cache_size = \"1GiB\"\nmax_object_size = 1000\nmax_age = \"2d\"\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "rift",
            "--config",
            f.to_str().unwrap(),
            "--listen",
            "127.0.0.1:2",
        ])
        .unwrap();
        let c = Config::resolve(cli).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.max_cache_size, 1 << 30);
        assert_eq!(c.max_object_size, 1000);
        assert_eq!(c.max_age, Some(Duration::from_secs(172_800)));
        assert_eq!(c.auth_file, Some(PathBuf::from("/a")));
        assert!(c.fleet.is_none());
        assert!(c.origin.is_none());
    }

    #[test]
    fn zero_header_timeout_is_refused() {
        let cli = Cli::try_parse_from(["rift", "--auth-file", "/a", "--header-read-timeout", "0s"])
            .unwrap();
        let e = Config::resolve(cli).unwrap_err();
        assert!(e.to_string().contains("header_read_timeout"), "{e}");
    }

    #[test]
    fn tls_needs_both_files() {
        let cli =
            Cli::try_parse_from(["rift", "--auth-file", "/a", "--tls-cert", "/c.pem"]).unwrap();
        let e = Config::resolve(cli).unwrap_err();
        assert!(e.to_string().contains("both tls_cert and tls_key"), "{e}");
        let cli = Cli::try_parse_from([
            "rift",
            "--auth-file",
            "/a",
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
        ])
        .unwrap();
        let c = Config::resolve(cli).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        // A file that names both, and a flag that names one: the flag's source must name both.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rift.toml");
        std::fs::write(
            &f,
            "auth_file = \"/a\"\ntls_cert = \"/file-c.pem\"\ntls_key = \"/file-k.pem\"\n",
        )
        .unwrap();
        let from_file = Config::resolve(
            Cli::try_parse_from(["rift", "--config", f.to_str().unwrap()]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            from_file.tls,
            Some(TlsFiles {
                cert: "/file-c.pem".into(),
                key: "/file-k.pem".into()
            })
        );
        let mixed = Cli::try_parse_from([
            "rift",
            "--config",
            f.to_str().unwrap(),
            "--tls-cert",
            "/flag-c.pem",
        ])
        .unwrap();
        let e = Config::resolve(mixed).unwrap_err();
        assert!(e.to_string().contains("both tls_cert and tls_key"), "{e}");
    }

    #[test]
    fn errors_are_reported() {
        let cli = Cli::default();
        assert!(matches!(Config::resolve(cli), Err(ConfigError::Missing(_))));
        let cli = Cli {
            auth_file: Some("/a".into()),
            max_cache_size: Some("lots".into()),
            ..Cli::default()
        };
        assert!(matches!(
            Config::resolve(cli),
            Err(ConfigError::Unit { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rift.toml");
        std::fs::write(&f, "unknown_key = 1\n").unwrap();
        let cli = Cli {
            config: Some(f),
            ..Cli::default()
        };
        assert!(matches!(
            Config::resolve(cli),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn fleet_settings() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "gsk_secret-token\n").unwrap();
        let parse = |args: &[&str], env: Option<&str>| {
            let cli =
                Cli::try_parse_from(std::iter::once("rift").chain(args.iter().copied())).unwrap();
            Config::resolve_with_token(cli, env.map(Secret::new))
        };
        // MotherGoose alone is enough; the token comes from the environment or a file.
        let c = parse(
            &["--mothergoose-url", "https://mg.internal:8443/"],
            Some("gsk_x"),
        )
        .unwrap();
        assert!(c.auth_file.is_none());
        let f = c.fleet.unwrap();
        assert_eq!(f.url, "https://mg.internal:8443");
        assert_eq!(f.token.expose(), "gsk_x");
        assert_eq!(f.allow_ttl, Duration::from_secs(15));
        assert!(!format!("{f:?}").contains("gsk_x"), "the token never shows");
        let c = parse(
            &[
                "--auth-file",
                "/a",
                "--mothergoose-url",
                "http://127.0.0.1:1",
                "--mothergoose-token-file",
                token.to_str().unwrap(),
                "--fleet-allow-ttl",
                "2s",
                "--fleet-deny-ttl",
                "1s",
                "--fleet-lookup-rate",
                "0",
            ],
            None,
        )
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.token.expose(), "gsk_secret-token");
        assert_eq!(
            (f.allow_ttl, f.deny_ttl, f.lookup_rate),
            (Duration::from_secs(2), Duration::from_secs(1), 0)
        );
        // Mistakes are reported, naming the setting.
        let token_arg = token.to_str().unwrap();
        for (args, env, what) in [
            (
                &["--mothergoose-url", "https://mg"][..],
                None,
                "RIFT_MOTHERGOOSE_TOKEN",
            ),
            (
                &[
                    "--mothergoose-url",
                    "https://mg",
                    "--mothergoose-token-file",
                    token_arg,
                ][..],
                Some("gsk_x"),
                "not both",
            ),
            (
                &["--mothergoose-url", "mg:8443"][..],
                Some("t"),
                "mothergoose_url",
            ),
            (
                &["--mothergoose-url", "https://mg", "--fleet-allow-ttl", "1m"][..],
                Some("t"),
                "fleet_allow_ttl",
            ),
            (
                &["--auth-file", "/a", "--mothergoose-token-file", token_arg][..],
                None,
                "mothergoose_url is not",
            ),
        ] {
            let e = parse(args, env).unwrap_err().to_string();
            assert!(e.contains(what), "{args:?}: {e}");
        }
    }

    #[test]
    fn docker_upstreams() {
        assert_eq!(
            DockerUpstream::parse("unix:///var/run/docker.sock").unwrap(),
            DockerUpstream::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            DockerUpstream::parse("tcp://10.0.0.1:2375").unwrap(),
            DockerUpstream::Tcp("10.0.0.1:2375".into())
        );
        assert!(DockerUpstream::parse("ftp://x").is_err());
    }
}
