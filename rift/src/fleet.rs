//! The fleet credential source: the runners MotherGoose created, verified by asking it.
//!
//! A runner's S3 access key is its runner id and its secret is derived by MotherGoose, so an
//! access key the auth file does not know is looked up with `POST /rift/verify` (bearer: the
//! Rift token from `mothergoose token rift`). The answer says whether the runner lives, its
//! egg (the key prefix it may use) and its secret; Rift then checks the signature itself.
//! Bearer tokens `<runner id>.<secret>` (the Docker proxy, `/cache`) are checked the same way.
//!
//! * Answers are cached for the TTL MotherGoose gives, capped (by default 15 s for a "yes",
//!   5 s for a "no"), so a terminated runner is refused within MotherGoose's TTL plus the cap.
//! * Concurrent lookups of one id share one request.
//! * Lookups of ids not seen allowed before take a token from a bucket (`lookup_rate` per
//!   second), so a client making up access keys cannot make Rift hammer MotherGoose.
//! * When MotherGoose cannot be asked, answers still cached are used, new lookups are
//!   refused (the caller answers 503), and MotherGoose is not asked again for a second.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gosling_api::{RiftVerifyReply, RiftVerifyRequest};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use crate::metrics::Metrics;

/// A secret string (the Rift token, a runner's secret key) that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How Rift reaches MotherGoose and how long it trusts its answers.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// MotherGoose's base URL (`https://mothergoose.internal:8443`).
    pub url: String,
    /// Rift's token for `POST /rift/verify`.
    pub token: Secret,
    /// PEM CA for MotherGoose's certificate, when it is not publicly trusted.
    pub ca: Option<PathBuf>,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// Longest time a "runner is live" answer is trusted.
    pub allow_ttl: Duration,
    /// Longest time a "no such runner" answer is trusted.
    pub deny_ttl: Duration,
    /// Lookups per second of ids not seen allowed before (bursts of twice as many); 0 means
    /// no limit.
    pub lookup_rate: u32,
}

impl FleetConfig {
    /// Defaults for everything but where MotherGoose is and the token.
    pub fn new(url: impl Into<String>, token: Secret) -> Self {
        FleetConfig {
            url: url.into(),
            token,
            ca: None,
            timeout: Duration::from_secs(5),
            allow_ttl: Duration::from_secs(15),
            deny_ttl: Duration::from_secs(5),
            lookup_rate: 20,
        }
    }
}

/// Errors setting up the MotherGoose client.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FleetSetupError {
    /// The CA file could not be read.
    #[error("cannot read the MotherGoose CA file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("invalid MotherGoose CA file {path}: {message}")]
    InvalidCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the MotherGoose client: {0}")]
    Client(String),
}

/// Why MotherGoose could not answer. Requests needing an answer are refused with 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Network error, timeout or server error, now or within the last second.
    #[error("MotherGoose is unreachable: {0}")]
    Unavailable(String),
    /// MotherGoose refused Rift's token.
    #[error("MotherGoose refused Rift's token (HTTP {0}); check RIFT_MOTHERGOOSE_TOKEN or --mothergoose-token-file (`mothergoose token rift`)")]
    Rejected(u16),
    /// The answer was not what `POST /rift/verify` answers.
    #[error("MotherGoose answered unexpectedly: {0}")]
    BadReply(String),
    /// Too many lookups of unknown ids: this one was not sent.
    #[error("too many lookups of unknown runners; retry later")]
    Throttled,
}

/// A live runner: who it is, the prefix it may use, and its secret.
pub struct Grant {
    runner_id: String,
    egg: String,
    prefix: String,
    secret: Secret,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("runner_id", &self.runner_id)
            .field("egg", &self.egg)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// The runner id (its access key).
    pub fn runner_id(&self) -> &str {
        &self.runner_id
    }

    /// Its egg.
    pub fn egg(&self) -> &str {
        &self.egg
    }

    /// Whether `key` (inside a bucket) lies under the egg's prefix `<egg>/`.
    pub fn owns(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }

    /// Its S3 secret key.
    pub fn secret(&self) -> &str {
        self.secret.expose()
    }

    /// Whether `presented` is its secret (in constant time).
    pub fn secret_matches(&self, presented: &str) -> bool {
        presented
            .as_bytes()
            .ct_eq(self.secret.expose().as_bytes())
            .into()
    }
}

/// MotherGoose's answer about a runner.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The runner lives.
    Allowed(Arc<Grant>),
    /// No such runner, or terminated.
    Denied,
}

type Outcome = Result<Verdict, FleetError>;

struct Entry {
    verdict: Verdict,
    expires: Instant,
}

/// At most this many answers are kept.
const MAX_ENTRIES: usize = 65_536;
/// An id allowed within this long is refreshed without taking a rate-limit token.
const KNOWN_FOR: Duration = Duration::from_secs(600);
/// After a failure, MotherGoose is not asked again for this long.
const BACKOFF: Duration = Duration::from_secs(1);
/// Lookups in flight beyond which abandoned ones are dropped.
const MAX_INFLIGHT: usize = 1024;
/// Longest runner id looked up.
const MAX_ID_LEN: usize = 128;

/// The fleet credential source (see the module documentation).
pub struct Fleet {
    http: reqwest::Client,
    verify_url: String,
    token: Secret,
    allow_ttl: Duration,
    deny_ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    inflight: Mutex<HashMap<String, Arc<OnceCell<Outcome>>>>,
    bucket: Option<Mutex<TokenBucket>>,
    down: Mutex<Option<(Instant, FleetError)>>,
    reported_down: AtomicBool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("verify_url", &self.verify_url)
            .field("allow_ttl", &self.allow_ttl)
            .field("deny_ttl", &self.deny_ttl)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// A client for `cfg`; nothing is sent before the first lookup.
    pub fn new(cfg: &FleetConfig, metrics: Arc<Metrics>) -> Result<Fleet, FleetSetupError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("rift/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca {
            for cert in read_ca(path)? {
                b = b.add_root_certificate(cert);
            }
        }
        let http = b
            .build()
            .map_err(|e| FleetSetupError::Client(e.to_string()))?;
        let bucket = (cfg.lookup_rate > 0).then(|| Mutex::new(TokenBucket::new(cfg.lookup_rate)));
        Ok(Fleet {
            http,
            verify_url: format!("{}/rift/verify", cfg.url.trim_end_matches('/')),
            token: cfg.token.clone(),
            allow_ttl: cfg.allow_ttl,
            deny_ttl: cfg.deny_ttl,
            entries: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            bucket,
            down: Mutex::new(None),
            reported_down: AtomicBool::new(false),
            metrics,
        })
    }

    /// Whether runner `runner_id` lives, from the cache or from MotherGoose.
    pub async fn lookup(&self, runner_id: &str) -> Outcome {
        if !plausible_id(runner_id) {
            return Ok(Verdict::Denied);
        }
        if let Some(v) = self.cached(runner_id) {
            Metrics::inc(&self.metrics.fleet_cache_hits);
            return Ok(v);
        }
        let cell = self.cell(runner_id);
        let out = cell.get_or_init(|| self.refresh(runner_id)).await.clone();
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight
            .get(runner_id)
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inflight.remove(runner_id);
        }
        out
    }

    /// The live runner a bearer token `<runner id>.<secret>` belongs to, if any.
    pub async fn check_token(&self, token: &str) -> Result<Option<Arc<Grant>>, FleetError> {
        let Some((id, secret)) = token.rsplit_once('.') else {
            return Ok(None);
        };
        match self.lookup(id).await? {
            Verdict::Allowed(g) if g.secret_matches(secret) => Ok(Some(g)),
            _ => Ok(None),
        }
    }

    fn cached(&self, id: &str) -> Option<Verdict> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.verdict.clone())
    }

    /// The lookup of `id` in flight, or a new one.
    fn cell(&self, id: &str) -> Arc<OnceCell<Outcome>> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.len() >= MAX_INFLIGHT && !inflight.contains_key(id) {
            // Lookups whose every caller went away (a client that hung up) are abandoned.
            inflight.retain(|_, c| Arc::strong_count(c) > 1);
        }
        let cell = inflight
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(OnceCell::new()));
        if cell.initialized() {
            // A finished lookup is never joined: its answer may be past its TTL.
            *cell = Arc::new(OnceCell::new());
        }
        Arc::clone(cell)
    }

    /// Asks MotherGoose about `id` (once admitted) and remembers the answer.
    async fn refresh(&self, id: &str) -> Outcome {
        // Filled by a lookup that ended between the cache check and joining this one.
        if let Some(v) = self.cached(id) {
            return Ok(v);
        }
        self.admit(id)?;
        Metrics::inc(&self.metrics.fleet_lookups);
        match self.ask(id).await {
            Ok(reply) => {
                self.mark_up();
                self.remember(id, reply)
            }
            Err(e) => {
                self.mark_down(&e);
                Err(e)
            }
        }
    }

    /// Refuses a lookup while MotherGoose is backed off, or when an unknown id finds the
    /// rate-limit bucket empty.
    fn admit(&self, id: &str) -> Result<(), FleetError> {
        let now = Instant::now();
        if let Some((until, e)) = &*self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            if *until > now {
                Metrics::inc(&self.metrics.fleet_errors);
                return Err(e.clone());
            }
        }
        let known = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.get(id).is_some_and(|e| {
                matches!(e.verdict, Verdict::Allowed(_)) && e.expires + KNOWN_FOR > now
            })
        };
        let admitted = known
            || self.bucket.as_ref().is_none_or(|b| {
                b.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(Instant::now())
            });
        if admitted {
            Ok(())
        } else {
            Metrics::inc(&self.metrics.fleet_throttled);
            Err(FleetError::Throttled)
        }
    }

    async fn ask(&self, id: &str) -> Result<RiftVerifyReply, FleetError> {
        let resp = self
            .http
            .post(&self.verify_url)
            .bearer_auth(self.token.expose())
            .json(&RiftVerifyRequest {
                runner_id: id.to_string(),
            })
            .send()
            .await
            .map_err(|e| FleetError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(FleetError::Rejected(status.as_u16()));
        }
        if !status.is_success() {
            return Err(FleetError::Unavailable(format!("HTTP {status}")));
        }
        resp.json::<RiftVerifyReply>()
            .await
            .map_err(|e| FleetError::BadReply(e.without_url().to_string()))
    }

    /// Caches MotherGoose's answer for its TTL, capped.
    fn remember(&self, id: &str, reply: RiftVerifyReply) -> Outcome {
        let (verdict, cap) = if reply.allowed {
            let (Some(egg), Some(secret)) = (reply.egg_name, reply.secret_key) else {
                return Err(FleetError::BadReply(
                    "a live runner without its egg or secret".into(),
                ));
            };
            if egg.is_empty() || secret.is_empty() {
                return Err(FleetError::BadReply(
                    "a live runner with an empty egg or secret".into(),
                ));
            }
            let grant = Grant {
                runner_id: id.to_string(),
                prefix: format!("{egg}/"),
                egg,
                secret: Secret(secret),
            };
            (Verdict::Allowed(Arc::new(grant)), self.allow_ttl)
        } else {
            Metrics::inc(&self.metrics.fleet_denied);
            (Verdict::Denied, self.deny_ttl)
        };
        let ttl = Duration::from_secs(reply.ttl_s).min(cap);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            prune(&mut entries, now);
        }
        if entries.len() < MAX_ENTRIES || entries.contains_key(id) {
            entries.insert(
                id.to_string(),
                Entry {
                    verdict: verdict.clone(),
                    expires: now + ttl,
                },
            );
        }
        Ok(verdict)
    }

    fn mark_down(&self, e: &FleetError) {
        Metrics::inc(&self.metrics.fleet_errors);
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now() + BACKOFF, e.clone()));
        if !self.reported_down.swap(true, Ordering::AcqRel) {
            tracing::error!(url = %self.verify_url, error = %e,
                "cannot verify runners with MotherGoose: serving runners whose answers are cached, refusing others (503)");
        } else {
            tracing::debug!(error = %e, "MotherGoose lookup failed");
        }
    }

    fn mark_up(&self) {
        if self.reported_down.swap(false, Ordering::AcqRel) {
            *self.down.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::info!(url = %self.verify_url, "MotherGoose answers again");
        }
    }
}

/// Drops answers past use: expired ones (keeping recently allowed ids known), then, if still
/// full, every expired one.
fn prune(entries: &mut HashMap<String, Entry>, now: Instant) {
    entries.retain(|_, e| {
        e.expires > now || (matches!(e.verdict, Verdict::Allowed(_)) && e.expires + KNOWN_FOR > now)
    });
    if entries.len() >= MAX_ENTRIES {
        entries.retain(|_, e| e.expires > now);
    }
}

/// Whether `id` could be a runner id at all (anything else is refused without asking).
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, FleetSetupError> {
    let pem = std::fs::read(path).map_err(|source| FleetSetupError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| FleetSetupError::InvalidCa {
        path: path.to_path_buf(),
        message,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A token bucket: `rate` tokens per second, up to twice as many saved.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        TokenBucket {
            rate,
            burst: rate * 2.0,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets() {
        assert!(plausible_id("r-0123456789abcdef"));
        assert!(!plausible_id(""));
        assert!(!plausible_id("r/1"));
        assert!(!plausible_id(&"r".repeat(129)));
        let g = Grant {
            runner_id: "r-1".into(),
            egg: "app".into(),
            prefix: "app/".into(),
            secret: Secret::new("s3cr3t"),
        };
        assert!(g.owns("app/x") && g.owns("app/") && !g.owns("app") && !g.owns("apple/x"));
        assert!(g.secret_matches("s3cr3t") && !g.secret_matches("s3cr3") && !g.secret_matches(""));
        let shown = format!("{g:?} {:?}", Secret::new("s3cr3t"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let mut b = TokenBucket::new(2);
        let t = Instant::now();
        let taken = (0..10).filter(|_| b.take(t)).count();
        assert_eq!(taken, 4, "a burst of twice the rate");
        assert!(!b.take(t));
        assert!(
            b.take(t + Duration::from_millis(500)),
            "one more after 1/rate"
        );
        assert!(!b.take(t + Duration::from_millis(500)));
    }
}
