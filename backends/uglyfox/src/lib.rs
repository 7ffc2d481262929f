//! UglyFox: runner health, pruning, Apex/Nadir pools, audit and cron Jobs, on the deployed
//! IR and the state store.
//!
//! - [`snapshot`]: what a pass looks at, read from the store at one time;
//! - [`planner`]: the pass as a pure function from a snapshot and the IR to decisions with
//!   reasons (what `uglyfox plan` prints);
//! - [`apply`]: carrying out a plan through `gosling-fleet` (`Fleet::edit`, `Lifecycle`) and
//!   the queue, every action and every guarded non-action with its audit entry;
//! - [`cron`]: cron Jobs, claimed with versioned writes so each scheduled time runs once;
//! - [`notify`]: the notification channels (webhook, e-mail);
//! - [`service`]: the loop, [`metrics`] and [`server`] (`/metrics`, `/health`);
//! - [`settings`]: command-line settings and how the stores and providers are opened.
#![warn(missing_docs)]

pub mod apply;
pub mod cron;
mod error;
pub mod metrics;
pub mod notify;
pub mod planner;
pub mod policy;
pub mod server;
pub mod service;
pub mod settings;
pub mod snapshot;

pub use apply::{Applier, Outcome, Report};
pub use error::Error;
pub use planner::{plan, Config, Decision, Guard, Kind, Plan, Reason};
pub use service::UglyFox;
pub use snapshot::{Ledger, Sample, Snapshot};
