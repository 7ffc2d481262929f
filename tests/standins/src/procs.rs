//! Local processes a test started, found through /proc by the folder they work in.

use std::path::Path;

/// Processes (other than this one) whose command line or environment names `dir`: the
/// services, runner-mode processes and their agents.
pub fn of(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned().into_bytes();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            ["cmdline", "environ"].iter().any(|f| {
                std::fs::read(format!("/proc/{pid}/{f}"))
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_slice()))
            }) && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Kills (SIGKILL) every process of `dir`: what a test leaves running when it ends early.
pub fn kill_all(dir: &Path) {
    for pid in of(dir) {
        // SAFETY: plain kill(2) on a process found working in the test's own folder.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
