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

/// The cache a runner of `egg` uses: none unless the egg names a Rift (Property 22). The
/// runner's own credentials (never shared with another runner) and its egg's prefix.
pub fn cache_config(app: &App, r: &Runner, egg: &fly_ir::Egg) -> Option<CacheConfig> {
    let d = app.deployed.current()?;
    let rift = d.ir.rift_of(egg)?;
    let secret = s3_secret(app, &r.id);
    let host = rift
        .address
        .split_once("://")
        .map_or(rift.address.as_str(), |(_, h)| h);
    Some(CacheConfig {
        server_address: host.trim_end_matches('/').to_string(),
        bucket: rift.bucket.clone(),
        path: Some(egg.name.clone()),
        access_key: r.id.clone(),
        secret_key: secret.expose().to_string(),
        insecure: !rift.tls(),
        ca_pem: rift.tls_ca.clone(),
        docker_host: rift.docker_address.clone(),
        docker_token: rift
            .docker_proxy
            .then(|| format!("{}.{}", r.id, secret.expose())),
    })
}
