//! Rift, the runners' cache, as MotherGoose sees it: each runner's own S3 credentials
//! (access key = the runner id, secret derived from MotherGoose's runner key, so no secret
//! is shared between runners) and the answers Rift caches when it asks whether a runner
//! may still use the cache.

use crate::app::App;
use gosling_api::CacheConfig;
use gosling_state::{Runner, SecretString};

/// Seconds Rift may trust a "yes" (a terminated runner is refused within this).
pub const ALLOW_TTL_S: u64 = 15;
/// Seconds Rift may trust a "no".
pub const DENY_TTL_S: u64 = 5;

/// A runner's S3 secret key for Rift.
pub fn s3_secret(app: &App, runner_id: &str) -> SecretString {
    app.keys.derive("rift-s3", runner_id)
}

/// The cache a runner of `egg` uses: none until the egg names a Rift (Property 22).
pub fn cache_config(_app: &App, _r: &Runner, _egg: &fly_ir::Egg) -> Option<CacheConfig> {
    None
}
