//! What the executors share, written once:
//!
//! - [`state`]: the runner state machine (one table of allowed changes) and the pools;
//! - [`runners`]: runner records changed only through it, each change a versioned write
//!   with its audit entry;
//! - [`provider`]: the provider interface every cloud implements, and [`local`], the
//!   provider that runs runners as processes on this machine;
//! - [`tasks`]: the design's tasks as queue messages;
//! - [`credentials`]: runner credentials, admin and Rift tokens;
//! - [`secrets`]: resolving the Nest's secret references;
//! - [`deployed`]: the deployed IR, reloaded when a deployment changes;
//! - [`slots`]: an egg's `max_runners`, held across concurrent creators;
//! - [`lifecycle`]: ending runners (drain, remove, retry, force) and [`registry`]: their
//!   GitLab registrations.
#![warn(missing_docs)]

pub mod credentials;
pub mod deployed;
pub mod lifecycle;
pub mod local;
pub mod provider;
pub mod registry;
pub mod runners;
pub mod secrets;
pub mod slots;
pub mod state;
pub mod tasks;

pub use deployed::{load_current, load_ir, Deployed, DeployedError, DeployedWatch};
pub use lifecycle::{Lifecycle, Step, TerminationPolicy};
pub use provider::{
    provider_key, Bootstrap, Handle, MachineStatus, Provider, ProviderError, Providers, RunnerSpec,
    SharedProvider,
};
pub use registry::{Registration, Registry, RegistryError};
pub use runners::{set_state, state_of, unended_runners, Also, Edit, Fleet, FleetError};
pub use state::{IllegalTransition, Pool, RunnerState, ALL_STATES};
pub use tasks::Task;
