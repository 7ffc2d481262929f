//! Resolving the secret references a Nest names (`token_secret = "vault://gitlab/token"`)
//! to their values, in the executors only (the Nest never holds a secret).
//!
//! Sources, first match wins:
//! 1. the environment: `GOSLING_SECRET_<REF>` where `<REF>` is the reference upper-cased
//!    with every other character than a letter or digit turned into `_`
//!    (`vault://gitlab/runner-token` → `GOSLING_SECRET_VAULT_GITLAB_RUNNER_TOKEN`);
//! 2. the state store: a value set with `gosling secret set REF` (sealed, Property 34);
//! 3. HashiCorp Vault for `vault://PATH/KEY` when `VAULT_ADDR` and `VAULT_TOKEN` are set
//!    (KV version 2 under the mount `VAULT_KV_MOUNT`, default `secret`: field `KEY` of
//!    `PATH`).

use gosling_state::{Cipher, Expect, SecretString, StateError, StateStore};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a secret could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No source knows it.
    #[error(
        "secret `{reference}` is not available: set {env} in the environment of this \
         service, store it with `gosling secret set {reference}`{vault}"
    )]
    Missing {
        /// The reference.
        reference: String,
        /// The environment variable that would provide it.
        env: String,
        /// A hint about Vault, for `vault://` references.
        vault: &'static str,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Vault answered with an error.
    #[error("Vault: {0}")]
    Vault(String),
}

impl SecretError {
    /// Whether trying again later may help (a source was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretError::State(_) | SecretError::Vault(_))
    }
}

/// The environment variable that provides `reference`.
pub fn env_name(reference: &str) -> String {
    let mut s = String::from("GOSLING_SECRET_");
    let mut last_us = true;
    for c in reference.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_uppercase());
            last_us = false;
        } else if !last_us {
            s.push('_');
            last_us = true;
        }
    }
    while s.ends_with('_') {
        s.pop();
    }
    s
}

fn store_name(reference: &str) -> String {
    format!("ref:{reference}")
}

fn context(reference: &str) -> String {
    format!("meta/secret-ref/{reference}")
}

/// Stores the value of a reference sealed in the store (what `gosling secret set` does).
pub async fn put_reference(
    store: &dyn StateStore,
    cipher: &Cipher,
    reference: &str,
    value: &SecretString,
) -> Result<(), SecretError> {
    let name = store_name(reference);
    let sealed = cipher.seal(value, &context(reference))?;
    let expect = match store.secret(&name).await? {
        Some(v) => Expect::Version(v.version),
        None => Expect::Absent,
    };
    store.put_secret(&name, &sealed, expect).await?;
    Ok(())
}

/// Resolves references, caching values for a short while.
pub struct Secrets {
    env: HashMap<String, String>,
    cipher: Option<Cipher>,
    http: reqwest::Client,
    vault: Option<(String, SecretString, String)>,
    cache: Mutex<HashMap<String, (Instant, SecretString)>>,
    ttl: Duration,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("vault", &self.vault.as_ref().map(|v| v.0.clone()))
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// Sources from the process environment and the store (opened with `cipher`).
    pub fn from_env(cipher: Option<Cipher>) -> Secrets {
        Secrets::new(std::env::vars().collect(), cipher)
    }

    /// Sources from the given environment and the store.
    pub fn new(env: HashMap<String, String>, cipher: Option<Cipher>) -> Secrets {
        let vault = match (env.get("VAULT_ADDR"), env.get("VAULT_TOKEN")) {
            (Some(addr), Some(token)) if !addr.is_empty() && !token.is_empty() => Some((
                addr.trim_end_matches('/').to_string(),
                SecretString::new(token.clone()),
                env.get("VAULT_KV_MOUNT")
                    .cloned()
                    .unwrap_or_else(|| "secret".into()),
            )),
            _ => None,
        };
        Secrets {
            env,
            cipher,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            vault,
            cache: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(60),
        }
    }

    /// The value of `reference`.
    pub async fn resolve(
        &self,
        store: &dyn StateStore,
        reference: &str,
    ) -> Result<SecretString, SecretError> {
        let env = env_name(reference);
        if let Some(v) = self.env.get(&env).filter(|v| !v.is_empty()) {
            return Ok(SecretString::new(v.clone()));
        }
        if let Some((at, v)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(reference)
        {
            if at.elapsed() < self.ttl {
                return Ok(v.clone());
            }
        }
        let value = self.lookup(store, reference, &env).await?;
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reference.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }

    async fn lookup(
        &self,
        store: &dyn StateStore,
        reference: &str,
        env: &str,
    ) -> Result<SecretString, SecretError> {
        if let Some(cipher) = &self.cipher {
            if let Some(sealed) = store.secret(&store_name(reference)).await? {
                return Ok(cipher.open(&sealed.item, &context(reference))?);
            }
        }
        if let (Some(path), Some(vault)) = (reference.strip_prefix("vault://"), &self.vault) {
            return self.read_vault(vault, reference, path).await;
        }
        Err(SecretError::Missing {
            reference: reference.into(),
            env: env.into(),
            vault: if reference.starts_with("vault://") {
                ", or set VAULT_ADDR and VAULT_TOKEN"
            } else {
                ""
            },
        })
    }

    async fn read_vault(
        &self,
        (addr, token, mount): &(String, SecretString, String),
        reference: &str,
        path: &str,
    ) -> Result<SecretString, SecretError> {
        let (secret_path, key) = path
            .rsplit_once('/')
            .ok_or_else(|| SecretError::Vault(format!("`{reference}` has no /KEY")))?;
        let url = format!("{addr}/v1/{mount}/data/{secret_path}");
        let resp = self
            .http
            .get(&url)
            .header("X-Vault-Token", token.expose())
            .send()
            .await
            .map_err(|e| SecretError::Vault(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(SecretError::Vault(format!("GET {url} answered {status}")));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| SecretError::Vault(format!("GET {url}: {e}")))?;
        body.pointer("/data/data")
            .and_then(|d| d.get(key))
            .and_then(|v| v.as_str())
            .map(SecretString::new)
            .ok_or_else(|| SecretError::Vault(format!("{url} has no text field `{key}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names() {
        assert_eq!(
            env_name("vault://gitlab/runner-token"),
            "GOSLING_SECRET_VAULT_GITLAB_RUNNER_TOKEN"
        );
        assert_eq!(env_name("aws-sm://ci/gl"), "GOSLING_SECRET_AWS_SM_CI_GL");
        assert_eq!(
            env_name("yc-lockbox://e6q/key"),
            "GOSLING_SECRET_YC_LOCKBOX_E6Q_KEY"
        );
    }
}
