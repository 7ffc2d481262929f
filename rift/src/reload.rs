//! Reloading configuration files while serving: on `SIGHUP`, and when a file changes
//! (polled). The auth file and the TLS certificate use it; a failed reload keeps what is in
//! force.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::metrics::Metrics;

/// A file's modification time and length: a change of either means "reload".
type Stamp = Option<(SystemTime, u64)>;

fn file_stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The files something was loaded from, and how they looked at the last attempt.
#[derive(Debug)]
pub struct Watched {
    paths: Vec<PathBuf>,
    last: Mutex<Vec<Stamp>>,
}

impl Watched {
    /// Watches `paths` from how they look now (call just before loading them).
    pub fn new(paths: Vec<PathBuf>) -> Watched {
        let last = paths.iter().map(|p| file_stamp(p)).collect();
        Watched {
            paths,
            last: Mutex::new(last),
        }
    }

    /// True once per change: every file is there and one of them changed since the last
    /// attempt. A file written in two steps fails to load between them and loads after the
    /// second; a broken file is reported once, not at every poll.
    pub fn changed(&self) -> bool {
        let now: Vec<Stamp> = self.paths.iter().map(|p| file_stamp(p)).collect();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if now.iter().any(Option::is_none) || now == *last {
            return false;
        }
        *last = now;
        true
    }

    /// Records how the files look now (after a load that did not go through
    /// [`Watched::changed`], e.g. on `SIGHUP`).
    pub fn mark(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            self.paths.iter().map(|p| file_stamp(p)).collect();
    }
}

/// Something loaded from files that can be loaded again while serving.
pub trait Reloadable: Send + Sync {
    /// What it is, for logs (`auth file`, `TLS certificate`).
    fn name(&self) -> &'static str;
    /// Its files.
    fn watched(&self) -> &Watched;
    /// Loads it again now; on error, what was in force stays.
    fn reload(&self) -> Result<(), String>;
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
                if forced {
                    tracing::info!(what = t.name(), "SIGHUP: reloading");
                    t.watched().mark();
                } else if !t.watched().changed() {
                    continue;
                }
                let (ok, failed) = t.counters(&metrics);
                match t.reload() {
                    Ok(()) => Metrics::inc(ok),
                    Err(e) => {
                        Metrics::inc(failed);
                        tracing::error!(what = t.name(), error = %e, "reload failed; keeping what is in force");
                    }
                }
            }
        }
    })
}
