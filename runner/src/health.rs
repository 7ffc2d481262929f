//! The host's resource use for heartbeats, from `/proc` and `statvfs(3)`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// CPU, memory and disk use, in percent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// CPU busy since the previous sample.
    pub cpu: f64,
    /// Memory in use (total minus available).
    pub memory: f64,
    /// Disk in use on the runner's folder's file system (as `df` counts it).
    pub disk: f64,
}

/// Samples [`Usage`]; CPU use is measured between consecutive samples.
#[derive(Debug)]
pub struct Sampler {
    disk_path: PathBuf,
    previous: Option<(u64, u64)>,
}

/// (busy, total) jiffies from the first line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is already in user).
    let total: u64 = nums.iter().take(8).fold(0u64, |a, b| a.saturating_add(*b));
    let idle = nums[3].saturating_add(nums.get(4).copied().unwrap_or(0));
    Some((total.saturating_sub(idle), total))
}

/// Memory in use, percent, from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<f64> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| percent(total - available, total))
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        (part / whole * 100.0).clamp(0.0, 100.0)
    }
}

fn disk_use(path: &Path) -> Option<f64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path and `st` a zeroed struct statvfs fills in.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        st
    };
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    Some(percent(used, used + st.f_bavail as f64))
}

impl Sampler {
    /// A sampler measuring disk use where `disk_path` lives.
    pub fn new(disk_path: &Path) -> Sampler {
        Sampler {
            disk_path: disk_path.to_path_buf(),
            previous: None,
        }
    }

    /// Measures now (zero for what cannot be read).
    pub fn sample(&mut self) -> Usage {
        let cpu = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t))
            .map(|(busy, total)| {
                let (pb, pt) = self.previous.unwrap_or((0, 0));
                self.previous = Some((busy, total));
                percent(
                    busy.saturating_sub(pb) as f64,
                    total.saturating_sub(pt) as f64,
                )
            })
            .unwrap_or(0.0);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo(&t))
            .unwrap_or(0.0);
        let disk = disk_use(&self.disk_path).unwrap_or(0.0);
        Usage { cpu, memory, disk }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_proc_stat(stat), Some((150, 1000)));
        assert_eq!(parse_proc_stat("cpu  x y\n"), None);
        assert_eq!(parse_proc_stat(""), None);
        let mem = "MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_meminfo(mem), Some(75.0));
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
    }

    #[test]
    fn this_machine_can_be_sampled() {
        let mut s = Sampler::new(Path::new("/"));
        s.sample();
        let u = s.sample();
        for v in [u.cpu, u.memory, u.disk] {
            assert!((0.0..=100.0).contains(&v), "{u:?}");
        }
        assert!(u.memory > 0.0 && u.disk > 0.0, "{u:?}");
    }
}
