//! Resource samples of MotherGoose and UglyFox while a benchmark runs: memory and open
//! file descriptors, for peaks and (in a soak) the memory slope after warm-up.
//!
//! Two measures of memory: resident (VmRSS) counts the executable's own pages, which are
//! read in from the file as code paths are first taken and are shared, bounded by the
//! binary; private (RssAnon: heap, stacks, anonymous maps) is what a leak grows. Part of
//! MotherGoose's private memory is SQLite's page caches, which fill up to their bound as
//! the databases grow; read from its `/metrics`, it is taken out in `OutsideSqlite`.

use crate::procs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Resident memory, KiB.
    pub resident_kib: u64,
    /// Private resident memory (anonymous pages), KiB.
    pub private_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Memory SQLite holds, KiB (MotherGoose's gauge; 0 when not read).
    pub sqlite_kib: u64,
}

/// Which memory figure a summary is of.
#[derive(Clone, Copy, Debug)]
pub enum Memory {
    /// VmRSS.
    Resident,
    /// RssAnon.
    Private,
    /// RssAnon less what SQLite holds.
    OutsideSqlite,
}

impl Usage {
    fn of(pid: u32) -> Usage {
        Usage {
            resident_kib: procs::status_kib(pid, "VmRSS").unwrap_or(0),
            private_kib: procs::status_kib(pid, "RssAnon").unwrap_or(0),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
            sqlite_kib: 0,
        }
    }

    fn kib(&self, m: Memory) -> u64 {
        match m {
            Memory::Resident => self.resident_kib,
            Memory::Private => self.private_kib,
            Memory::OutsideSqlite => self.private_kib.saturating_sub(self.sqlite_kib),
        }
    }
}

/// One sample: seconds since the start, then the usage of MotherGoose and UglyFox.
pub type Sample = (f64, [Usage; 2]);

/// Samples taken every interval until [`finish`](Sampler::finish).
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pids` (MotherGoose, UglyFox) every `every`; with `metrics` (URL
    /// and admin token), MotherGoose's SQLite memory too.
    pub fn start(
        pids: [Option<u32>; 2],
        every: Duration,
        metrics: Option<(String, String)>,
    ) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            loop {
                let mut one = pids.map(|p| p.map_or(Usage::default(), Usage::of));
                if let Some((url, token)) = &metrics {
                    let bytes = crate::gauge(url, token, "mothergoose_sqlite_memory_bytes").await;
                    one[0].sqlite_kib = bytes.unwrap_or(0.0) as u64 / 1024;
                }
                out.lock()
                    .unwrap()
                    .push((start.elapsed().as_secs_f64(), one));
                tokio::time::sleep(every).await;
            }
        });
        Sampler { samples, task }
    }

    /// Stops sampling; the samples.
    pub fn finish(self) -> Vec<Sample> {
        self.task.abort();
        self.samples.lock().unwrap().clone()
    }
}

/// The largest figure `m` (KiB) of service `i` (0 MotherGoose, 1 UglyFox).
pub fn peak_kib(samples: &[Sample], i: usize, m: Memory) -> u64 {
    samples.iter().map(|s| s.1[i].kib(m)).max().unwrap_or(0)
}

/// The least-squares slope of service `i`'s figure `m` in MiB per hour over the samples
/// after the first `warmup` fraction of them.
pub fn slope_mib_per_hour(samples: &[Sample], i: usize, m: Memory, warmup: f64) -> f64 {
    let skip = (samples.len() as f64 * warmup) as usize;
    let pts: Vec<(f64, f64)> = samples[skip..]
        .iter()
        .map(|s| (s.0 / 3600.0, s.1[i].kib(m) as f64 / 1024.0))
        .collect();
    let n = pts.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let num: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// The mean of figure `m` (MiB, one decimal) of service `i` in each quarter of the
/// samples: growth that levels off shows as shrinking steps.
pub fn quarter_means_mib(samples: &[Sample], i: usize, m: Memory) -> Vec<f64> {
    samples
        .chunks(samples.len().div_ceil(4).max(1))
        .map(|c| {
            let kib = c.iter().map(|s| s.1[i].kib(m) as f64).sum::<f64>() / c.len() as f64;
            (kib / 1024.0 * 10.0).round() / 10.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, private_kib: u64) -> Sample {
        let u = Usage {
            resident_kib: private_kib + 10_240,
            private_kib,
            fds: 3,
            sqlite_kib: private_kib / 2,
        };
        (t, [u, Usage::default()])
    }

    #[test]
    fn the_slope_is_of_the_samples_after_warm_up() {
        // 1 MiB in the first (warm-up) hour, then flat; then a steady 2 MiB an hour.
        let flat: Vec<Sample> = [(0.0, 0), (3600.0, 1024), (7200.0, 1024), (10800.0, 1024)]
            .map(|(t, k)| at(t, k))
            .to_vec();
        assert_eq!(slope_mib_per_hour(&flat, 0, Memory::Private, 0.5), 0.0);
        let rising: Vec<Sample> = (0..10).map(|h| at(h as f64 * 3600.0, h * 2048)).collect();
        let s = slope_mib_per_hour(&rising, 0, Memory::Resident, 0.2);
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(peak_kib(&rising, 0, Memory::Private), 9 * 2048);
        assert_eq!(peak_kib(&rising, 0, Memory::OutsideSqlite), 9 * 1024);
        assert_eq!(
            quarter_means_mib(&flat, 0, Memory::Private),
            [0.0, 1.0, 1.0, 1.0]
        );
    }
}
