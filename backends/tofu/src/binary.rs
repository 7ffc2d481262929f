//! OpenTofu binary management (the design's updater): which versions exist, downloading
//! one, checking it, installing it in its own directory, and which one is in use.
//!
//! - Sources: the OpenTofu releases on GitHub ([`Source::GitHub`]: the releases API, a
//!   configurable base URL, an optional token) or any server laid out like GitHub's
//!   release downloads ([`Source::Custom`]: a versions URL answering a JSON list of versions
//!   or of GitHub-shaped releases, and `BASE/v{version}/{asset}` downloads) with token,
//!   bearer or custom-header authentication ([`Auth`]).
//! - Every archive (`tofu_{version}_{os}_{arch}.tar.gz`, `.zip` on Windows) is checked
//!   against the release's checksums file (`tofu_{version}_SHA256SUMS`) before anything is
//!   extracted; a mismatch, a missing checksum, an interrupted or oversized download
//!   installs nothing.
//! - Only the `tofu` (`tofu.exe`) entry is extracted, mode 0755, into `ROOT/{version}/`
//!   (through a staging directory and a rename: a version directory is complete or absent).
//! - `tofu_versions` rows: `version_id` from the binary's SHA-256, the version and the
//!   source; exactly one `active` (switched in one conditional transaction); `update(rb)`
//!   keeps the new version active and `rb` (1–3) rollback versions — the one that was
//!   active first, then the newest older releases — and removes the rest (rows and
//!   directories). [`Updater::activate`] switches to any installed version.
//! - [`Updater::active_binary`] checks the binary's SHA-256 against its row before handing
//!   out its path.

use gosling_state::{
    Expect, SecretString, SharedClock, StateError, StateStore, Table, TofuVersion, Versioned, Write,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The largest archive downloaded (bytes).
pub const MAX_ARCHIVE: u64 = 512 << 20;
/// The largest binary extracted (bytes).
pub const MAX_BINARY: u64 = 1 << 30;

/// How requests to a custom source authenticate.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    /// None.
    #[default]
    None,
    /// `Authorization: token TOKEN`.
    Token(SecretString),
    /// `Authorization: Bearer TOKEN`.
    Bearer(SecretString),
    /// A header of its own (`PRIVATE-TOKEN: …`, `X-JFrog-Art-Api: …`).
    Header {
        /// The header name.
        name: String,
        /// Its value.
        value: SecretString,
    },
}

/// Where OpenTofu releases come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// GitHub releases (`GET {api_base}/repos/{repo}/releases`, assets downloaded from
    /// their `browser_download_url`).
    GitHub {
        /// `https://api.github.com`.
        api_base: String,
        /// `opentofu/opentofu`.
        repo: String,
        /// A token against rate limits (sent as a bearer token to the API only).
        token: Option<SecretString>,
    },
    /// A server of its own: `versions_url` answers a JSON array of versions (`"1.8.0"`,
    /// `"v1.8.0"`) or of releases (`{"tag_name": …}`); assets are at
    /// `{base_url}/v{version}/{asset}`.
    Custom {
        /// The versions list.
        versions_url: String,
        /// The downloads' base.
        base_url: String,
        /// How to authenticate (every request).
        auth: Auth,
    },
}

impl Source {
    /// The official releases.
    pub fn github() -> Source {
        Source::GitHub {
            api_base: "https://api.github.com".into(),
            repo: "opentofu/opentofu".into(),
            token: None,
        }
    }

    /// `github` or `other` (the `source` column).
    pub fn name(&self) -> &'static str {
        match self {
            Source::GitHub { .. } => "github",
            Source::Custom { .. } => "other",
        }
    }
}

/// The platform binaries are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `windows`, `darwin`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub arch: String,
}

impl Platform {
    /// This machine's.
    pub fn current() -> Platform {
        let p = crate::cache::platform();
        let (os, arch) = p.split_once('_').unwrap_or((&p, ""));
        Platform {
            os: os.into(),
            arch: arch.into(),
        }
    }

    /// `.zip` on Windows, `.tar.gz` elsewhere.
    pub fn archive_ext(&self) -> &'static str {
        if self.os == "windows" {
            "zip"
        } else {
            "tar.gz"
        }
    }

    /// `tofu.exe` on Windows, `tofu` elsewhere.
    pub fn binary_name(&self) -> &'static str {
        if self.os == "windows" {
            "tofu.exe"
        } else {
            "tofu"
        }
    }

    /// The release asset of `version`: `tofu_1.8.0_linux_amd64.tar.gz`.
    pub fn asset(&self, version: &semver::Version) -> String {
        format!(
            "tofu_{version}_{}_{}.{}",
            self.os,
            self.arch,
            self.archive_ext()
        )
    }
}

/// The checksums file of a release.
pub fn checksums_asset(version: &semver::Version) -> String {
    format!("tofu_{version}_SHA256SUMS")
}

/// Why a binary could not be listed, installed or used.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    /// The request failed (network, connection dropped mid-body, …).
    #[error("{url}: {message}")]
    Http {
        /// What was asked for.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer was not what the source should answer.
    #[error("{url}: {message}")]
    BadAnswer {
        /// What was asked for.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The archive's checksum is not the release's.
    #[error(
        "{asset}: SHA-256 {actual} does not match the release checksum {expected}; not installed"
    )]
    Checksum {
        /// The archive.
        asset: String,
        /// From the checksums file.
        expected: String,
        /// Of what was downloaded.
        actual: String,
    },
    /// The checksums file does not list the archive.
    #[error("{asset} is not in the release's checksums file; not installed")]
    NoChecksum {
        /// The archive.
        asset: String,
    },
    /// The release has no such asset.
    #[error("release {version} has no asset {asset}")]
    NoAsset {
        /// The release.
        version: String,
        /// The asset.
        asset: String,
    },
    /// The archive is damaged or does not hold the binary.
    #[error("{asset}: {message}")]
    Archive {
        /// The archive.
        asset: String,
        /// What is wrong.
        message: String,
    },
    /// A download was larger than allowed.
    #[error("{url}: larger than {limit} bytes")]
    TooLarge {
        /// What was asked for.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state store failed.
    #[error("state: {0}")]
    State(#[from] StateError),
    /// The source lists no usable version.
    #[error("the source lists no OpenTofu version")]
    NoVersions,
    /// A version that is not installed was asked for.
    #[error("OpenTofu {0} is not installed")]
    NotInstalled(String),
    /// No version is active.
    #[error("no OpenTofu version is active: run the updater")]
    NoneActive,
    /// An installed binary no longer matches its checksum.
    #[error("the installed OpenTofu {version} does not match its recorded SHA-256; reinstall it")]
    Corrupt {
        /// The version.
        version: String,
    },
    /// The rollback factor is outside 1–3.
    #[error("the rollback factor must be 1, 2 or 3 (got {0})")]
    RollbackFactor(u8),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BinaryError + '_ {
    move |source| BinaryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`Updater::update`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateReport {
    /// The active version.
    pub active: String,
    /// Whether it changed.
    pub switched: bool,
    /// The rollback versions kept, newest first.
    pub rollback: Vec<String>,
    /// Versions removed.
    pub removed: Vec<String>,
    /// Rollback versions that could not be installed, with why.
    pub skipped: Vec<(String, String)>,
}

/// A release: its version and where its assets are.
#[derive(Clone, Debug)]
struct Release {
    version: semver::Version,
    /// Asset name → URL (GitHub); empty for a custom source (URLs from the base).
    assets: Vec<(String, String)>,
}

/// Keeps OpenTofu binaries.
pub struct Updater {
    source: Source,
    root: PathBuf,
    state: Arc<dyn StateStore>,
    clock: SharedClock,
    platform: Platform,
    http: reqwest::Client,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("source", &self.source.name())
            .field("root", &self.root)
            .field("platform", &self.platform)
            .finish()
    }
}

fn version_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.trim().trim_start_matches('v')).ok()
}

impl Updater {
    /// An updater installing under `root` (`ROOT/{version}/tofu`) for this machine's
    /// platform, recording versions in `state`.
    pub fn new(
        source: Source,
        root: &Path,
        state: Arc<dyn StateStore>,
        clock: SharedClock,
    ) -> Result<Updater, BinaryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gosling-tofu/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(15 * 60))
            .build()
            .map_err(|e| BinaryError::Http {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(Updater {
            source,
            root: root.to_path_buf(),
            state,
            clock,
            platform: Platform::current(),
            http,
        })
    }

    /// The same updater for another platform (a Windows binary from a Linux host…).
    pub fn with_platform(mut self, platform: Platform) -> Updater {
        self.platform = platform;
        self
    }

    /// Where `version` is installed.
    pub fn path(&self, version: &str) -> PathBuf {
        self.root.join(version).join(self.platform.binary_name())
    }

    fn request(&self, url: &str, api: bool) -> reqwest::RequestBuilder {
        let mut r = self.http.get(url);
        match &self.source {
            Source::GitHub { token, .. } => {
                if api {
                    r = r
                        .header("Accept", "application/vnd.github+json")
                        .header("X-GitHub-Api-Version", "2022-11-28");
                    if let Some(t) = token {
                        r = r.bearer_auth(t.expose());
                    }
                }
            }
            Source::Custom { auth, .. } => {
                r = match auth {
                    Auth::None => r,
                    Auth::Token(t) => r.header("Authorization", format!("token {}", t.expose())),
                    Auth::Bearer(t) => r.bearer_auth(t.expose()),
                    Auth::Header { name, value } => r.header(name.as_str(), value.expose()),
                };
            }
        }
        r
    }

    /// Downloads `url` (at most `limit` bytes), feeding each chunk to `sink`.
    async fn fetch(
        &self,
        url: &str,
        api: bool,
        limit: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), BinaryError>,
    ) -> Result<u64, BinaryError> {
        let http = |e: reqwest::Error| BinaryError::Http {
            url: url.to_string(),
            message: crate::binary::describe(&e),
        };
        let mut resp = self.request(url, api).send().await.map_err(http)?;
        if !resp.status().is_success() {
            return Err(BinaryError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let expected = resp.content_length();
        if expected.is_some_and(|n| n > limit) {
            return Err(BinaryError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(BinaryError::TooLarge {
                    url: url.to_string(),
                    limit,
                });
            }
            sink(&chunk)?;
        }
        if expected.is_some_and(|n| n != total) {
            return Err(BinaryError::Http {
                url: url.to_string(),
                message: format!(
                    "the connection ended after {total} of {} bytes",
                    expected.unwrap_or(0)
                ),
            });
        }
        Ok(total)
    }

    async fn fetch_bytes(&self, url: &str, api: bool, limit: u64) -> Result<Vec<u8>, BinaryError> {
        let mut out = Vec::new();
        self.fetch(url, api, limit, |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    async fn releases(&self) -> Result<Vec<Release>, BinaryError> {
        let mut out = Vec::new();
        match &self.source {
            Source::GitHub { api_base, repo, .. } => {
                for page in 1..=5 {
                    let url = format!(
                        "{}/repos/{repo}/releases?per_page=100&page={page}",
                        api_base.trim_end_matches('/')
                    );
                    let body = self.fetch_bytes(&url, true, 32 << 20).await?;
                    let list: Vec<serde_json::Value> =
                        serde_json::from_slice(&body).map_err(|e| BinaryError::BadAnswer {
                            url: url.clone(),
                            message: e.to_string(),
                        })?;
                    let n = list.len();
                    for r in list {
                        if r["draft"] == true || r["prerelease"] == true {
                            continue;
                        }
                        let Some(version) = r["tag_name"].as_str().and_then(version_of) else {
                            continue;
                        };
                        let assets = r["assets"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| {
                                        Some((
                                            x["name"].as_str()?.to_string(),
                                            x["browser_download_url"].as_str()?.to_string(),
                                        ))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        out.push(Release { version, assets });
                    }
                    if n < 100 {
                        break;
                    }
                }
            }
            Source::Custom { versions_url, .. } => {
                let body = self.fetch_bytes(versions_url, true, 32 << 20).await?;
                let list: Vec<serde_json::Value> =
                    serde_json::from_slice(&body).map_err(|e| BinaryError::BadAnswer {
                        url: versions_url.clone(),
                        message: e.to_string(),
                    })?;
                for v in list {
                    let tag = v.as_str().or_else(|| v["tag_name"].as_str());
                    if v["draft"] == true || v["prerelease"] == true {
                        continue;
                    }
                    if let Some(version) = tag.and_then(version_of) {
                        out.push(Release {
                            version,
                            assets: Vec::new(),
                        });
                    }
                }
            }
        }
        out.retain(|r| r.version.pre.is_empty());
        out.sort_by(|a, b| b.version.cmp(&a.version));
        out.dedup_by(|a, b| a.version == b.version);
        Ok(out)
    }

    /// The stable versions the source offers, newest first.
    pub async fn available_versions(&self) -> Result<Vec<semver::Version>, BinaryError> {
        Ok(self
            .releases()
            .await?
            .into_iter()
            .map(|r| r.version)
            .collect())
    }

    fn asset_url(&self, release: &Release, asset: &str) -> Result<String, BinaryError> {
        match &self.source {
            Source::GitHub { .. } => release
                .assets
                .iter()
                .find(|(n, _)| n == asset)
                .map(|(_, u)| u.clone())
                .ok_or_else(|| BinaryError::NoAsset {
                    version: release.version.to_string(),
                    asset: asset.to_string(),
                }),
            Source::Custom { base_url, .. } => Ok(format!(
                "{}/v{}/{asset}",
                base_url.trim_end_matches('/'),
                release.version
            )),
        }
    }

    /// Every recorded version.
    pub async fn versions(&self) -> Result<Vec<Versioned<TofuVersion>>, BinaryError> {
        Ok(self.state.tofu_versions().await?)
    }

    /// The active version's row.
    pub async fn current(&self) -> Result<Option<Versioned<TofuVersion>>, BinaryError> {
        Ok(self.versions().await?.into_iter().find(|v| v.item.active))
    }

    /// The active binary, after checking its SHA-256 against its row.
    pub async fn active_binary(&self) -> Result<PathBuf, BinaryError> {
        let cur = self.current().await?.ok_or(BinaryError::NoneActive)?;
        let path = self.path(&cur.item.version);
        let sha = sha_of(path.clone()).await?;
        if sha != cur.item.sha256_hash {
            return Err(BinaryError::Corrupt {
                version: cur.item.version,
            });
        }
        Ok(path)
    }

    /// Whether the newest available version is not the active one.
    pub async fn check_required_actions(&self) -> Result<bool, BinaryError> {
        let latest = self
            .available_versions()
            .await?
            .into_iter()
            .next()
            .ok_or(BinaryError::NoVersions)?;
        Ok(self
            .current()
            .await?
            .is_none_or(|c| c.item.version != latest.to_string()))
    }

    /// Downloads, checks and installs `version` (inactive unless it already was active);
    /// its row. A version already installed with an intact binary is not downloaded again.
    pub async fn install(
        &self,
        version: &semver::Version,
    ) -> Result<Versioned<TofuVersion>, BinaryError> {
        let releases = self.releases().await?;
        let release = releases
            .iter()
            .find(|r| &r.version == version)
            .cloned()
            .unwrap_or(Release {
                version: version.clone(),
                assets: Vec::new(),
            });
        self.install_release(&release).await
    }

    async fn install_release(
        &self,
        release: &Release,
    ) -> Result<Versioned<TofuVersion>, BinaryError> {
        let v = release.version.to_string();
        let rows = self.versions().await?;
        if let Some(row) = rows
            .iter()
            .find(|r| r.item.version == v && r.item.source == self.source.name())
        {
            if sha_of(self.path(&v)).await.ok().as_deref() == Some(row.item.sha256_hash.as_str()) {
                return Ok(row.clone());
            }
        }
        let asset = self.platform.asset(&release.version);
        let sums_name = checksums_asset(&release.version);
        let sums_url = self.asset_url(release, &sums_name)?;
        let sums = self.fetch_bytes(&sums_url, false, 1 << 20).await?;
        let expected =
            parse_checksums(&String::from_utf8_lossy(&sums), &asset).ok_or_else(|| {
                BinaryError::NoChecksum {
                    asset: asset.clone(),
                }
            })?;
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let staging = self
            .root
            .join(format!(".staging-{v}-{:016x}", rand::random::<u64>()));
        let result = self
            .download_and_extract(release, &asset, &expected, &staging)
            .await;
        let sha = match result {
            Ok(sha) => sha,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        // The version directory appears complete, in one rename.
        let target = self.root.join(&v);
        let old = self
            .root
            .join(format!(".old-{v}-{:016x}", rand::random::<u64>()));
        if target.exists() {
            std::fs::rename(&target, &old).map_err(io(&target))?;
        }
        std::fs::rename(&staging, &target).map_err(io(&target))?;
        let _ = std::fs::remove_dir_all(&old);
        // Record it (a row of another checksum for the same version is replaced).
        let mut writes = Vec::new();
        let mut active = false;
        for r in rows
            .iter()
            .filter(|r| r.item.version == v && r.item.source == self.source.name())
        {
            active |= r.item.active;
            writes.push(Write::Delete {
                table: Table::TofuVersions,
                pk: r.item.version_id.clone(),
                sk: None,
                expect: Expect::Version(r.version),
            });
        }
        let row = TofuVersion {
            version_id: TofuVersion::make_id(&sha, &v, self.source.name()),
            version: v.clone(),
            source: self.source.name().into(),
            downloaded_at: self.clock.now(),
            sha256_hash: sha,
            active,
        };
        writes.retain(|w| !matches!(w, Write::Delete { pk, .. } if *pk == row.version_id));
        let existing = rows.iter().find(|r| r.item.version_id == row.version_id);
        writes.push(Write::Put {
            table: Table::TofuVersions,
            doc: gosling_state::to_doc(Table::TofuVersions, &row)?,
            expect: existing.map_or(Expect::Absent, |r| Expect::Version(r.version)),
        });
        self.state.transact(writes).await?;
        tracing::info!(version = %v, "OpenTofu installed");
        Ok(Versioned {
            version: existing.map_or(1, |r| r.version + 1),
            item: row,
        })
    }

    async fn download_and_extract(
        &self,
        release: &Release,
        asset: &str,
        expected: &str,
        staging: &Path,
    ) -> Result<String, BinaryError> {
        std::fs::create_dir_all(staging).map_err(io(staging))?;
        let url = self.asset_url(release, asset)?;
        let archive_path = staging.join(asset);
        let mut file = std::fs::File::create(&archive_path).map_err(io(&archive_path))?;
        let mut hasher = Sha256::new();
        self.fetch(&url, false, MAX_ARCHIVE, |chunk| {
            hasher.update(chunk);
            file.write_all(chunk).map_err(io(&archive_path))
        })
        .await?;
        file.flush().map_err(io(&archive_path))?;
        drop(file);
        let actual = gosling_state::hex(&hasher.finalize());
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(BinaryError::Checksum {
                asset: asset.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        let name = self.platform.binary_name();
        let bin = staging.join(name);
        let (a, b, n, zip) = (
            archive_path.clone(),
            bin.clone(),
            name.to_string(),
            self.platform.archive_ext() == "zip",
        );
        let asset_name = asset.to_string();
        tokio::task::spawn_blocking(move || extract(&a, &b, &n, zip, &asset_name))
            .await
            .map_err(|e| BinaryError::Io {
                path: bin.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        std::fs::remove_file(&archive_path).map_err(io(&archive_path))?;
        sha_of(bin).await
    }

    /// Makes installed `version` the active one: its row `active`, every other row not,
    /// in one conditional transaction (a concurrent switch makes one of them fail).
    pub async fn activate(&self, version: &str) -> Result<(), BinaryError> {
        let rows = self.versions().await?;
        let target = rows
            .iter()
            .filter(|r| r.item.version == version)
            .max_by_key(|r| r.item.downloaded_at)
            .ok_or_else(|| BinaryError::NotInstalled(version.to_string()))?;
        if sha_of(self.path(version)).await.ok().as_deref()
            != Some(target.item.sha256_hash.as_str())
        {
            return Err(BinaryError::Corrupt {
                version: version.to_string(),
            });
        }
        let mut writes = Vec::new();
        for r in &rows {
            let want = r.item.version_id == target.item.version_id;
            if r.item.active != want {
                let mut item = r.item.clone();
                item.active = want;
                writes.push(Write::Put {
                    table: Table::TofuVersions,
                    doc: gosling_state::to_doc(Table::TofuVersions, &item)?,
                    expect: Expect::Version(r.version),
                });
            }
        }
        if !writes.is_empty() {
            self.state.transact(writes).await?;
            tracing::info!(version, "OpenTofu version switched");
        }
        Ok(())
    }

    /// The design's update: the newest release installed and made active, `rb` (1–3)
    /// rollback versions kept (the previously active one first, then the newest older
    /// releases), every other version removed. A failure to install the newest release
    /// changes nothing; a rollback version that cannot be installed is skipped (reported)
    /// and the next older one tried.
    pub async fn update(&self, rb: u8) -> Result<UpdateReport, BinaryError> {
        if !(1..=3).contains(&rb) {
            return Err(BinaryError::RollbackFactor(rb));
        }
        let releases = self.releases().await?;
        let latest = releases.first().cloned().ok_or(BinaryError::NoVersions)?;
        let before = self.current().await?;
        self.install_release(&latest).await?;
        let active = latest.version.to_string();
        let mut keep: Vec<String> = vec![active.clone()];
        let mut rollback = Vec::new();
        let mut skipped = Vec::new();
        if let Some(prev) = before.as_ref().filter(|p| p.item.version != active) {
            if sha_of(self.path(&prev.item.version)).await.ok().as_deref()
                == Some(prev.item.sha256_hash.as_str())
            {
                keep.push(prev.item.version.clone());
                rollback.push(prev.item.version.clone());
            }
        }
        for r in releases.iter().filter(|r| r.version < latest.version) {
            if rollback.len() >= rb as usize {
                break;
            }
            let v = r.version.to_string();
            if keep.contains(&v) {
                continue;
            }
            match self.install_release(r).await {
                Ok(_) => {
                    keep.push(v.clone());
                    rollback.push(v);
                }
                Err(e) => skipped.push((v, e.to_string())),
            }
        }
        self.activate(&active).await?;
        let removed = self.prune(&keep).await?;
        Ok(UpdateReport {
            switched: before.is_none_or(|b| b.item.version != active),
            active,
            rollback,
            removed,
            skipped,
        })
    }

    /// Removes every version not in `keep` (never the active one): rows and directories.
    async fn prune(&self, keep: &[String]) -> Result<Vec<String>, BinaryError> {
        let rows = self.versions().await?;
        let mut removed = BTreeSet::new();
        let mut writes = Vec::new();
        for r in &rows {
            if r.item.active || keep.contains(&r.item.version) {
                continue;
            }
            writes.push(Write::Delete {
                table: Table::TofuVersions,
                pk: r.item.version_id.clone(),
                sk: None,
                expect: Expect::Version(r.version),
            });
            removed.insert(r.item.version.clone());
        }
        if !writes.is_empty() {
            self.state.transact(writes).await?;
        }
        // Directories without a row (left by an interrupted run) go too.
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let stray = name.starts_with(".staging-") || name.starts_with(".old-");
                if stray || (version_of(&name).is_some() && !keep.contains(&name)) {
                    let _ = std::fs::remove_dir_all(e.path());
                    if !stray {
                        removed.insert(name);
                    }
                }
            }
        }
        Ok(removed.into_iter().collect())
    }
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

/// The SHA-256 the checksums file gives `asset` (`HEX  NAME` or `HEX *NAME` lines).
pub fn parse_checksums(text: &str, asset: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let sum = parts.next()?;
        let name = parts.next()?.trim_start_matches('*');
        (name == asset && sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| sum.to_ascii_lowercase())
    })
}

/// SHA-256 (hex) of a file, off the async threads.
async fn sha_of(path: PathBuf) -> Result<String, BinaryError> {
    let p = path.clone();
    tokio::task::spawn_blocking(move || file_sha256(&p))
        .await
        .map_err(|e| BinaryError::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        })?
}

/// SHA-256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String, BinaryError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(gosling_state::hex(&h.finalize()))
}

/// Extracts entry `name` (at the archive's top level) to `dest`, mode 0755.
fn extract(
    archive: &Path,
    dest: &Path,
    name: &str,
    zip: bool,
    asset: &str,
) -> Result<(), BinaryError> {
    let bad = |m: String| BinaryError::Archive {
        asset: asset.to_string(),
        message: m,
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut out = std::fs::File::create(dest).map_err(io(dest))?;
    let copied = if zip {
        let mut z = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
        let mut entry = z
            .by_name(name)
            .map_err(|_| bad(format!("no `{name}` in the archive")))?;
        if !entry.is_file() {
            return Err(bad(format!("`{name}` is not a file")));
        }
        std::io::copy(&mut (&mut entry).take(MAX_BINARY + 1), &mut out).map_err(io(dest))?
    } else {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut found = None;
        for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
            let top = path
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect::<Vec<_>>();
            if top.len() == 1 && top[0].as_os_str() == name && entry.header().entry_type().is_file()
            {
                found = Some(
                    std::io::copy(&mut (&mut entry).take(MAX_BINARY + 1), &mut out)
                        .map_err(io(dest))?,
                );
                break;
            }
        }
        found.ok_or_else(|| bad(format!("no `{name}` in the archive")))?
    };
    if copied > MAX_BINARY {
        return Err(bad(format!("`{name}` is larger than {MAX_BINARY} bytes")));
    }
    out.flush().map_err(io(dest))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).map_err(io(dest))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_file_lines() {
        let sum = "ab".repeat(32);
        let text = format!(
            "{sum}  tofu_1.8.0_linux_amd64.tar.gz\n{}  *tofu_1.8.0_windows_amd64.zip\n",
            "cd".repeat(32)
        );
        assert_eq!(
            parse_checksums(&text, "tofu_1.8.0_linux_amd64.tar.gz"),
            Some(sum)
        );
        assert_eq!(
            parse_checksums(&text, "tofu_1.8.0_windows_amd64.zip"),
            Some("cd".repeat(32))
        );
        assert_eq!(
            parse_checksums(&text, "tofu_1.8.0_linux_arm64.tar.gz"),
            None
        );
        assert_eq!(parse_checksums("short  x", "x"), None);
    }

    #[test]
    fn assets_are_named_like_the_releases() {
        let v = semver::Version::new(1, 8, 0);
        let linux = Platform {
            os: "linux".into(),
            arch: "amd64".into(),
        };
        let win = Platform {
            os: "windows".into(),
            arch: "amd64".into(),
        };
        assert_eq!(linux.asset(&v), "tofu_1.8.0_linux_amd64.tar.gz");
        assert_eq!(win.asset(&v), "tofu_1.8.0_windows_amd64.zip");
        assert_eq!(win.binary_name(), "tofu.exe");
        assert_eq!(checksums_asset(&v), "tofu_1.8.0_SHA256SUMS");
        assert_eq!(version_of("v1.10.2"), Some(semver::Version::new(1, 10, 2)));
        assert_eq!(version_of("nightly"), None);
    }
}
