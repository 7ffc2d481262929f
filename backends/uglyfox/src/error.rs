//! UglyFox's errors.

use gosling_fleet::{DeployedError, FleetError};
use gosling_queue::QueueError;
use gosling_state::StateError;

/// Why an UglyFox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A runner change failed.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The deployed IR could not be read.
    #[error(transparent)]
    Deployed(#[from] DeployedError),
    /// A notification could not be delivered.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The runner providers could not be assembled (`--provider`, the providers file).
    #[error("providers: {0}")]
    Providers(#[from] gosling_tofu::AssemblyError),
    /// The settings are not usable.
    #[error("{0}")]
    Settings(String),
}
