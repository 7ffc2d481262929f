//! Everything a request or a task needs, opened once: the stores, the queue, the deployed
//! IR, the secrets MotherGoose checks against, the providers and the lifecycle.

use crate::config::Settings;
use crate::metrics::Metrics;
use gosling_fleet::credentials::{RunnerKeys, TokenCheck, ADMIN_TOKEN, RIFT_TOKEN};
use gosling_fleet::secrets::Secrets;
use gosling_fleet::{DeployedWatch, Fleet, Lifecycle, Providers, Registry, TerminationPolicy};
use gosling_gitlab::{Retry, SigningKey};
use gosling_queue::{open_queue, Queue, QueueOptions};
use gosling_state::{
    open_objects, open_state, Cipher, ObjectStore, OpenOptions, SecretString, SharedClock,
    StateError, StateStore,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Why MotherGoose could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state or object store.
    #[error("{what}: {source}")]
    State {
        /// Which store.
        what: &'static str,
        /// Why.
        source: StateError,
    },
    /// The queue.
    #[error("the queue: {0}")]
    Queue(#[from] gosling_queue::QueueError),
    /// The deployed IR.
    #[error("the deployed IR: {0}")]
    Deployed(#[from] gosling_fleet::DeployedError),
    /// No state key.
    #[error(
        "no state encryption key: set GOSLING_STATE_KEY, or --state-key-file to the key \
         `gosling deploy` created (default ~/.config/gosling/state.key)"
    )]
    NoKey,
    /// Bad settings.
    #[error("{0}")]
    Settings(String),
    /// The runner providers (`--provider`, the providers file).
    #[error("providers: {0}")]
    Providers(#[from] gosling_tofu::AssemblyError),
}

/// What a test or an embedding may replace.
#[derive(Clone, Default)]
pub struct Overrides {
    /// The clock (default: the system's).
    pub clock: Option<SharedClock>,
    /// The providers (default: from the settings).
    pub providers: Option<Providers>,
    /// GitLab retry policy (default: 4 attempts from 250 ms).
    pub retry: Option<Retry>,
}

/// The shared state of MotherGoose.
pub struct App {
    /// Its settings.
    pub settings: Settings,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// The object store.
    pub objects: Arc<dyn ObjectStore>,
    /// The task queue.
    pub queue: Arc<dyn Queue>,
    /// The deployment in force.
    pub deployed: DeployedWatch,
    /// The clock.
    pub clock: SharedClock,
    /// Runner records.
    pub fleet: Fleet,
    /// Ending runners.
    pub lifecycle: Lifecycle,
    /// GitLab registrations and clients.
    pub registry: Arc<Registry>,
    /// Runner credentials.
    pub keys: RunnerKeys,
    /// The webhook secret (sealed in the store by `gosling deploy`).
    webhook_secret: RwLock<Option<SecretString>>,
    /// The Standard Webhooks signing key, when deliveries are signed.
    pub signing_key: Option<SigningKey>,
    /// The admin and Rift tokens' checks.
    admin_token: TokenCheck,
    rift_token: TokenCheck,
    /// Counters.
    pub metrics: Metrics,
    /// Project job timeouts read from GitLab, by `host/project`.
    pub project_timeouts: Mutex<HashMap<String, (Instant, Option<u64>)>>,
    /// GitLab versions, by host.
    pub gitlab_versions: Mutex<HashMap<String, (Instant, String)>>,
    /// Runners being ended by a task of this process (one task at a time per runner).
    pub ending: InFlight,
}

/// Keys some work is being done for in this process, so that it is done once at a time.
#[derive(Default)]
pub struct InFlight(Mutex<std::collections::HashSet<String>>);

impl InFlight {
    /// Claims `key` until the guard is dropped; `None` while another holds it.
    pub fn claim(&self, key: &str) -> Option<Claim<'_>> {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.to_string()).then(|| Claim {
            of: self,
            key: key.to_string(),
        })
    }
}

/// A claimed key (see [`InFlight::claim`]).
pub struct Claim<'a> {
    of: &'a InFlight,
    key: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = self.of.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.key);
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "App({})", self.store.describe())
    }
}

/// The sealed secret `gosling deploy` stores and MotherGoose checks webhooks against.
pub const WEBHOOK_SECRET: &str = "webhook_secret";
const WEBHOOK_SECRET_CONTEXT: &str = "meta/webhook_secret";

fn state_err(what: &'static str) -> impl FnOnce(StateError) -> StartError {
    move |source| StartError::State { what, source }
}

impl App {
    /// Opens everything the settings name.
    pub async fn open(settings: Settings, o: Overrides) -> Result<Arc<App>, StartError> {
        let clock = o.clock.unwrap_or_else(gosling_state::system_clock);
        let opts = OpenOptions::default();
        let store: Arc<dyn StateStore> = Arc::from(
            open_state(&settings.state, &opts)
                .await
                .map_err(state_err("the state store"))?,
        );
        let objects: Arc<dyn ObjectStore> = Arc::from(
            open_objects(&settings.objects, &opts)
                .await
                .map_err(state_err("the object store"))?,
        );
        let queue: Arc<dyn Queue> = Arc::from(
            open_queue(
                &settings.queue,
                &QueueOptions {
                    clock: clock.clone(),
                    ..QueueOptions::default()
                },
            )
            .await?,
        );
        let cipher = match Cipher::load(
            settings.state_key.as_ref().map(SecretString::expose),
            &settings.state_key_file,
            None,
        )
        .map_err(state_err("the state key"))?
        {
            Some((c, _)) => c,
            None => return Err(StartError::NoKey),
        };
        let keys = RunnerKeys::load_or_create(&*store, &cipher)
            .await
            .map_err(state_err("the runner credential key"))?;
        let deployed =
            DeployedWatch::start(store.clone(), objects.clone(), settings.deployment_poll).await?;
        let providers = match o.providers {
            Some(p) => p,
            None => {
                let stores = gosling_tofu::Stores {
                    state: store.clone(),
                    objects: objects.clone(),
                    clock: clock.clone(),
                };
                gosling_tofu::build_providers(&settings.provider, &stores).await?
            }
        };
        let registry = Arc::new(Registry::new(
            Arc::new(Secrets::from_env(Some(cipher.clone()))),
            cipher,
            o.retry.unwrap_or_default(),
        ));
        let fleet = Fleet::new(store.clone(), clock.clone(), "mothergoose");
        let lifecycle = Lifecycle {
            fleet: fleet.clone(),
            providers,
            registry: registry.clone(),
            policy: TerminationPolicy::default(),
        };
        let signing_key = settings
            .signing_secret
            .as_ref()
            .map(|s| SigningKey::parse(s.expose()))
            .transpose()
            .map_err(|e| StartError::Settings(format!("--signing-secret: {e}")))?;
        let app = Arc::new(App {
            settings,
            store,
            objects,
            queue,
            deployed,
            clock,
            fleet,
            lifecycle,
            registry,
            keys,
            webhook_secret: RwLock::new(None),
            signing_key,
            admin_token: TokenCheck::new(ADMIN_TOKEN),
            rift_token: TokenCheck::new(RIFT_TOKEN),
            metrics: Metrics::default(),
            project_timeouts: Mutex::new(HashMap::new()),
            gitlab_versions: Mutex::new(HashMap::new()),
            ending: InFlight::default(),
        });
        app.refresh_webhook_secret().await;
        Ok(app)
    }

    /// Reads the webhook secret from the store again (after a deploy may have set it).
    pub async fn refresh_webhook_secret(&self) {
        let sealed = match self.store.secret(WEBHOOK_SECRET).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("reading the webhook secret failed: {e}");
                return;
            }
        };
        let opened = sealed.and_then(|s| {
            self.registry
                .cipher()
                .open(&s.item, WEBHOOK_SECRET_CONTEXT)
                .map_err(|e| tracing::error!("the stored webhook secret cannot be opened: {e}"))
                .ok()
        });
        *self
            .webhook_secret
            .write()
            .unwrap_or_else(|p| p.into_inner()) = opened;
    }

    /// The webhook secret in force.
    pub fn webhook_secret(&self) -> Option<SecretString> {
        self.webhook_secret
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates the admin token on first use; returns it when this call created it.
    pub async fn ensure_admin_token(&self) -> Result<Option<SecretString>, StateError> {
        ADMIN_TOKEN.ensure(&*self.store).await
    }

    /// Whether `presented` is the admin token (or, with `rift`, Rift's token); see
    /// [`TokenCheck`] for when the stored hashes are re-read.
    pub async fn token_ok(&self, presented: &str, rift: bool) -> bool {
        let check = if rift {
            &self.rift_token
        } else {
            &self.admin_token
        };
        check.allows(&*self.store, presented).await
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn a_key_is_claimed_once_at_a_time() {
        let ending = InFlight::default();
        let first = ending.claim("r-1");
        assert!(first.is_some());
        assert!(ending.claim("r-1").is_none());
        assert!(ending.claim("r-2").is_some());
        drop(first);
        assert!(ending.claim("r-1").is_some());
    }
}
