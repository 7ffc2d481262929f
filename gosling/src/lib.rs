//! The `gosling` command: create a Nest, add Eggs and Jobs, validate, deploy the compiled IR
//! to the state store (with GitLab webhooks), roll back, and show status.
//!
//! The library half holds everything the binary does, so that tests drive it directly:
//! [`scaffold`] (init and add), [`plan`] (what a deployment changes), [`deploy`] (deploy,
//! rollback, status over [`gosling_state`]), [`gitlab`] (webhook registration), [`settings`]
//! and [`cli`].
#![warn(missing_docs)]

pub mod cli;
/// The GitLab REST client (shared with MotherGoose).
pub use gosling_gitlab as gitlab;
pub mod deploy;
pub mod fleet_view;
pub mod nest;
pub mod plan;
pub mod scaffold;
pub mod settings;
