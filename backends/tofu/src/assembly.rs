//! The one place runner providers are assembled, for MotherGoose and UglyFox alike: a
//! [`ProviderChoice`] (local processes, or a providers file) becomes [`Providers`].
//!
//! A providers file is [`ProviderSettings`] (the SDK providers: `[aws]`, `[yandex]`,
//! `[gosling_binary]`, overridden by the `GOSLING_AWS_*` / `GOSLING_YC_*` variables) plus
//! an optional `[tofu]` table ([`TofuTable`]); with it, [`TofuProvider`] serves the
//! `CLOUD/KIND/tofu` keys of the clouds the file configures, rendering with the same
//! `[aws]` / `[yandex]` settings. `backends/providers/providers.example.toml` is a
//! commented example.
//!
//! It lives here because this crate is the only one that sees all three layers
//! (gosling-fleet's local provider, gosling-providers' SDK providers and the OpenTofu path).

use crate::binary::{BinaryError, Source, Updater};
use crate::provider::TofuProvider;
use crate::render::{BackendSettings, TofuSettings};
use crate::runner::{RunnerConfig, TofuRunner};
use crate::Tofu;
use gosling_fleet::local::LocalProvider;
use gosling_fleet::Providers;
use gosling_providers::{ProviderSettings, SettingsError};
use gosling_state::{ObjectStore, SecretString, SharedClock, StateStore};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How runner machines are made and removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderChoice {
    /// Local processes: `program args… --runner-id ID --egg-name EGG` in `dir/ID/`.
    Local {
        /// Runner folders.
        dir: PathBuf,
        /// The program (`gosling`, with `args` = `["runner"]`, by default).
        program: PathBuf,
        /// Arguments before `--runner-id`.
        args: Vec<String>,
    },
    /// The cloud providers, configured by a providers file.
    Cloud {
        /// The providers file (TOML).
        config: PathBuf,
    },
}

/// What the OpenTofu path keeps its plans, plugin cache and binary versions in: the
/// executor's own stores.
#[derive(Clone)]
pub struct Stores {
    /// The state store (plan records, `tofu_versions`).
    pub state: Arc<dyn StateStore>,
    /// The object store (plans, configurations, the plugin cache).
    pub objects: Arc<dyn ObjectStore>,
    /// The clock of plan records.
    pub clock: SharedClock,
}

/// Why no providers could be assembled. Every message names the providers file and,
/// where there is one, the setting.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The file is unreadable or not TOML of the expected shape (the message has the path).
    #[error("{0}")]
    File(SettingsError),
    /// A provider setting (file or environment) is missing or unusable.
    #[error("{path}: {source}")]
    Provider {
        /// The providers file.
        path: PathBuf,
        /// What is wrong.
        source: SettingsError,
    },
    /// The file configures no cloud.
    #[error(
        "{0}: no cloud is configured: add an [aws] or [yandex] table (or set GOSLING_AWS_* / \
         GOSLING_YC_* variables)"
    )]
    NoCloud(PathBuf),
    /// A `[tofu]` setting is missing or unusable.
    #[error("{path}: `tofu.{key}`: {message}")]
    Tofu {
        /// The providers file.
        path: PathBuf,
        /// The setting, below `tofu.`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The `[tofu]` table of a providers file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TofuTable {
    /// The `tofu` executable: a path (relative to the file's folder), or a bare name looked
    /// up on `PATH`. Default: `tofu`. Not with `versions_dir`.
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// The folder of [`Updater`]-managed versions (`DIR/VERSION/tofu`): the version marked
    /// active in `tofu_versions` is used, after its SHA-256 check. Not with `binary`.
    #[serde(default)]
    pub versions_dir: Option<PathBuf>,
    /// The runners' workspaces (relative to the file's folder).
    pub workspaces: PathBuf,
    /// Where OpenTofu keeps each runner's state.
    pub backend: BackendSettings,
    /// The variable holding the state and plan encryption passphrase (16+ characters).
    #[serde(default)]
    pub passphrase_env: Option<String>,
    /// `terraform { required_version }`.
    #[serde(default)]
    pub required_version: Option<String>,
    /// The `hashicorp/aws` version constraint.
    #[serde(default)]
    pub aws_provider_version: Option<String>,
    /// The `yandex-cloud/yandex` version constraint.
    #[serde(default)]
    pub yandex_provider_version: Option<String>,
    /// A provider network mirror used instead of the registry.
    #[serde(default)]
    pub network_mirror: Option<String>,
    /// Tags (AWS) / labels (Yandex) added to every runner resource.
    #[serde(default)]
    pub extra_tags: BTreeMap<String, String>,
    /// Plain variables for `tofu` (credentials come from the inherited environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// More variables passed through from this process, besides the default set.
    #[serde(default)]
    pub inherit: Vec<String>,
}

/// Only the `[tofu]` table, read from the whole file so that errors point at its lines.
#[derive(Deserialize)]
struct TofuView {
    #[serde(default)]
    tofu: Option<TofuTable>,
}

/// Where the `tofu` executable comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TofuBinary {
    /// This path (or a bare name on `PATH`).
    Path(PathBuf),
    /// The active version under this folder.
    Versions(PathBuf),
}

/// The OpenTofu path as a providers file configures it.
#[derive(Clone, Debug)]
pub struct TofuPath {
    /// The executable.
    pub binary: TofuBinary,
    /// How it runs (workspaces, mirror, encryption).
    pub runner: RunnerConfig,
    /// What it renders with.
    pub settings: TofuSettings,
    /// Plain variables for `tofu`.
    pub env: BTreeMap<String, String>,
    /// Extra pass-through variables.
    pub inherit: Vec<String>,
}

/// A providers file, read and checked.
#[derive(Clone, Debug)]
pub struct ProvidersFile {
    /// The file.
    pub path: PathBuf,
    /// The SDK providers' settings (file, then environment).
    pub providers: ProviderSettings,
    /// The OpenTofu path, when the file has a `[tofu]` table.
    pub tofu: Option<TofuPath>,
}

impl ProvidersFile {
    /// Reads `path`, applies the environment (`var`: `GOSLING_AWS_*`, `GOSLING_YC_*` and the
    /// passphrase variable) and checks the `[tofu]` table.
    pub fn load(
        path: &Path,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<ProvidersFile, AssemblyError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            AssemblyError::File(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })
        })?;
        let mut providers =
            ProviderSettings::from_toml(&text, path).map_err(AssemblyError::File)?;
        providers.apply_env(&var);
        let view: TofuView = toml::from_str(&text).map_err(|e| {
            AssemblyError::File(SettingsError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })?;
        let tofu = view
            .tofu
            .map(|t| tofu_path(path, t, &providers, &var))
            .transpose()?;
        Ok(ProvidersFile {
            path: path.to_path_buf(),
            providers,
            tofu,
        })
    }

    /// The providers the file configures: the SDK ones by [`gosling_fleet::provider_key`],
    /// and [`TofuProvider`] under the `…/tofu` keys when there is a `[tofu]` table. Only the
    /// `tofu` binary is looked at (its active version, with `versions_dir`); no cloud is
    /// contacted.
    pub async fn build(&self, stores: &Stores) -> Result<Providers, AssemblyError> {
        let mut providers = gosling_providers::providers(&self.providers).map_err(|source| {
            AssemblyError::Provider {
                path: self.path.clone(),
                source,
            }
        })?;
        if providers.by_key.is_empty() {
            return Err(AssemblyError::NoCloud(self.path.clone()));
        }
        if let Some(t) = &self.tofu {
            let tofu_err = |key: &str, message: String| AssemblyError::Tofu {
                path: self.path.clone(),
                key: key.into(),
                message,
            };
            let binary = match &t.binary {
                TofuBinary::Path(p) => p.clone(),
                TofuBinary::Versions(dir) => Updater::new(
                    Source::github(),
                    dir,
                    stores.state.clone(),
                    stores.clock.clone(),
                )
                .map_err(|e| tofu_err("versions_dir", e.to_string()))?
                .active_binary()
                .await
                .map_err(|e| match e {
                    BinaryError::NoneActive => tofu_err(
                        "versions_dir",
                        format!(
                            "no OpenTofu version is active in {} (install one with the updater)",
                            dir.display()
                        ),
                    ),
                    e => tofu_err("versions_dir", e.to_string()),
                })?,
            };
            let mut tofu = Tofu::new(binary);
            tofu.env.extend(t.env.clone());
            tofu.inherit.extend(t.inherit.iter().cloned());
            let runner = TofuRunner::new(
                tofu,
                t.runner.clone(),
                stores.objects.clone(),
                stores.state.clone(),
                stores.clock.clone(),
            )
            .map_err(|e| tofu_err("passphrase_env", e.to_string()))?;
            Arc::new(TofuProvider::new(Arc::new(runner), t.settings.clone()))
                .register(&mut providers);
        }
        Ok(providers)
    }
}

/// `p` relative to the providers file's folder, unless absolute.
fn beside(file: &Path, p: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

fn tofu_path(
    file: &Path,
    t: TofuTable,
    providers: &ProviderSettings,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<TofuPath, AssemblyError> {
    let err = |key: &str, message: &str| AssemblyError::Tofu {
        path: file.to_path_buf(),
        key: key.into(),
        message: message.into(),
    };
    let binary = match (t.binary, t.versions_dir) {
        (Some(_), Some(_)) => {
            return Err(err("binary", "give `binary` or `versions_dir`, not both"));
        }
        (None, Some(dir)) => TofuBinary::Versions(beside(file, &dir)),
        (b, None) => {
            let b = b.unwrap_or_else(|| PathBuf::from("tofu"));
            if b.as_os_str().is_empty() {
                return Err(err("binary", "is empty"));
            }
            // A bare name is looked up on PATH; anything else must be there now.
            if b.components().count() > 1 || b.is_absolute() {
                let b = beside(file, &b);
                if !b.is_file() {
                    return Err(err("binary", &format!("{} is not a file", b.display())));
                }
                TofuBinary::Path(b)
            } else {
                TofuBinary::Path(b)
            }
        }
    };
    if t.workspaces.as_os_str().is_empty() {
        return Err(err("workspaces", "is empty"));
    }
    for (key, v) in [
        ("backend.bucket", &t.backend.bucket),
        ("backend.region", &t.backend.region),
    ] {
        if v.trim().is_empty() {
            return Err(err(key, "is empty"));
        }
    }
    let passphrase = match &t.passphrase_env {
        None => None,
        Some(name) => match var(name) {
            Some(v) if v.chars().count() >= 16 => Some(SecretString::new(v)),
            Some(_) => {
                return Err(err(
                    "passphrase_env",
                    &format!("${name} needs at least 16 characters"),
                ))
            }
            None => return Err(err("passphrase_env", &format!("${name} is not set"))),
        },
    };
    let mut settings = TofuSettings::new(t.backend);
    if let Some(v) = t.required_version {
        settings.required_version = v;
    }
    if let Some(v) = t.aws_provider_version {
        settings.aws_provider_version = v;
    }
    if let Some(v) = t.yandex_provider_version {
        settings.yandex_provider_version = v;
    }
    settings.network_mirror = t.network_mirror.clone();
    settings.extra_tags = t.extra_tags;
    settings.gosling_binary = providers.gosling_binary.clone();
    settings.ssh_authorized_keys = providers.ssh_authorized_keys.clone();
    // One file describes both paths: the OpenTofu path renders with the same clouds.
    settings.aws = providers.aws_settings();
    settings.yandex = providers.yandex_settings();
    let mut runner = RunnerConfig::new(beside(file, &t.workspaces));
    runner.network_mirror = t.network_mirror;
    runner.encryption_passphrase = passphrase;
    Ok(TofuPath {
        binary,
        runner,
        settings,
        env: t.env,
        inherit: t.inherit,
    })
}

/// The providers `choice` names. `stores` serve the OpenTofu path (plans, plugin cache,
/// `tofu_versions`); the environment is this process's.
pub async fn build_providers(
    choice: &ProviderChoice,
    stores: &Stores,
) -> Result<Providers, AssemblyError> {
    match choice {
        ProviderChoice::Local { dir, program, args } => Ok(Providers::single(Arc::new(
            LocalProvider::new(dir, program, args.clone()),
        ))),
        ProviderChoice::Cloud { config } => {
            ProvidersFile::load(config, |k| std::env::var(k).ok().filter(|v| !v.is_empty()))?
                .build(stores)
                .await
        }
    }
}
