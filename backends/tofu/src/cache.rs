//! The provider plugin cache in the object store, so that a runner's `tofu init` downloads
//! each provider once for the whole fleet rather than once per workspace.
//!
//! Layout (under the object store's `tofu-cache/`):
//!
//! ```text
//! tofu-cache/locks/{requirements_hash}.terraform.lock.hcl
//! tofu-cache/terraform-plugins/{lock_sha256}/{os}_{arch}.tar.gz
//! ```
//!
//! `requirements_hash` is the SHA-256 of the configuration's provider requirements
//! (source and version constraint of each); `lock_sha256` the SHA-256 of the lock file
//! `init` wrote for them. Before `init` the lock file stored for the workspace's
//! requirements is written into it (and `init` runs with `-lockfile=readonly`, so every
//! runner uses the same provider versions), and the plugin archive stored for that lock
//! file is unpacked into a local provider mirror (`MIRROR_ROOT/{lock_sha256}-{platform}/`,
//! shared by the workspaces of this machine), which `.tofurc` names as a
//! `filesystem_mirror` tried before the registry. After `init` a new lock file is stored,
//! and the providers it downloaded are packed and stored under the new lock's checksum.
//!
//! Invalidation, as the design says: a change of provider constraints gives another
//! requirements hash (a fresh `init`, a new lock); a lock file whose checksum differs
//! gives another archive key, so plugins are never taken for a lock they were not
//! installed for; and OpenTofu itself checks every provider against the lock file's
//! hashes — when that check fails on restored plugins, the archive is removed from the
//! store and the local mirror, and `init` runs once more without them
//! ([`ProviderCache::invalidate`]).

use crate::error::TofuError;
use crate::workspace::{create_private_dir, Workspace};
use gosling_state::{hex, ObjectStore};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Largest plugin archive unpacked, in bytes (uncompressed): 4 GiB.
pub const MAX_UNPACKED: u64 = 4 << 30;

/// `{os}_{arch}` as OpenTofu names platforms (`linux_amd64`).
pub fn platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{os}_{arch}")
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The hash of a set of provider requirements.
pub fn requirements_hash(reqs: &BTreeMap<String, String>) -> String {
    let text: String = reqs.iter().map(|(s, c)| format!("{s}={c}\n")).collect();
    sha256_hex(text.as_bytes())
}

/// The provider plugin cache.
#[derive(Clone)]
pub struct ProviderCache {
    objects: Arc<dyn ObjectStore>,
    mirror_root: PathBuf,
    platform: String,
}

impl std::fmt::Debug for ProviderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCache")
            .field("objects", &self.objects.describe())
            .field("mirror_root", &self.mirror_root)
            .finish()
    }
}

/// What [`ProviderCache::restore`] put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The stored lock file written into the workspace, if there was one.
    pub lock: Option<String>,
    /// The local provider mirror to name in `.tofurc` (empty when nothing was cached).
    pub mirror_dir: PathBuf,
    /// Whether a plugin archive is behind `mirror_dir`.
    pub plugins: bool,
}

fn lock_key(reqs: &str) -> String {
    format!("tofu-cache/locks/{reqs}.terraform.lock.hcl")
}

impl ProviderCache {
    /// A cache in `objects`, unpacked locally under `mirror_root`.
    pub fn new(objects: Arc<dyn ObjectStore>, mirror_root: &Path) -> ProviderCache {
        ProviderCache {
            objects,
            mirror_root: mirror_root.to_path_buf(),
            platform: platform(),
        }
    }

    /// The object key of the plugin archive for a lock file checksum.
    pub fn plugins_key(&self, lock_sha: &str) -> String {
        format!(
            "tofu-cache/terraform-plugins/{lock_sha}/{}.tar.gz",
            self.platform
        )
    }

    fn mirror_dir(&self, lock_sha: &str) -> PathBuf {
        self.mirror_root
            .join(format!("{lock_sha}-{}", self.platform))
    }

    fn empty_mirror(&self) -> Result<PathBuf, TofuError> {
        let dir = self.mirror_root.join("empty");
        create_private_dir(&dir)?;
        Ok(dir)
    }

    /// Puts the stored lock file and plugins for `reqs` in place for `ws`.
    /// `lock`: the lock file the workspace must use (a stored plan's); else the one stored
    /// for `reqs`, if any.
    pub async fn restore(
        &self,
        ws: &Workspace,
        reqs: &BTreeMap<String, String>,
        lock: Option<&str>,
    ) -> Result<Restored, TofuError> {
        let lock = match lock {
            Some(l) => l.to_string(),
            None => match self
                .objects
                .get(&lock_key(&requirements_hash(reqs)))
                .await?
            {
                Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                None => {
                    return Ok(Restored {
                        lock: None,
                        mirror_dir: self.empty_mirror()?,
                        plugins: false,
                    })
                }
            },
        };
        if ws.lock().as_deref() != Some(lock.as_str()) {
            ws.write_lock(&lock)?;
        }
        let sha = sha256_hex(lock.as_bytes());
        let dir = self.mirror_dir(&sha);
        if dir.is_dir() {
            return Ok(Restored {
                lock: Some(lock),
                mirror_dir: dir,
                plugins: true,
            });
        }
        let Some(archive) = self.objects.get(&self.plugins_key(&sha)).await? else {
            return Ok(Restored {
                lock: Some(lock),
                mirror_dir: self.empty_mirror()?,
                plugins: false,
            });
        };
        let root = self.mirror_root.clone();
        let target = dir.clone();
        tokio::task::spawn_blocking(move || unpack_into(&root, &target, &archive))
            .await
            .map_err(|e| TofuError::io(&dir, std::io::Error::other(e.to_string())))??;
        tracing::debug!(lock = %sha, "provider plugins restored from the object store");
        Ok(Restored {
            lock: Some(lock),
            mirror_dir: dir,
            plugins: true,
        })
    }

    /// After a successful `init`: stores a new lock file for `reqs`, and the plugins the
    /// workspace holds when none are stored for its lock file yet. Returns whether
    /// anything was uploaded.
    pub async fn save(
        &self,
        ws: &Workspace,
        reqs: &BTreeMap<String, String>,
        restored: &Restored,
    ) -> Result<bool, TofuError> {
        let Some(lock) = ws.lock() else {
            return Ok(false);
        };
        let mut uploaded = false;
        if restored.lock.as_deref() != Some(lock.as_str()) {
            self.objects
                .put(
                    &lock_key(&requirements_hash(reqs)),
                    lock.clone().into_bytes(),
                )
                .await?;
            uploaded = true;
        }
        let sha = sha256_hex(lock.as_bytes());
        if restored.plugins && restored.lock.as_deref() == Some(lock.as_str()) {
            return Ok(uploaded);
        }
        let key = self.plugins_key(&sha);
        if self.objects.list(&key).await?.iter().any(|k| k == &key) {
            return Ok(uploaded);
        }
        let sources = vec![ws.plugin_cache_dir(), restored.mirror_dir.clone()];
        let archive = tokio::task::spawn_blocking(move || pack(&sources))
            .await
            .map_err(|e| {
                TofuError::io(ws.plugin_cache_dir(), std::io::Error::other(e.to_string()))
            })??;
        let Some(archive) = archive else {
            return Ok(uploaded);
        };
        // This machine's mirror gets them too: the next workspace needs no download.
        let (root, dir, bytes) = (
            self.mirror_root.clone(),
            self.mirror_dir(&sha),
            archive.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || unpack_into(&root, &dir, &bytes)).await;
        self.objects.put(&key, archive).await?;
        tracing::debug!(lock = %sha, "provider plugins stored in the object store");
        Ok(true)
    }

    /// Forgets the plugins stored for `lock` (they failed OpenTofu's checksum check).
    pub async fn invalidate(&self, lock: &str) -> Result<(), TofuError> {
        let sha = sha256_hex(lock.as_bytes());
        self.objects.delete(&self.plugins_key(&sha)).await?;
        let dir = self.mirror_dir(&sha);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TofuError::io(&dir, e)),
            _ => Ok(()),
        }
    }

    /// An empty mirror directory (to run `init` without restored plugins).
    pub fn no_mirror(&self) -> Result<PathBuf, TofuError> {
        self.empty_mirror()
    }
}

/// The regular files under `dirs` (relative paths; the first directory wins on a clash)
/// as a `.tar.gz`; `None` when there are none.
fn pack(dirs: &[PathBuf]) -> Result<Option<Vec<u8>>, TofuError> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let Ok(meta) = std::fs::metadata(&p) else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.is_file() {
                    if let Ok(rel) = p.strip_prefix(dir) {
                        files
                            .entry(rel.to_string_lossy().replace('\\', "/"))
                            .or_insert(p);
                    }
                }
            }
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(true);
    for (rel, path) in &files {
        tar.append_path_with_name(path, rel)
            .map_err(|e| TofuError::io(path, e))?;
    }
    let gz = tar.into_inner().map_err(|e| TofuError::io(&dirs[0], e))?;
    let bytes = gz.finish().map_err(|e| TofuError::io(&dirs[0], e))?;
    Ok(Some(bytes))
}

/// Whether `p` is a plain relative path (no root, no `..`).
pub(crate) fn safe_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Unpacks a plugin archive into `target` (through a staging directory and a rename, so
/// `target` is complete or absent). Only regular files and directories with plain
/// relative paths are taken; executables keep their mode.
fn unpack_into(root: &Path, target: &Path, archive: &[u8]) -> Result<(), TofuError> {
    create_private_dir(root)?;
    let staging = root.join(format!(".staging-{}", rand::random::<u64>()));
    let result = (|| {
        create_private_dir(&staging)?;
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        let bad = |m: &str| {
            TofuError::io(
                target,
                std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string()),
            )
        };
        let mut total = 0u64;
        for entry in tar.entries().map_err(|e| TofuError::io(target, e))? {
            let mut entry = entry.map_err(|e| TofuError::io(target, e))?;
            let path = entry
                .path()
                .map_err(|e| TofuError::io(target, e))?
                .into_owned();
            if !safe_relative(&path) {
                return Err(bad("an archive entry with an unsafe path"));
            }
            let kind = entry.header().entry_type();
            let dest = staging.join(&path);
            if kind.is_dir() {
                std::fs::create_dir_all(&dest).map_err(|e| TofuError::io(&dest, e))?;
                continue;
            }
            if !kind.is_file() {
                return Err(bad("an archive entry that is not a file"));
            }
            total += entry.size();
            if total > MAX_UNPACKED {
                return Err(bad("the archive unpacks to more than the limit"));
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| TofuError::io(parent, e))?;
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| TofuError::io(&dest, e))?;
            std::fs::write(&dest, &bytes).map_err(|e| TofuError::io(&dest, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| TofuError::io(&dest, e))?;
            }
            #[cfg(not(unix))]
            let _ = mode;
        }
        match std::fs::rename(&staging, target) {
            Ok(()) => Ok(()),
            // Another workspace restored it first.
            Err(_) if target.is_dir() => Ok(()),
            Err(e) => Err(TofuError::io(target, e)),
        }
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}
