//! Running the `tofu` executable: one command in one workspace directory, with a clean
//! environment, a time limit, and bounded output.
//!
//! The environment is built from nothing: the variables named in [`Tofu::inherit`] (taken
//! from this process when set: PATH, HOME, proxies, certificates, and the AWS and Yandex
//! Cloud credential variables by default), OpenTofu's automation settings
//! (`TF_IN_AUTOMATION`, `TF_INPUT=0`, `CHECKPOINT_DISABLE`, `TF_CLI_CONFIG_FILE` = the
//! workspace's `.tofurc`), the plain [`Tofu::env`], then the secrets ([`Tofu::secrets`]:
//! backend and provider credentials, `TF_ENCRYPTION`) and a command's own secret variables
//! (`TF_VAR_user_data`). Secrets exist only in the child's environment: they are never
//! written to a file, never logged, and removed from any output kept in an error.

use crate::error::{classify, TofuError};
use gosling_state::SecretString;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The variables passed through from this process by default (when set).
pub const DEFAULT_INHERIT: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "YC_TOKEN",
    "YC_SERVICE_ACCOUNT_KEY_FILE",
];

/// How much of a command's output is kept for errors: the first part and the last part.
pub const OUTPUT_HEAD: usize = 2 * 1024;
/// The last part kept.
pub const OUTPUT_TAIL: usize = 14 * 1024;
/// The most JSON a command may print (`show -json` of a state).
pub const JSON_LIMIT: usize = 64 * 1024 * 1024;

/// How long a stopped command is given to release its state lock before it is killed.
const GRACE: Duration = Duration::from_secs(15);

/// The `tofu` executable and how it is run.
#[derive(Clone)]
pub struct Tofu {
    /// The executable.
    pub binary: PathBuf,
    /// Variables passed through from this process when set.
    pub inherit: Vec<String>,
    /// Plain (non-secret) variables.
    pub env: BTreeMap<String, String>,
    /// Secret variables: credentials, `TF_ENCRYPTION`.
    pub secrets: BTreeMap<String, SecretString>,
    /// The longest one command may run.
    pub timeout: Duration,
    /// How long a command waits for the state lock (`-lock-timeout`).
    pub lock_timeout: Duration,
}

impl std::fmt::Debug for Tofu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tofu")
            .field("binary", &self.binary)
            .field("inherit", &self.inherit)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a command printed (bounded) and how it ended.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit status (-1: killed by a signal).
    pub code: i32,
    /// Standard output (whole up to the limit the command was run with).
    pub stdout: String,
    /// Standard error, bounded like [`OUTPUT_HEAD`] + [`OUTPUT_TAIL`].
    pub stderr: String,
}

/// Keeps the first `head` and the last `tail` bytes of a stream.
struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_max: usize,
    tail_max: usize,
    total: usize,
}

impl Capture {
    fn new(head_max: usize, tail_max: usize) -> Capture {
        Capture {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_max,
            tail_max,
            total: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len();
        let room = self.head_max.saturating_sub(self.head.len());
        let n = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        self.tail.extend(bytes);
        while self.tail.len() > self.tail_max {
            self.tail.pop_front();
        }
    }

    fn truncated(&self) -> bool {
        self.total > self.head.len() + self.tail.len()
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        let kept = self.head.len() + self.tail.len();
        if self.total > kept {
            s.push_str(&format!("\n[… {} bytes left out …]\n", self.total - kept));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        s.push_str(&String::from_utf8_lossy(&tail));
        s
    }
}

async fn capture(mut r: impl AsyncRead + Unpin, head: usize, tail: usize) -> Capture {
    let mut c = Capture::new(head, tail);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => c.push(&buf[..n]),
        }
    }
    c
}

impl Tofu {
    /// `binary`, run with the [`DEFAULT_INHERIT`] variables, 30 minutes per command and a
    /// 5-minute lock wait.
    pub fn new(binary: impl Into<PathBuf>) -> Tofu {
        Tofu {
            binary: binary.into(),
            inherit: DEFAULT_INHERIT.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            timeout: Duration::from_secs(30 * 60),
            lock_timeout: Duration::from_secs(5 * 60),
        }
    }

    /// Removes every secret value (and this process's copies of the inherited credential
    /// variables) from `text`.
    pub fn redact(&self, text: &str, extra: &[(&str, &SecretString)]) -> String {
        let mut out = text.to_string();
        let mut values: Vec<String> = self
            .secrets
            .values()
            .chain(extra.iter().map(|(_, v)| *v))
            .map(|s| s.expose().to_string())
            .collect();
        for name in &self.inherit {
            if name.contains("SECRET") || name.contains("TOKEN") || name.contains("KEY_ID") {
                if let Ok(v) = std::env::var(name) {
                    values.push(v);
                }
            }
        }
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for v in values {
            // Short values would match ordinary words; they are not credentials.
            if v.len() >= 8 {
                out = out.replace(&v, "[redacted]");
            }
        }
        out
    }

    fn command(
        &self,
        dir: &Path,
        args: &[String],
        extra: &[(&str, &SecretString)],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.env_clear();
        for name in &self.inherit {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", dir.join(".tofurc"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in &self.secrets {
            cmd.env(k, v.expose());
        }
        for (k, v) in extra {
            cmd.env(k, v.expose());
        }
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `tofu ARGS` in `dir`. Exit statuses in `ok` are success; any other is
    /// [`TofuError::Failed`] with the (bounded, redacted) output and its [`classify`]
    /// verdict. Standard output is kept whole up to `stdout_limit` bytes (beyond it:
    /// [`TofuError::Output`]).
    pub async fn run(
        &self,
        dir: &Path,
        args: &[String],
        extra: &[(&str, &SecretString)],
        ok: &[i32],
        stdout_limit: usize,
    ) -> Result<Output, TofuError> {
        let command = args.first().cloned().unwrap_or_default();
        let mut child =
            self.command(dir, args, extra)
                .spawn()
                .map_err(|source| TofuError::Spawn {
                    binary: self.binary.clone(),
                    source,
                })?;
        tracing::debug!(command = %command, dir = %dir.display(), "running tofu");
        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(capture(s, stdout_limit.max(OUTPUT_HEAD), OUTPUT_TAIL)));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(capture(s, OUTPUT_HEAD, OUTPUT_TAIL)));
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(TofuError::io(&self.binary, e)),
            Err(_) => {
                // Ask it to stop first (it then releases the state lock), kill after a grace.
                #[cfg(unix)]
                if let Some(pid) = child.id() {
                    // SAFETY: sending a signal to our own child process.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGINT);
                    }
                }
                if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return Err(TofuError::Timeout {
                    command,
                    seconds: self.timeout.as_secs(),
                });
            }
        };
        // Provider plugins it started may hold the pipes a little longer; never wait forever.
        let join = |h: Option<tokio::task::JoinHandle<Capture>>| async move {
            match h {
                Some(h) => tokio::time::timeout(Duration::from_secs(10), h)
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            }
        };
        let stdout = join(out).await;
        let stderr = join(err).await;
        let code = status.code().unwrap_or(-1);
        let stderr_text = self.redact(&stderr.map(|c| c.text()).unwrap_or_default(), extra);
        if !ok.contains(&code) {
            let mut output = stderr_text;
            if let Some(o) = &stdout {
                let tail = o.text();
                let tail: String = tail
                    .chars()
                    .rev()
                    .take(OUTPUT_TAIL / 4)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if !tail.trim().is_empty() {
                    output = format!("{}\n{}", self.redact(&tail, extra), output);
                }
            }
            let output = output.trim().to_string();
            let verdict = classify(&output);
            tracing::warn!(command = %command, code, "tofu failed");
            return Err(TofuError::Failed {
                command,
                code,
                output,
                verdict,
            });
        }
        let stdout = match stdout {
            Some(c) if c.truncated() => {
                return Err(TofuError::Output {
                    command,
                    message: format!("more than {stdout_limit} bytes"),
                })
            }
            Some(c) => self.redact(&c.text(), extra),
            None => String::new(),
        };
        Ok(Output {
            code,
            stdout,
            stderr: stderr_text,
        })
    }

    fn lock_arg(&self) -> String {
        format!("-lock-timeout={}s", self.lock_timeout.as_secs())
    }

    /// `tofu version -json`: the version.
    pub async fn version(&self, dir: &Path) -> Result<String, TofuError> {
        let out = self
            .run(dir, &args(&["version", "-json"]), &[], &[0], 64 * 1024)
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| TofuError::Output {
                command: "version".into(),
                message: e.to_string(),
            })?;
        Ok(v["terraform_version"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// `tofu init -reconfigure` (the backend settings are the rendered ones, never migrated
    /// from an earlier configuration), with `-lockfile=readonly` when the lock file must
    /// not change.
    pub async fn init(&self, dir: &Path, lock_readonly: bool) -> Result<(), TofuError> {
        let mut a = args(&["init", "-input=false", "-no-color", "-reconfigure"]);
        if lock_readonly {
            a.push("-lockfile=readonly".into());
        }
        self.run(dir, &a, &[], &[0], OUTPUT_HEAD).await.map(|_| ())
    }

    /// `tofu plan -out=PLAN` (`-destroy` for a destroy plan); whether anything changes.
    pub async fn plan(
        &self,
        dir: &Path,
        plan_file: &str,
        destroy: bool,
        vars: &[(&str, &SecretString)],
    ) -> Result<bool, TofuError> {
        let mut a = args(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
        a.push(self.lock_arg());
        a.push(format!("-out={plan_file}"));
        if destroy {
            a.push("-destroy".into());
        }
        let out = self.run(dir, &a, vars, &[0, 2], OUTPUT_HEAD).await?;
        Ok(out.code == 2)
    }

    /// `tofu apply PLAN`: applies a saved plan (no variables needed: they are in it).
    pub async fn apply_plan(&self, dir: &Path, plan_file: &str) -> Result<(), TofuError> {
        let mut a = args(&["apply", "-input=false", "-no-color"]);
        a.push(self.lock_arg());
        a.push(plan_file.to_string());
        self.run(dir, &a, &[], &[0], OUTPUT_HEAD).await.map(|_| ())
    }

    /// `tofu apply -refresh-only -auto-approve`: reads every resource back from the cloud.
    pub async fn refresh(
        &self,
        dir: &Path,
        vars: &[(&str, &SecretString)],
    ) -> Result<(), TofuError> {
        let mut a = args(&[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ]);
        a.push(self.lock_arg());
        self.run(dir, &a, vars, &[0], OUTPUT_HEAD).await.map(|_| ())
    }

    /// `tofu destroy -auto-approve`.
    pub async fn destroy(
        &self,
        dir: &Path,
        vars: &[(&str, &SecretString)],
    ) -> Result<(), TofuError> {
        let mut a = args(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        a.push(self.lock_arg());
        self.run(dir, &a, vars, &[0], OUTPUT_HEAD).await.map(|_| ())
    }

    /// `tofu show -json`: the state.
    pub async fn show(&self, dir: &Path) -> Result<serde_json::Value, TofuError> {
        let out = self
            .run(
                dir,
                &args(&["show", "-json", "-no-color"]),
                &[],
                &[0],
                JSON_LIMIT,
            )
            .await?;
        serde_json::from_str(&out.stdout).map_err(|e| TofuError::Output {
            command: "show".into(),
            message: e.to_string(),
        })
    }

    /// `tofu output -json`: output name → value.
    pub async fn outputs(
        &self,
        dir: &Path,
    ) -> Result<BTreeMap<String, serde_json::Value>, TofuError> {
        let out = self
            .run(
                dir,
                &args(&["output", "-json", "-no-color"]),
                &[],
                &[0],
                JSON_LIMIT,
            )
            .await?;
        let v: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&out.stdout).map_err(|e| TofuError::Output {
                command: "output".into(),
                message: e.to_string(),
            })?;
        Ok(v.into_iter()
            .map(|(k, o)| (k, o["value"].clone()))
            .collect())
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Capture::new(4, 4);
        c.push(b"abcdefghij");
        assert_eq!(c.text(), "abcd\n[… 2 bytes left out …]\nghij");
        assert!(c.truncated());
        let mut c = Capture::new(4, 4);
        c.push(b"abc");
        assert_eq!(c.text(), "abc");
    }

    #[test]
    fn redact_removes_secrets() {
        let mut t = Tofu::new("tofu");
        t.inherit.clear();
        t.secrets.insert(
            "AWS_SECRET_ACCESS_KEY".into(),
            SecretString::new("s3cr3t-value-123"),
        );
        let extra = SecretString::new("another-secret-456");
        let text = "x s3cr3t-value-123 y another-secret-456 z";
        assert_eq!(
            t.redact(text, &[("TF_VAR_user_data", &extra)]),
            "x [redacted] y [redacted] z"
        );
    }
}
