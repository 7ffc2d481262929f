//! Settings: command-line flags first, then environment variables (clap reads both), then
//! the config file (`--config`, `GOSLING_CONFIG`, or `~/.config/gosling/config.toml`).
//! The config file lives outside the Nest; secrets never come from the Nest.

use gosling_state::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read the config file `{}`: {source}", path.display())]
    Read {
        /// Which.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file `{}`: {message}", path.display())]
    Parse {
        /// Which.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The config file's keys (every one optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// State store URL.
    pub state: Option<String>,
    /// Object store URL.
    pub objects: Option<String>,
    /// GitLab API token (Maintainer on the egg projects) for webhooks.
    pub gitlab_token: Option<String>,
    /// The URL GitLab sends job events to (MotherGoose's webhook endpoint).
    pub webhook_url: Option<String>,
    /// The shared secret GitLab sends with each event.
    pub webhook_secret: Option<String>,
    /// The file holding the state encryption key.
    pub state_key_file: Option<PathBuf>,
}

/// Settings as given on the command line or in the environment (`None`: not given).
#[derive(Clone, Debug, Default)]
pub struct Given {
    /// `--state` / `GOSLING_STATE`
    pub state: Option<String>,
    /// `--objects` / `GOSLING_OBJECTS`
    pub objects: Option<String>,
    /// `--gitlab-token` / `GOSLING_GITLAB_TOKEN`
    pub gitlab_token: Option<String>,
    /// `--webhook-url` / `GOSLING_WEBHOOK_URL`
    pub webhook_url: Option<String>,
    /// `--webhook-secret` / `GOSLING_WEBHOOK_SECRET`
    pub webhook_secret: Option<String>,
    /// `--state-key-file` / `GOSLING_STATE_KEY_FILE`
    pub state_key_file: Option<PathBuf>,
    /// `GOSLING_STATE_KEY`
    pub state_key: Option<String>,
}

/// The settings a command uses.
#[derive(Clone, Debug)]
pub struct Settings {
    /// State store URL.
    pub state: String,
    /// Object store URL.
    pub objects: String,
    /// GitLab token, when webhooks are to be registered.
    pub gitlab_token: Option<SecretString>,
    /// Webhook target URL.
    pub webhook_url: Option<String>,
    /// Webhook secret given explicitly (else the stored one, else a new one).
    pub webhook_secret: Option<SecretString>,
    /// Key file for secrets at rest.
    pub state_key_file: PathBuf,
    /// The key itself (`GOSLING_STATE_KEY`), if set.
    pub state_key: Option<SecretString>,
}

/// `$XDG_CONFIG_HOME/gosling` or `~/.config/gosling`.
pub use gosling_state::config_dir;

/// Reads the config file: `explicit` must exist; the default one may be missing.
pub fn read_config(explicit: Option<&Path>) -> Result<ConfigFile, SettingsError> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => (config_dir().join("config.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConfigFile::default())
        }
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path,
        message: e.to_string(),
    })
}

impl Settings {
    /// Merges flags/environment over the config file over the defaults for the Nest at
    /// `nest` (`sqlite://NEST/.gosling/state.db`, `NEST/.gosling/objects`).
    pub fn resolve(given: Given, file: ConfigFile, nest: &Path) -> Settings {
        let local = nest.join(".gosling");
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Settings {
            state: nonempty(given.state)
                .or(nonempty(file.state))
                .unwrap_or_else(|| format!("sqlite://{}", local.join("state.db").display())),
            objects: nonempty(given.objects)
                .or(nonempty(file.objects))
                .unwrap_or_else(|| local.join("objects").display().to_string()),
            gitlab_token: nonempty(given.gitlab_token)
                .or(nonempty(file.gitlab_token))
                .map(SecretString::new),
            webhook_url: nonempty(given.webhook_url).or(nonempty(file.webhook_url)),
            webhook_secret: nonempty(given.webhook_secret)
                .or(nonempty(file.webhook_secret))
                .map(SecretString::new),
            state_key_file: given
                .state_key_file
                .or(file.state_key_file)
                .unwrap_or_else(gosling_state::default_key_file),
            state_key: nonempty(given.state_key).map(SecretString::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_env_win_over_the_file() {
        let file: ConfigFile = toml::from_str(
            "state = \"dynamodb://file\"\nobjects = \"s3://b/p\"\nwebhook_url = \"https://mg/hook\"\n",
        )
        .unwrap();
        let given = Given {
            state: Some("sqlite:///tmp/flag.db".into()),
            ..Given::default()
        };
        let s = Settings::resolve(given, file, Path::new("/nest"));
        assert_eq!(s.state, "sqlite:///tmp/flag.db");
        assert_eq!(s.objects, "s3://b/p");
        assert_eq!(s.webhook_url.as_deref(), Some("https://mg/hook"));
        assert!(s.gitlab_token.is_none());
        let d = Settings::resolve(Given::default(), ConfigFile::default(), Path::new("/nest"));
        assert_eq!(d.state, "sqlite:///nest/.gosling/state.db");
        assert_eq!(d.objects, "/nest/.gosling/objects");
        assert!(toml::from_str::<ConfigFile>("bogus = 1").is_err());
    }
}
