//! The `fly` command line: argument parsing and one module per subcommand.

pub mod build;
pub mod check;
pub mod fmt;
pub mod report;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The Fly language toolchain.
#[derive(Parser)]
#[command(name = "fly", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Check(check::Args),
    Fmt(fmt::Args),
    Build(build::Args),
    Lsp(LspArgs),
}

/// Serve the Language Server Protocol on standard input and output (what editors start).
///
/// Example: configure your editor to run `fly lsp` for `*.fly` files.
#[derive(clap::Args)]
struct LspArgs {
    /// Accepted for compatibility with clients that pass it; stdio is the only transport.
    #[arg(long)]
    stdio: bool,
}

/// Exit status: 0 clean, 1 findings, 2 usage or I/O trouble.
pub const EXIT_FINDINGS: u8 = 1;
pub const EXIT_TROUBLE: u8 = 2;

/// Runs `fly` with the process's arguments; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Fmt(args) => fmt::run(args),
        Command::Build(args) => build::run(args),
        Command::Lsp(_) => crate::server::run_stdio()
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| miette::miette!("the language server stopped: {e}")),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}
