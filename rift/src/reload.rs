//! Reloading configuration files while serving: on `SIGHUP`, and when a file changes
//! (polled). The auth file and the TLS certificate use it; a failed reload keeps what is in
//! force.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::metrics::Metrics;

/// A file's modification time and length: a change of either means "reload".
pub type Stamp = Option<(SystemTime, u64)>;

/// The stamp of `path` (`None` when it cannot be read).
pub fn file_stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Something loaded from files that can be loaded again while serving.
pub trait Reloadable: Send + Sync {
    /// What it is, for logs (`auth file`, `TLS certificate`).
    fn name(&self) -> &'static str;
    /// Loads it again now; on error, what was in force stays.
    fn reload(&self) -> Result<(), String>;
    /// Loads it again when its files changed since the last load.
    fn reload_if_changed(&self) -> Option<Result<(), String>>;
    /// Its counters of successful and failed reloads.
    fn counters<'m>(&self, metrics: &'m Metrics) -> (&'m AtomicU64, &'m AtomicU64);
}

/// Reloads `targets` on `SIGHUP` and when their files change (polled every `interval`) until
/// `shutdown` fires.
pub fn spawn_reloader(
    targets: Vec<Arc<dyn Reloadable>>,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; relying on file polling");
                None
            }
        };
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
                _ = tick.tick() => false,
            };
            for t in &targets {
                let result = if forced {
                    tracing::info!(what = t.name(), "SIGHUP: reloading");
                    Some(t.reload())
                } else {
                    t.reload_if_changed()
                };
                let (ok, failed) = t.counters(&metrics);
                match result {
                    Some(Ok(())) => Metrics::inc(ok),
                    Some(Err(e)) => {
                        Metrics::inc(failed);
                        tracing::error!(what = t.name(), error = %e, "reload failed; keeping what is in force");
                    }
                    None => {}
                }
            }
        }
    })
}
