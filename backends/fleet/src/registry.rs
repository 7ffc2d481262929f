//! Runners' registrations in GitLab: created with the egg's token (resolved from its
//! secret reference) before the machine starts, deleted when the runner ends. The runner
//! authentication token is sealed before it is stored (Property 34) and never logged.

use crate::secrets::{SecretError, Secrets};
use gosling_gitlab::{CreateRunner, GitLab, GitLabError, Retry};
use gosling_state::{Cipher, Runner, Sealed, SecretString, StateError, StateStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a registration call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The egg's token could not be resolved.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// GitLab refused or could not be reached.
    #[error(transparent)]
    GitLab(#[from] GitLabError),
    /// Sealing the token failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl RegistryError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Secret(e) => e.is_transient(),
            RegistryError::GitLab(e) => e.is_transient(),
            RegistryError::State(_) => true,
        }
    }
}

/// A GitLab runner registration.
#[derive(Debug)]
pub struct Registration {
    /// GitLab's runner id.
    pub id: i64,
    /// The sealed `glrt-` token.
    pub token: Sealed,
}

/// The sealing context of a runner's GitLab token.
pub fn token_context(runner_id: &str) -> String {
    format!("runners/{runner_id}/gitlab_runner_token")
}

/// Registers and deletes runners in GitLab.
pub struct Registry {
    secrets: Arc<Secrets>,
    cipher: Cipher,
    retry: Retry,
    clients: Mutex<HashMap<String, GitLab>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    /// A registry resolving tokens with `secrets` and sealing with `cipher`.
    pub fn new(secrets: Arc<Secrets>, cipher: Cipher, retry: Retry) -> Registry {
        Registry {
            secrets,
            cipher,
            retry,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The cipher tokens are sealed with.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// A GitLab client authenticated with the token `reference` names.
    pub async fn client(
        &self,
        store: &dyn StateStore,
        reference: &str,
    ) -> Result<GitLab, RegistryError> {
        let token = self.secrets.resolve(store, reference).await?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("{reference}\0{}", token.expose());
        Ok(clients
            .entry(key)
            .or_insert_with(|| GitLab::new(token, self.retry))
            .clone())
    }

    /// Registers `runner_id` as a project runner of `egg`.
    pub async fn register(
        &self,
        store: &dyn StateStore,
        egg: &fly_ir::Egg,
        runner_id: &str,
        paused: bool,
    ) -> Result<Registration, RegistryError> {
        let gl = self.client(store, &egg.gitlab.token_secret).await?;
        let created = gl
            .create_runner(
                &egg.gitlab.url,
                &CreateRunner {
                    runner_type: "project_type",
                    project_id: egg.gitlab.project_id,
                    description: format!("gosling {runner_id} ({})", egg.name),
                    tag_list: egg.runner.tags.clone(),
                    run_untagged: egg.runner.run_untagged,
                    maximum_timeout: Some(egg.runner.timeout_s).filter(|t| *t > 0),
                    paused,
                    maintenance_note: format!(
                        "Created by Polar Gosling for egg `{}`; removed when the runner ends.",
                        egg.name
                    ),
                },
            )
            .await?;
        let token = self
            .cipher
            .seal(&created.token, &token_context(runner_id))?;
        Ok(Registration {
            id: created.id,
            token,
        })
    }

    /// The runner's GitLab token, opened.
    pub fn token(&self, runner: &Runner) -> Result<Option<SecretString>, RegistryError> {
        runner
            .gitlab_runner_token
            .as_ref()
            .map(|t| self.cipher.open(t, &token_context(&runner.id)))
            .transpose()
            .map_err(RegistryError::from)
    }

    /// Deletes the runner's registration (nothing to do when it has none; one that is
    /// already gone is not an error). `token_secret` is the egg's token reference.
    pub async fn unregister(
        &self,
        store: &dyn StateStore,
        runner: &Runner,
        token_secret: &str,
    ) -> Result<(), RegistryError> {
        let (Some(id), Some(url)) = (runner.gitlab_runner_id, runner.gitlab_url.as_deref()) else {
            return Ok(());
        };
        let gl = self.client(store, token_secret).await?;
        gl.delete_runner(url, id).await?;
        Ok(())
    }
}
