//! Runner mode's errors.

use std::path::PathBuf;

/// Why runner mode could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Options missing or contradictory.
    #[error("{0}")]
    Usage(String),
    /// The configuration is another runner's or another egg's.
    #[error("{0}")]
    Mismatch(String),
    /// The `--config` file cannot be read.
    #[error("reading the runner configuration {path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// MotherGoose refused or could not be reached.
    #[error(transparent)]
    Api(#[from] crate::client::ApiError),
    /// config.toml could not be generated or written.
    #[error(transparent)]
    Render(#[from] crate::agent_config::RenderError),
    /// No agent is installed and none could be.
    #[error("no gitlab-runner at {path} and none could be installed: {source}")]
    NoAgent {
        /// Where it should be.
        path: PathBuf,
        /// Why the installation failed.
        source: crate::version::InstallError,
    },
    /// The agent could not be started.
    #[error(transparent)]
    Spawn(#[from] crate::agent::SpawnError),
    /// The self-management job could not be started.
    #[error(transparent)]
    Job(#[from] crate::job::JobError),
    /// A signal handler or the runtime could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}
