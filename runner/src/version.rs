//! Keeping the agent's version in step with GitLab.
//!
//! **Mapping.** GitLab X.Y.* is served by gitlab-runner X.Y.*: the two are released together
//! each month with the same major and minor. An installed agent whose major.minor equals
//! GitLab's is left alone (whatever its patch); otherwise runner mode installs
//! gitlab-runner **X.Y.0**, the release published with GitLab X.Y — the download server is
//! a bucket without a listing runner mode could rely on, so it never guesses later patch
//! numbers. (`17.5.3-ee` → `v17.5.0`.)
//!
//! **Download.** `{base}/v{X.Y.0}/binaries/gitlab-runner-linux-{amd64|arm64}` and
//! `{base}/v{X.Y.0}/release.sha256` (https://, or http:// only to a loopback address).
//! The binary's SHA-256 must match its line in `release.sha256` (the `.asc` GPG signature
//! is not checked). It is written beside the agent, made executable (0755), must report
//! the expected version with `--version`, and only then replaces the agent by a rename;
//! the replaced binary is kept as `gitlab-runner.previous`.

use crate::client::{check_url, error_chain};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public download server of gitlab-runner releases.
pub const DEFAULT_DOWNLOAD_URL: &str = "https://gitlab-runner-downloads.s3.amazonaws.com";
/// The largest binary runner mode downloads.
const MAX_BINARY: u64 = 512 * 1024 * 1024;

/// Why the agent could not be checked or installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A version string runner mode cannot read.
    #[error("`{0}` is not a version number (X.Y.Z)")]
    BadVersion(String),
    /// No gitlab-runner build for this machine.
    #[error("gitlab-runner has no Linux build for the `{0}` architecture")]
    Arch(String),
    /// GitLab's version could not be learnt.
    #[error("asking GitLab for its version ({url}): {message}")]
    GitLab {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// `release.sha256` does not name the binary.
    #[error("{url} has no checksum for {file}")]
    NoChecksum {
        /// The checksum file's URL.
        url: String,
        /// The binary's name.
        file: String,
    },
    /// The binary is not the one the release lists.
    #[error("checksum mismatch for {url}: release.sha256 says {expected}, the download is {actual}; the current agent is kept")]
    Checksum {
        /// The binary's URL.
        url: String,
        /// What `release.sha256` says.
        expected: String,
        /// What was downloaded.
        actual: String,
    },
    /// The new binary does not run or reports another version.
    #[error("the downloaded agent does not report version {wanted} (it says: {found}); the current agent is kept")]
    NotRunnable {
        /// The version installed.
        wanted: String,
        /// What it said.
        found: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A gitlab-runner or GitLab version, major.minor.patch (suffixes such as `-ee` ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Reads `17.5.1`, `v17.5.1`, `17.5.1-ee`, `17.5` (patch 0).
    pub fn parse(text: &str) -> Result<Version, InstallError> {
        let bad = || InstallError::BadVersion(text.to_string());
        let t = text.trim().trim_start_matches('v');
        let core = t.split(|c: char| !(c.is_ascii_digit() || c == '.')).next();
        let mut parts = core.unwrap_or_default().split('.');
        let mut num = |required: bool| -> Result<u32, InstallError> {
            match parts.next() {
                Some(p) if !p.is_empty() => p.parse().map_err(|_| bad()),
                _ if required => Err(bad()),
                _ => Ok(0),
            }
        };
        Ok(Version {
            major: num(true)?,
            minor: num(true)?,
            patch: num(false)?,
        })
    }

    /// The gitlab-runner release runner mode installs for GitLab `self`: X.Y.0.
    pub fn agent_for_gitlab(self) -> Version {
        Version { patch: 0, ..self }
    }

    /// Whether an agent of version `self` serves GitLab `gitlab` (same major.minor).
    pub fn serves(self, gitlab: Version) -> bool {
        (self.major, self.minor) == (gitlab.major, gitlab.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// gitlab-runner's name for this machine's architecture.
pub fn arch() -> Result<&'static str, InstallError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        other => Err(InstallError::Arch(other.to_string())),
    }
}

/// The version in `gitlab-runner --version` output (`Version:      17.5.0`).
pub fn parse_version_output(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The version `agent --version` reports, or `None` when it is missing or does not run.
pub async fn installed_version(agent: &Path) -> Option<String> {
    if !agent.is_file() {
        return None;
    }
    // A file just written may be briefly "busy" (ETXTBSY) while another thread forks.
    for _ in 0..20 {
        let run = tokio::process::Command::new(agent)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Ok(out)) if out.status.success() => {
                return parse_version_output(&String::from_utf8_lossy(&out.stdout));
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => return None,
        }
    }
    None
}

/// GitLab's version: the one MotherGoose gave, else `GET {gitlab_url}/api/v4/version`
/// (unauthenticated: GitLab instances that require a token for it answer 401, and then
/// only MotherGoose's value can be used).
pub async fn gitlab_version(
    http: &reqwest::Client,
    known: Option<&str>,
    gitlab_url: &str,
) -> Result<Version, InstallError> {
    if let Some(v) = known {
        return Version::parse(v);
    }
    let url = format!("{}/api/v4/version", gitlab_url.trim_end_matches('/'));
    let err = |message: String| InstallError::GitLab {
        url: url.clone(),
        message,
    };
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| err(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("status {}", resp.status())));
    }
    #[derive(serde::Deserialize)]
    struct V {
        version: String,
    }
    let v: V = resp.json().await.map_err(|e| err(e.to_string()))?;
    Version::parse(&v.version)
}

/// Downloads and installs gitlab-runner releases.
#[derive(Clone, Debug)]
pub struct Installer {
    http: reqwest::Client,
    base: String,
    agent: PathBuf,
}

/// The checksum `release.sha256` gives for `file` (`binaries/gitlab-runner-linux-amd64`).
pub fn checksum_for(sums: &str, file: &str) -> Option<String> {
    let base = file.rsplit('/').next().unwrap_or(file);
    sums.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let hash = parts.next()?;
        let name = parts
            .next()?
            .trim_start_matches('*')
            .trim_start_matches("./");
        let hex_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        (hex_ok && (name == file || name == base)).then(|| hash.to_ascii_lowercase())
    })
}

impl Installer {
    /// An installer downloading from `base` (checked like MotherGoose's URL) into `agent`.
    pub fn new(base: &str, agent: &Path) -> Result<Installer, crate::client::ApiError> {
        let url = check_url(base)?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(url.scheme() == "https")
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| crate::client::ApiError::Client(e.to_string()))?;
        Ok(Installer {
            http,
            base: base.trim_end_matches('/').to_string(),
            agent: agent.to_path_buf(),
        })
    }

    /// The HTTP client (also used to ask GitLab its version).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Where the replaced binary is kept.
    pub fn previous_path(&self) -> PathBuf {
        sibling(&self.agent, ".previous")
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, InstallError> {
        let err = |message: String| InstallError::Download {
            url: url.to_string(),
            message,
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| err(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(err(format!("status {}", resp.status())));
        }
        Ok(resp)
    }

    /// Downloads `version`, checks it and installs it in place of the agent (keeping the
    /// old one as `.previous`). On any error the agent file is untouched.
    pub async fn install(&self, version: Version) -> Result<(), InstallError> {
        let file = format!("binaries/gitlab-runner-linux-{}", arch()?);
        let release = format!("{}/v{version}", self.base);
        let sums_url = format!("{release}/release.sha256");
        let bin_url = format!("{release}/{file}");
        let sums = self
            .get(&sums_url)
            .await?
            .text()
            .await
            .map_err(|e| InstallError::Download {
                url: sums_url.clone(),
                message: e.to_string(),
            })?;
        let expected = checksum_for(&sums, &file).ok_or_else(|| InstallError::NoChecksum {
            url: sums_url.clone(),
            file: file.clone(),
        })?;
        let tmp = sibling(&self.agent, ".download");
        let result = self.download_to(&bin_url, &tmp, &expected, version).await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| InstallError::Io { what, path, source }
        };
        if self.agent.exists() {
            let prev = self.previous_path();
            let _ = std::fs::remove_file(&prev);
            if std::fs::hard_link(&self.agent, &prev).is_err() {
                std::fs::copy(&self.agent, &prev).map_err(io("keeping", &prev))?;
            }
        }
        std::fs::rename(&tmp, &self.agent).map_err(io("installing", &self.agent))
    }

    async fn download_to(
        &self,
        url: &str,
        tmp: &Path,
        expected: &str,
        version: Version,
    ) -> Result<(), InstallError> {
        let io = |what| {
            let path = tmp.to_path_buf();
            move |source| InstallError::Io { what, path, source }
        };
        if let Some(dir) = self.agent.parent() {
            std::fs::create_dir_all(dir).map_err(io("creating the folder of"))?;
        }
        let _ = std::fs::remove_file(tmp);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(tmp)
            .map_err(io("creating"))?;
        let mut resp = self.get(url).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let chunk = resp.chunk().await.map_err(|e| InstallError::Download {
                url: url.to_string(),
                message: error_chain(&e),
            })?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            if size > MAX_BINARY {
                return Err(InstallError::Download {
                    url: url.to_string(),
                    message: format!("larger than {MAX_BINARY} bytes"),
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(io("writing"))?;
        }
        out.sync_all().map_err(io("writing"))?;
        drop(out);
        let actual = hex::encode(hasher.finalize());
        if actual != expected {
            return Err(InstallError::Checksum {
                url: url.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        let found = installed_version(tmp).await;
        let runs = found
            .as_deref()
            .and_then(|f| Version::parse(f).ok())
            .is_some_and(|f| f == version);
        if !runs {
            return Err(InstallError::NotRunnable {
                wanted: version.to_string(),
                found: found.unwrap_or_else(|| "nothing (it did not run)".into()),
            });
        }
        Ok(())
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_the_mapping() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(
            v("17.5.3-ee"),
            Version {
                major: 17,
                minor: 5,
                patch: 3
            }
        );
        assert_eq!(
            v("v16.11.0"),
            Version {
                major: 16,
                minor: 11,
                patch: 0
            }
        );
        assert_eq!(
            v("18.0"),
            Version {
                major: 18,
                minor: 0,
                patch: 0
            }
        );
        assert_eq!(v("17.5.3-ee").agent_for_gitlab().to_string(), "17.5.0");
        assert!(v("17.5.9").serves(v("17.5.3-ee")));
        assert!(!v("17.4.2").serves(v("17.5.0")));
        for bad in ["", "v", "17", "x.y.z", "17.x", "-1.2.3"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_output_and_checksums_are_read() {
        let out = "Version:      17.5.0\nGit revision: abc\nOS/Arch: linux/amd64\n";
        assert_eq!(parse_version_output(out).as_deref(), Some("17.5.0"));
        assert_eq!(parse_version_output("nothing"), None);
        let h = "ab".repeat(32);
        let sums = format!(
            "{}  binaries/gitlab-runner-linux-arm64\n{h} *binaries/gitlab-runner-linux-amd64\nshort  x\n",
            "cd".repeat(32)
        );
        assert_eq!(
            checksum_for(&sums, "binaries/gitlab-runner-linux-amd64"),
            Some(h)
        );
        assert_eq!(
            checksum_for(&sums, "binaries/gitlab-runner-linux-s390x"),
            None
        );
        assert_eq!(checksum_for("short  x", "x"), None);
    }
}
