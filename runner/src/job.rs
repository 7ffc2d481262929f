//! Self-management jobs (`gosling runner --job NAME`): a cron Job's script, run once with
//! its environment and its timeout.
//!
//! The script is written to the runner's folder (mode 0700) and run with `sh`, or directly
//! when it starts with `#!` (its own interpreter). It runs in a process group of its own;
//! at the timeout the group gets SIGTERM and, 5 s later, SIGKILL. Standard output and error
//! are passed on to runner mode's log and their last 4 KiB kept for the result. The
//! runner's credential is not passed on to the script.

use crate::agent::WITHHELD_ENV;
use chrono::Utc;
use gosling_api::{JobAssignment, JobResult};
use std::collections::VecDeque;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most output a result carries.
pub const TAIL: usize = 4096;
/// Between SIGTERM and SIGKILL at the timeout.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The job could not be started.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Writing the script failed.
    #[error("writing the script of job `{job}` to {path}: {source}")]
    Write {
        /// The job.
        job: String,
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Starting it failed.
    #[error("starting job `{job}`: {source}")]
    Spawn {
        /// The job.
        job: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The last `TAIL` bytes of a stream of output.
#[derive(Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(TAIL);
        self.0.drain(..excess);
    }
}

/// The end of `bytes` as text of at most [`TAIL`] bytes (invalid UTF-8 replaced, cut on a
/// character boundary).
pub fn tail_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut start = text.len().saturating_sub(TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

async fn collect(mut stream: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>, job: String) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut t) = tail.lock() {
            t.push(&buf[..n]);
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                tracing::info!(target: "job", "{job}: {}", String::from_utf8_lossy(&line));
                line.clear();
            } else if line.len() < 16 * 1024 {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        tracing::info!(target: "job", "{job}: {}", String::from_utf8_lossy(&line));
    }
}

fn signal_group(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) on the group our unreaped child leads.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Runs `job` in `work_dir` and says how it ended; `stop` resolving (SIGTERM, SIGINT)
/// stops it as the timeout does, reported as a failure.
pub async fn run(
    job: &JobAssignment,
    work_dir: &Path,
    stop: impl std::future::Future<Output = ()>,
) -> Result<JobResult, JobError> {
    let started_at = Utc::now();
    let path = work_dir.join("job-script");
    let write = |source| JobError::Write {
        job: job.name.clone(),
        path: path.clone(),
        source,
    };
    let _ = std::fs::remove_file(&path);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)
            .map_err(write)?;
        f.write_all(job.script.as_bytes()).map_err(write)?;
    }
    let mut cmd = if job.script.starts_with("#!") {
        tokio::process::Command::new(&path)
    } else {
        let mut c = tokio::process::Command::new("sh");
        c.arg(&path);
        c
    };
    cmd.current_dir(work_dir)
        .envs(&job.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for k in WITHHELD_ENV {
        cmd.env_remove(k);
    }
    // A file just written may be briefly "busy" (ETXTBSY) while another thread forks.
    let mut attempt = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(JobError::Spawn {
                    job: job.name.clone(),
                    source,
                })
            }
        }
    };
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    tracing::info!("job `{}` started (pid {pid})", job.name);
    let tail = Arc::new(Mutex::new(Tail::default()));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(collect(out, tail.clone(), job.name.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(collect(err, tail.clone(), job.name.clone())));
    }
    let limit = Duration::from_secs(job.timeout_s);
    // Some(status) when it ended by itself; None when it is to be stopped.
    let (ended, timed_out) = tokio::select! {
        status = child.wait() => (Some(status), false),
        _ = tokio::time::sleep(limit) => {
            tracing::warn!(
                "job `{}` ran past its timeout of {}s: stopping it",
                job.name,
                job.timeout_s
            );
            (None, true)
        }
        _ = stop => {
            tracing::warn!("job `{}` stopped by a signal", job.name);
            (None, false)
        }
    };
    let status = match ended {
        Some(status) => status,
        None => {
            signal_group(pid, libc::SIGTERM);
            match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    signal_group(pid, libc::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Whatever the script left running in its group goes too.
    signal_group(pid, libc::SIGKILL);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    let _ = std::fs::remove_file(&path);
    let exit_code = status.ok().and_then(|s| s.code());
    let output_tail = tail
        .lock()
        .map(|t| tail_text(&t.0.iter().copied().collect::<Vec<u8>>()))
        .unwrap_or_default();
    let success = !timed_out && exit_code == Some(0);
    tracing::info!(
        "job `{}` {}",
        job.name,
        match (success, timed_out, exit_code) {
            (true, _, _) => "succeeded".to_string(),
            (_, true, _) => "timed out".to_string(),
            (_, _, Some(c)) => format!("failed with exit status {c}"),
            _ => "was killed by a signal".to_string(),
        }
    );
    Ok(JobResult {
        job: job.name.clone(),
        success,
        exit_code,
        timed_out,
        output_tail,
        started_at,
        finished_at: Utc::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_end_on_a_character_boundary() {
        let mut t = Tail::default();
        t.push(&[b'a'; 5000]);
        t.push("é".repeat(10).as_bytes());
        assert_eq!(t.0.len(), TAIL);
        let text = tail_text(&t.0.iter().copied().collect::<Vec<_>>());
        assert!(text.len() <= TAIL && text.ends_with("éé"), "{text}");
        // Cut inside a character: the partial one is replaced, the result stays short.
        let cut = tail_text(&"é".repeat(3000).as_bytes()[1..]);
        assert!(cut.len() <= TAIL, "{}", cut.len());
    }
}
