//! The local processes of a system: found through /proc by the folder they work in.

pub use gosling_standins::procs::of;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Processes of `dir` whose command line contains `word` (e.g. `runner` and an id).
pub fn with_arg(dir: &Path, word: &str) -> Vec<i32> {
    of(dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|b| String::from_utf8_lossy(&b).split('\0').any(|a| a == word))
        })
        .collect()
}

/// Sends `signal` and waits (up to 30 s, then SIGKILL) for the child to end.
pub fn signal_and_reap(mut child: Child, signal: i32) {
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, signal) };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Field `field` (`VmRSS`, `RssAnon`, …) of `pid`'s /proc status in KiB, if it runs.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
