//! Resource samples of MotherGoose and UglyFox while a benchmark runs: resident memory and
//! open file descriptors, for peaks and (in a soak) the memory slope after warm-up.

use crate::procs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One sample: seconds since the start, then (RSS KiB, open fds) of MotherGoose and UglyFox.
pub type Sample = (f64, [(u64, usize); 2]);

/// Samples taken every interval until [`finish`](Sampler::finish).
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

impl Sampler {
    /// Starts sampling `pids` (MotherGoose, UglyFox) every `every`.
    pub fn start(pids: [Option<u32>; 2], every: Duration) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            loop {
                let one =
                    pids.map(|p| p.map_or((0, 0), |p| (procs::rss_kib(p).unwrap_or(0), fds(p))));
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

/// The largest RSS (KiB) of service `i` (0 MotherGoose, 1 UglyFox).
pub fn peak_kib(samples: &[Sample], i: usize) -> u64 {
    samples.iter().map(|s| s.1[i].0).max().unwrap_or(0)
}

/// The least-squares slope of service `i`'s RSS in MiB per hour over the samples after
/// the first `warmup` fraction of them.
pub fn slope_mib_per_hour(samples: &[Sample], i: usize, warmup: f64) -> f64 {
    let skip = (samples.len() as f64 * warmup) as usize;
    let pts: Vec<(f64, f64)> = samples[skip..]
        .iter()
        .map(|s| (s.0 / 3600.0, s.1[i].0 as f64 / 1024.0))
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
