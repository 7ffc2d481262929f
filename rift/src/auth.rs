//! Credentials (runner bearer tokens and S3 access keys), their hot reload, and the per-client
//! rate limiting of authentication failures.
//!
//! The auth file is TOML:
//!
//! ```toml
//! # Bearer tokens accepted by /cache/{key} and the Docker proxy. A token may be given as
//! # "sha256:<hex>" so that the file does not hold it in clear.
//! tokens = ["glrt-example-token", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//!
//! # SigV4 key pairs for the S3 API (what gitlab-runner's [runners.cache.s3] uses).
//! [[s3_keys]]
//! access_key = "RIFTEXAMPLEKEY"
//! secret_key = "example-secret"
//! ```
//!
//! It is reloaded on `SIGHUP` and whenever its modification time or size changes; a file that
//! fails to parse leaves the previous credentials in force.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::fleet::Grant;
use crate::metrics::Metrics;
use crate::reload::{Reloadable, Watched};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors loading the auth file.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file could not be read.
    #[error("cannot read auth file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid auth file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    s3_keys: Vec<S3Key>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Key {
    access_key: String,
    secret_key: String,
}

/// One consistent set of credentials.
#[derive(Default)]
pub struct Credentials {
    token_digests: Vec<[u8; 32]>,
    s3_keys: HashMap<String, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tokens", &self.token_digests.len())
            .field("s3_keys", &self.s3_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Parses the TOML text of an auth file (`path` is only used in error messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, AuthFileError> {
        let perr = |message: String| AuthFileError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let file: AuthFile = toml::from_str(text).map_err(|e| perr(e.to_string()))?;
        let mut token_digests = Vec::with_capacity(file.tokens.len());
        for t in &file.tokens {
            if let Some(h) = t.strip_prefix("sha256:") {
                let bytes =
                    hex::decode(h).map_err(|_| perr("a sha256: token is not hex".into()))?;
                let d: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| perr("a sha256: token is not 32 bytes".into()))?;
                token_digests.push(d);
            } else if t.is_empty() {
                return Err(perr("empty token".into()));
            } else {
                token_digests.push(Sha256::digest(t.as_bytes()).into());
            }
        }
        let mut s3_keys = HashMap::new();
        for k in file.s3_keys {
            if k.access_key.is_empty() || k.secret_key.is_empty() {
                return Err(perr("empty access_key or secret_key".into()));
            }
            s3_keys.insert(k.access_key, k.secret_key);
        }
        Ok(Credentials {
            token_digests,
            s3_keys,
        })
    }

    /// Whether `token` is one of the configured bearer tokens. The comparison runs over every
    /// configured digest in constant time.
    pub fn check_token(&self, token: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut ok = subtle::Choice::from(0u8);
        for t in &self.token_digests {
            ok |= t.ct_eq(&d);
        }
        bool::from(ok)
    }

    /// The secret key of an S3 access key.
    pub fn secret_for(&self, access_key: &str) -> Option<&str> {
        self.s3_keys.get(access_key).map(String::as_str)
    }

    /// Number of tokens and S3 keys.
    pub fn counts(&self) -> (usize, usize) {
        (self.token_digests.len(), self.s3_keys.len())
    }
}

/// Who a request acts for, once authenticated.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A credential of the auth file: every bucket and key.
    Operator,
    /// A live runner of the fleet: only keys under its egg's prefix (`<egg>/`).
    Runner(Arc<Grant>),
}

impl Principal {
    /// Whether it may read or write `key` (inside a bucket), or list keys starting with it.
    pub fn may_use(&self, key: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Runner(g) => g.owns(key),
        }
    }

    /// Whether it may act on buckets as a whole (list them, create, delete).
    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }
}

/// The credentials in force, reloadable from their file.
#[derive(Debug)]
pub struct AuthState {
    path: Option<PathBuf>,
    creds: RwLock<Arc<Credentials>>,
    watched: Watched,
}

impl AuthState {
    /// No auth file: no tokens, no keys (a Rift that trusts only the fleet).
    pub fn empty() -> Self {
        AuthState {
            path: None,
            creds: RwLock::new(Arc::new(Credentials::default())),
            watched: Watched::new(Vec::new()),
        }
    }

    /// Loads the auth file.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let watched = Watched::new(vec![path.to_path_buf()]);
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let creds = Credentials::parse(&text, path)?;
        Ok(AuthState {
            path: Some(path.to_path_buf()),
            creds: RwLock::new(Arc::new(creds)),
            watched,
        })
    }

    /// The credentials in force.
    pub fn current(&self) -> Arc<Credentials> {
        self.creds
            .read()
            .map(|g| Arc::clone(&g))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Whether `token` is one of the bearer tokens in force (see [`Credentials::check_token`]),
    /// checked under the read lock rather than through a new reference to the credentials.
    pub fn check_token(&self, token: &str) -> bool {
        match self.creds.read() {
            Ok(g) => g.check_token(token),
            Err(p) => p.into_inner().check_token(token),
        }
    }

    /// Re-reads the file. On error the previous credentials stay in force.
    pub fn reload(&self) -> Result<(), AuthFileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.clone(),
            source,
        })?;
        let creds = Credentials::parse(&text, path)?;
        let (t, k) = creds.counts();
        match self.creds.write() {
            Ok(mut g) => *g = Arc::new(creds),
            Err(p) => *p.into_inner() = Arc::new(creds),
        }
        tracing::info!(path = %path.display(), tokens = t, s3_keys = k, "auth file reloaded");
        Ok(())
    }
}

impl Reloadable for AuthState {
    fn name(&self) -> &'static str {
        "auth file"
    }

    fn reload(&self) -> Result<(), String> {
        AuthState::reload(self).map_err(|e| e.to_string())
    }

    fn watched(&self) -> &Watched {
        &self.watched
    }

    fn counters<'m>(&self, m: &'m Metrics) -> (&'m AtomicU64, &'m AtomicU64) {
        (&m.auth_reloads, &m.auth_reload_errors)
    }
}

/// Limits of [`RateLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Failures allowed per window before the client is locked out; 0 disables the limiter.
    pub max_failures: u32,
    /// Window over which failures are counted.
    pub window: Duration,
    /// How long a client is refused after exceeding the limit.
    pub lockout: Duration,
}

#[derive(Debug)]
struct Slot {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Counts authentication failures per client IP and locks out clients that fail too often.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    slots: Mutex<HashMap<IpAddr, Slot>>,
    /// When the last lockout in force ends, in milliseconds since `epoch`: before it, `check`
    /// looks the client up; after it, nobody is locked out and `check` takes no lock.
    locked_until_ms: AtomicU64,
    epoch: Instant,
}

const MAX_TRACKED_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// A limiter with the given limits.
    pub fn new(cfg: RateLimitConfig) -> Self {
        RateLimiter {
            cfg,
            slots: Mutex::new(HashMap::new()),
            locked_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// `Err(retry_after)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.cfg.max_failures == 0 {
            return Ok(());
        }
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if now_ms >= self.locked_until_ms.load(Ordering::Acquire) {
            return Ok(());
        }
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get(&ip).and_then(|s| s.blocked_until) {
            Some(until) => {
                let now = Instant::now();
                if until > now {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Records an authentication failure from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        if self.cfg.max_failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_TRACKED_CLIENTS && !slots.contains_key(&ip) {
            let horizon = self.cfg.window.max(self.cfg.lockout);
            slots.retain(|_, s| {
                now.duration_since(s.window_start) < horizon
                    || s.blocked_until.is_some_and(|u| u > now)
            });
            if slots.len() >= MAX_TRACKED_CLIENTS {
                // Under a flood of distinct addresses, forget the oldest half.
                let mut starts: Vec<Instant> = slots.values().map(|s| s.window_start).collect();
                starts.sort();
                let median = starts[starts.len() / 2];
                slots.retain(|_, s| s.window_start > median);
            }
        }
        let slot = slots.entry(ip).or_insert(Slot {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(slot.window_start) > self.cfg.window {
            slot.window_start = now;
            slot.failures = 0;
        }
        slot.failures = slot.failures.saturating_add(1);
        if slot.failures >= self.cfg.max_failures {
            let until = now + self.cfg.lockout;
            slot.blocked_until = Some(until);
            // Rounded up, so that the lock-free check never ends a lockout early.
            let ms = until.duration_since(self.epoch).as_millis() + 1;
            self.locked_until_ms
                .fetch_max(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Release);
            slot.failures = 0;
            slot.window_start = now;
            tracing::warn!(client = %ip, "too many authentication failures; client locked out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_plain_and_hashed() {
        let text = r#"
tokens = ["glrt-abc", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
[[s3_keys]]
access_key = "AK"
secret_key = "SK"
"#;
        let c = Credentials::parse(text, Path::new("x")).unwrap();
        assert!(c.check_token("glrt-abc"));
        assert!(c.check_token("test"));
        assert!(!c.check_token("glrt-abd"));
        assert!(!c.check_token(""));
        assert_eq!(c.secret_for("AK"), Some("SK"));
        assert_eq!(c.secret_for("ak"), None);
        assert!(Credentials::parse("tokens = [\"\"]", Path::new("x")).is_err());
        assert!(Credentials::parse("bogus = 1", Path::new("x")).is_err());
        assert!(Credentials::parse("tokens = [\"sha256:zz\"]", Path::new("x")).is_err());
    }

    #[test]
    fn limiter_locks_out_and_disabled_never_does() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let l = RateLimiter::new(RateLimitConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        });
        l.record_failure(ip);
        l.record_failure(ip);
        assert!(l.check(ip).is_ok());
        l.record_failure(ip);
        assert!(l.check(ip).is_err());
        assert!(l.check("127.0.0.2".parse().unwrap()).is_ok());
        let off = RateLimiter::new(RateLimitConfig {
            max_failures: 0,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        });
        for _ in 0..100 {
            off.record_failure(ip);
        }
        assert!(off.check(ip).is_ok());
    }
}
