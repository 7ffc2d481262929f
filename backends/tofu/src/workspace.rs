//! A runner's workspace: a directory under the workspaces root
//! (`ROOT/EGG/RUNNER/`, names made path-safe) holding the rendered `*.tf` files, the lock
//! file, `.tofurc`, OpenTofu's `.terraform/` and, under `.tofu/`, the plugin cache and plan
//! files while they are used. Nothing secret is ever written here: credentials and the
//! user data travel in the environment.
//!
//! A [`ConfigBundle`] is a workspace's configuration as one JSON object (the `*.tf` files
//! and the lock file): stored beside every plan and as the runner's latest configuration,
//! so a workspace can be made again anywhere (a rollback, a terminate after a restart).

use crate::error::TofuError;
use crate::render::{segment, Rendered};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file's name.
pub const LOCK_FILE: &str = ".terraform.lock.hcl";

/// A runner's configuration, everything needed to make its workspace again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigBundle {
    /// The egg.
    pub egg: String,
    /// The runner.
    pub runner_id: String,
    /// `aws` or `yandex`.
    pub cloud: String,
    /// The resource that is the runner's machine.
    pub address: String,
    /// The state key in the backend.
    pub state_key: String,
    /// Provider source → version constraint.
    pub requirements: BTreeMap<String, String>,
    /// `*.tf` file name → content.
    pub files: BTreeMap<String, String>,
    /// The lock file, once `init` wrote one.
    #[serde(default)]
    pub lock: Option<String>,
}

impl ConfigBundle {
    /// The bundle of a rendered configuration.
    pub fn new(egg: &str, runner_id: &str, r: &Rendered) -> ConfigBundle {
        ConfigBundle {
            egg: egg.to_string(),
            runner_id: runner_id.to_string(),
            cloud: r.cloud.to_string(),
            address: r.address.to_string(),
            state_key: r.state_key.clone(),
            requirements: r.requirements.clone(),
            files: r.files.clone(),
            lock: None,
        }
    }

    /// Its JSON bytes (deterministic: sorted maps).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a bundle.
    pub fn from_bytes(bytes: &[u8]) -> Result<ConfigBundle, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A runner's workspace directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The directory.
    pub dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TofuError + '_ {
    move |e| TofuError::io(path, e)
}

/// Writes `text` to `path` through a file beside it and a rename (no reader sees half).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TofuError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates `dir` (and parents), private to this user.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), TofuError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

impl Workspace {
    /// The workspace of `runner_id` of `egg` under `root`.
    pub fn for_runner(root: &Path, egg: &str, runner_id: &str) -> Workspace {
        Workspace {
            dir: root.join(segment(egg)).join(segment(runner_id)),
        }
    }

    /// Whether it exists and was initialised (`tofu init` ran).
    pub fn initialised(&self) -> bool {
        self.dir.join(".terraform").is_dir()
    }

    /// The plugin cache (`plugin_cache_dir` of its `.tofurc`).
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.dir.join(".tofu").join("plugin-cache")
    }

    /// A plan file's path, relative to the workspace (as `tofu` is given it).
    pub fn plan_file(id: &str) -> String {
        format!(".tofu/plans/{id}.tfplan")
    }

    /// Writes the configuration: each `*.tf` file whose content differs, removes `*.tf`
    /// files it does not have, and the lock file when the bundle has one. Returns whether
    /// anything changed.
    pub fn write(&self, bundle: &ConfigBundle) -> Result<bool, TofuError> {
        create_private_dir(&self.dir)?;
        create_private_dir(&self.dir.join(".tofu").join("plans"))?;
        create_private_dir(&self.plugin_cache_dir())?;
        let mut changed = false;
        for (name, text) in &bundle.files {
            let path = self.dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                write_atomic(&path, text.as_bytes())?;
                changed = true;
            }
        }
        let entries = std::fs::read_dir(&self.dir).map_err(io(&self.dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tf") && !bundle.files.contains_key(&name) {
                std::fs::remove_file(e.path()).map_err(io(&e.path()))?;
                changed = true;
            }
        }
        if let Some(lock) = &bundle.lock {
            if self.lock().as_deref() != Some(lock.as_str()) {
                self.write_lock(lock)?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Writes the CLI configuration; whether it changed.
    pub fn write_tofurc(&self, text: &str) -> Result<bool, TofuError> {
        let path = self.dir.join(".tofurc");
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text) {
            return Ok(false);
        }
        write_atomic(&path, text.as_bytes())?;
        Ok(true)
    }

    /// The lock file, if any.
    pub fn lock(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(LOCK_FILE)).ok()
    }

    /// Replaces the lock file.
    pub fn write_lock(&self, text: &str) -> Result<(), TofuError> {
        write_atomic(&self.dir.join(LOCK_FILE), text.as_bytes())
    }

    /// Removes the workspace.
    pub fn remove(&self) -> Result<(), TofuError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TofuError::io(&self.dir, e)),
            _ => Ok(()),
        }
    }
}
