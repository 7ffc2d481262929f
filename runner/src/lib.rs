//! Runner mode (`gosling runner`): installs, configures, updates, supervises and stops the
//! GitLab Runner agent on every runner, and reports its health to MotherGoose.
//!
//! [`run`] is the whole command: [`args`] (options), [`client`] (MotherGoose over TLS 1.3),
//! [`agent_config`] (config.toml), [`version`] (agent version sync), [`agent`] (the
//! gitlab-runner process), [`observe`] (what the agent shows of itself), [`health`]
//! (CPU, memory, disk), [`heartbeat`] (heartbeats, outbox, backoff, silence), [`job`]
//! (self-management jobs) and [`supervisor`] (signals, instructions, deadline).
#![warn(missing_docs)]

pub mod agent;
pub mod agent_config;
pub mod args;
pub mod client;
pub mod error;
pub mod health;
pub mod heartbeat;
pub mod job;
pub mod observe;
pub mod supervisor;
pub mod version;

pub use args::RunnerArgs;
pub use error::RunnerError;
pub use supervisor::Outcome;

use std::io::IsTerminal;

/// Runs runner mode with `args` to its end, on a runtime of its own, logging to standard
/// error (`GOSLING_LOG` filters, default `info`). The outcome's code is the exit status.
pub fn run(mut args: RunnerArgs) -> Result<Outcome, RunnerError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOSLING_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    args.forget_inherited_config(std::env::args_os());
    let settings = args::Settings::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| RunnerError::Io {
            what: "starting the async runtime",
            source,
        })?;
    let outcome = runtime.block_on(supervisor::main(settings));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}
