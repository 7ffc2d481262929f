//! Process-wide counters, rendered in the Prometheus text exposition format at `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by every part of the server. All fields are monotonic counters except where
/// noted; they are plain atomics so that updating them never blocks a request.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Object reads answered from the local disk.
    pub hits: AtomicU64,
    /// Object reads that found nothing locally (before any origin fetch).
    pub misses: AtomicU64,
    /// Body bytes received and stored (uploads and origin fills).
    pub bytes_in: AtomicU64,
    /// Body bytes sent to clients from the cache.
    pub bytes_out: AtomicU64,
    /// Objects removed to respect the size limit or the maximum age.
    pub evictions: AtomicU64,
    /// Requests refused because their credentials were missing or invalid.
    pub auth_failures: AtomicU64,
    /// Requests refused because their client had too many recent auth failures.
    pub rate_limited: AtomicU64,
    /// Connections dropped because their TLS handshake failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// TLS certificate reloads that succeeded.
    pub tls_reloads: AtomicU64,
    /// TLS certificate reloads that failed (the previous certificate stays in force).
    pub tls_reload_errors: AtomicU64,
    /// Uploads that did not complete (cut connection, bad checksum, too large).
    pub uploads_aborted: AtomicU64,
    /// Uploads committed to the cache.
    pub uploads_committed: AtomicU64,
    /// Objects fetched from the pull-through origin.
    pub origin_fetches: AtomicU64,
    /// Origin fetches that failed (the request was then answered as a miss).
    pub origin_errors: AtomicU64,
    /// Requests forwarded by the Docker API proxy.
    pub docker_requests: AtomicU64,
    /// Docker requests whose upstream could not be reached.
    pub docker_upstream_errors: AtomicU64,
    /// Successful reloads of the auth file.
    pub auth_reloads: AtomicU64,
    /// Failed reloads of the auth file (the previous credentials stay in force).
    pub auth_reload_errors: AtomicU64,
    /// HTTP requests received on all listeners.
    pub requests: AtomicU64,
    /// Runner lookups sent to MotherGoose.
    pub fleet_lookups: AtomicU64,
    /// Runner lookups answered from the cache of MotherGoose's answers.
    pub fleet_cache_hits: AtomicU64,
    /// MotherGoose answers "no such live runner".
    pub fleet_denied: AtomicU64,
    /// Runner lookups that failed (MotherGoose unreachable, refusing Rift's token, backed off).
    pub fleet_errors: AtomicU64,
    /// Lookups of unknown runners not sent because of the rate limit.
    pub fleet_throttled: AtomicU64,
}

/// A point-in-time view of the store, rendered as gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// Number of objects in the cache.
    pub objects: u64,
    /// Bytes used on disk by cached objects (headers included).
    pub bytes: u64,
    /// The configured size limit.
    pub max_bytes: u64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Increments a counter by one.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders all counters and the given gauges in the Prometheus text format.
    pub fn render(&self, gauges: StoreGauges) -> String {
        let counters: [(&str, &str, &AtomicU64); 24] = [
            (
                "rift_cache_hits_total",
                "Object reads served from the local cache.",
                &self.hits,
            ),
            (
                "rift_cache_misses_total",
                "Object reads not found in the local cache.",
                &self.misses,
            ),
            (
                "rift_bytes_in_total",
                "Body bytes stored (uploads and origin fills).",
                &self.bytes_in,
            ),
            (
                "rift_bytes_out_total",
                "Body bytes served from the cache.",
                &self.bytes_out,
            ),
            (
                "rift_evictions_total",
                "Objects evicted by size limit or maximum age.",
                &self.evictions,
            ),
            (
                "rift_auth_failures_total",
                "Requests with missing or invalid credentials.",
                &self.auth_failures,
            ),
            (
                "rift_tls_handshake_failures_total",
                "Connections whose TLS handshake failed or timed out.",
                &self.tls_handshake_failures,
            ),
            (
                "rift_tls_reloads_total",
                "TLS certificate reloads that succeeded.",
                &self.tls_reloads,
            ),
            (
                "rift_tls_reload_errors_total",
                "TLS certificate reloads that failed (the previous one stays in force).",
                &self.tls_reload_errors,
            ),
            (
                "rift_rate_limited_total",
                "Requests refused after repeated auth failures.",
                &self.rate_limited,
            ),
            (
                "rift_uploads_aborted_total",
                "Uploads discarded before commit.",
                &self.uploads_aborted,
            ),
            (
                "rift_uploads_committed_total",
                "Uploads committed to the cache.",
                &self.uploads_committed,
            ),
            (
                "rift_origin_fetches_total",
                "Objects fetched from the pull-through origin.",
                &self.origin_fetches,
            ),
            (
                "rift_origin_errors_total",
                "Failed origin fetches (answered as misses).",
                &self.origin_errors,
            ),
            (
                "rift_docker_requests_total",
                "Requests forwarded by the Docker API proxy.",
                &self.docker_requests,
            ),
            (
                "rift_docker_upstream_errors_total",
                "Docker requests whose upstream failed.",
                &self.docker_upstream_errors,
            ),
            (
                "rift_auth_reloads_total",
                "Successful reloads of the auth file.",
                &self.auth_reloads,
            ),
            (
                "rift_auth_reload_errors_total",
                "Failed reloads of the auth file.",
                &self.auth_reload_errors,
            ),
            (
                "rift_http_requests_total",
                "HTTP requests received.",
                &self.requests,
            ),
            (
                "rift_fleet_lookups_total",
                "Runner lookups sent to MotherGoose.",
                &self.fleet_lookups,
            ),
            (
                "rift_fleet_cache_hits_total",
                "Runner lookups answered from cached MotherGoose answers.",
                &self.fleet_cache_hits,
            ),
            (
                "rift_fleet_denied_total",
                "MotherGoose answers that a runner is not live.",
                &self.fleet_denied,
            ),
            (
                "rift_fleet_errors_total",
                "Runner lookups that failed (MotherGoose unreachable or refusing Rift).",
                &self.fleet_errors,
            ),
            (
                "rift_fleet_throttled_total",
                "Lookups of unknown runners refused by the rate limit.",
                &self.fleet_throttled,
            ),
        ];
        let mut out = String::with_capacity(4096);
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let gauges: [(&str, &str, u64); 3] = [
            (
                "rift_cache_objects",
                "Objects currently cached.",
                gauges.objects,
            ),
            (
                "rift_cache_size_bytes",
                "Bytes currently used by cached objects.",
                gauges.bytes,
            ),
            (
                "rift_cache_max_size_bytes",
                "Configured cache size limit.",
                gauges.max_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}
