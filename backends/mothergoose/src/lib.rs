//! MotherGoose, the control plane that turns GitLab job events into runners.
//!
//! It reads only the deployed IR and the state store (never `.fly` files). Webhooks are
//! checked and queued ([`http`]); workers run the design's tasks ([`tasks`], [`worker`]):
//! a pending job is routed to an egg ([`matching`]), recorded once, and given one runner
//! made through the provider interface; heartbeats move runners through the shared state
//! machine ([`heartbeat`]); finished single-job runners are ended through the shared
//! lifecycle. The [`reconcile`]r heals what lost webhooks and dead processes leave behind.
#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod lambda;
pub mod matching;
pub mod metrics;
pub mod reconcile;
pub mod rift;
pub mod server;
pub mod tasks;
pub mod views;
pub mod worker;

pub use app::{App, Overrides, StartError};
pub use config::{ProviderChoice, Settings};
pub use server::{start, Running};
