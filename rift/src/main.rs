//! The `rift` binary: parses the configuration, starts the server, and shuts it down
//! gracefully on SIGTERM or SIGINT (SIGHUP reloads the auth file).

use clap::Parser;
use miette::{IntoDiagnostic, WrapErr};
use tracing_subscriber::EnvFilter;

fn main() -> miette::Result<()> {
    let cli = rift::config::Cli::parse();
    let config = rift::Config::resolve(cli)?;
    let filter = EnvFilter::try_new(&config.log)
        .into_diagnostic()
        .wrap_err("invalid log filter (RIFT_LOG / --log)")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()
        .wrap_err("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: rift::Config) -> miette::Result<()> {
    let running = rift::start(config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .into_diagnostic()
        .wrap_err("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down gracefully"),
    }
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
