//! Where the state, objects and queue are, how machines are removed, who is told — and
//! opening all of it. With an embedded store (`sqlite://DIR/state.db`, what `gosling deploy`
//! uses) the objects default to `DIR/objects`, the queue to `DIR/queue.db` and local runner
//! folders to `DIR/runners`, as for MotherGoose.

use crate::apply::Applier;
use crate::cron::Cron;
use crate::metrics::Metrics;
use crate::notify::{Channels, Email, Notifier, Webhook};
use crate::planner::Config;
use crate::service::UglyFox;
use crate::Error;
use gosling_fleet::secrets::Secrets;
use gosling_fleet::{DeployedWatch, Fleet, Lifecycle, Providers, Registry};
use gosling_queue::{open_queue, QueueOptions};
use gosling_state::{
    open_objects, open_state, Cipher, ObjectStore, OpenOptions, SecretString, SharedClock,
    StateStore,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How runner machines are removed: local processes or a providers file (shared with
/// MotherGoose).
pub use gosling_tofu::ProviderChoice;

/// Everything UglyFox is told.
#[derive(Clone, Debug)]
pub struct Settings {
    /// State store URL.
    pub state: String,
    /// Object store URL (deployment IRs).
    pub objects: String,
    /// Queue URL.
    pub queue: String,
    /// `GOSLING_STATE_KEY`, if set.
    pub state_key: Option<SecretString>,
    /// The state key file.
    pub state_key_file: PathBuf,
    /// How machines are removed.
    pub provider: ProviderChoice,
    /// SMTP server for e-mail notifications (`smtps://user:pass@host`).
    pub smtp_url: Option<String>,
    /// The sender of e-mail notifications.
    pub smtp_from: String,
    /// A URL every notification is posted to (JSON).
    pub notify_webhook: Option<String>,
    /// Operators' e-mail addresses for rules with `action = "notify"`.
    pub alert_to: Vec<String>,
    /// The planner's settings.
    pub config: Config,
    /// How often cron Jobs are looked at.
    pub cron_every: Duration,
    /// How often the deployment pointer is checked.
    pub deployment_poll: Duration,
}

/// The folder of an embedded (`sqlite://` or plain path) store's database.
pub fn embedded_dir(state: &str) -> Option<PathBuf> {
    let path = match state.split_once("://") {
        Some(("sqlite", p)) => p,
        Some(_) => return None,
        None => state,
    };
    Some(
        Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    )
}

/// `DIR/name` beside an embedded store, or an error naming the flag to give.
pub fn beside_state(state: &str, name: &str, flag: &str) -> Result<PathBuf, Error> {
    embedded_dir(state).map(|d| d.join(name)).ok_or_else(|| {
        Error::Settings(format!(
            "{flag} is needed when the state is not embedded (sqlite://): `{state}`"
        ))
    })
}

/// The state of the Nest around `dir` (`sqlite://NEST/.gosling/state.db`, as `gosling`
/// uses): the first folder from `dir` upwards holding `.gosling/state.db`.
pub fn find_state(dir: &Path) -> Option<String> {
    dir.ancestors()
        .map(|d| d.join(".gosling").join("state.db"))
        .find(|p| p.is_file())
        .map(|p| format!("sqlite://{}", p.display()))
}

/// The default key file: `$XDG_CONFIG_HOME/gosling/state.key` or
/// `~/.config/gosling/state.key`, as `gosling` uses.
pub fn default_key_file() -> PathBuf {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".config"),
    };
    dir.join("gosling").join("state.key")
}

/// The notification channels the settings name.
pub fn channels_from(settings: &Settings) -> Result<Arc<dyn Notifier>, Error> {
    let email = settings
        .smtp_url
        .as_deref()
        .map(|u| Email::new(u, &settings.smtp_from))
        .transpose()?
        .map(|e| Arc::new(e) as Arc<dyn Notifier>);
    let webhook = settings
        .notify_webhook
        .as_deref()
        .map(Webhook::new)
        .transpose()?
        .map(|w| Arc::new(w) as Arc<dyn Notifier>);
    Ok(Arc::new(Channels { email, webhook }))
}

fn state_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Settings(format!("{what}: {e}"))
}

/// Opens the state and object stores; `read_only` opens nothing for writing (`plan`).
pub async fn open_stores(
    settings: &Settings,
    read_only: bool,
) -> Result<(Arc<dyn StateStore>, Arc<dyn ObjectStore>), Error> {
    let opts = OpenOptions {
        read_only,
        ..OpenOptions::default()
    };
    let store: Arc<dyn StateStore> = Arc::from(
        open_state(&settings.state, &opts)
            .await
            .map_err(|e| state_err("the state store", e))?,
    );
    let objects: Arc<dyn ObjectStore> = Arc::from(
        open_objects(&settings.objects, &opts)
            .await
            .map_err(|e| state_err("the object store", e))?,
    );
    Ok((store, objects))
}

/// What a running UglyFox is made of.
pub struct Opened {
    /// The service.
    pub fox: Arc<UglyFox>,
    /// The deployment in force, reloaded when it changes.
    pub deployed: DeployedWatch,
    /// Counters (shared with the service).
    pub metrics: Arc<Metrics>,
}

/// Opens everything `uglyfox run` needs. `providers` overrides the settings' choice (tests).
pub async fn open(
    settings: &Settings,
    clock: SharedClock,
    providers: Option<Providers>,
) -> Result<Opened, Error> {
    let (store, objects) = open_stores(settings, false).await?;
    let queue = Arc::from(
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
    .map_err(|e| state_err("the state key", e))?
    {
        Some((c, _)) => c,
        None => {
            return Err(Error::Settings(format!(
                "no state key: set GOSLING_STATE_KEY or create {} (`gosling deploy` makes it)",
                settings.state_key_file.display()
            )))
        }
    };
    let providers = match providers {
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
    let deployed = DeployedWatch::start(store.clone(), objects, settings.deployment_poll).await?;
    let notifier = channels_from(settings)?;
    let registry = Arc::new(Registry::new(
        Arc::new(Secrets::from_env(Some(cipher.clone()))),
        cipher,
        gosling_gitlab::Retry::default(),
    ));
    let fleet = Fleet::new(store.clone(), clock.clone(), "uglyfox");
    let lifecycle = Lifecycle {
        fleet: fleet.clone(),
        providers,
        registry,
        policy: settings.config.termination,
    };
    let metrics = Arc::new(Metrics::default());
    let mut applier = Applier::new(
        fleet,
        lifecycle,
        Arc::clone(&queue),
        notifier.clone(),
        metrics.clone(),
    );
    applier.alert_to = settings.alert_to.clone();
    let cron = Cron {
        store: store.clone(),
        queue,
        notifier,
        metrics: metrics.clone(),
        lost_grace: settings.config.provisioning_timeout,
    };
    let fox = Arc::new(UglyFox {
        store,
        clock,
        config: settings.config.clone(),
        applier,
        cron,
        cron_every: settings.cron_every,
    });
    Ok(Opened {
        fox,
        deployed,
        metrics,
    })
}
