//! `fly`: check, format and serve Fly files.

mod cmd;

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
    Check(cmd::check::Args),
    Fmt(cmd::fmt::Args),
}

/// Exit status: 0 clean, 1 findings, 2 usage or I/O trouble.
pub(crate) const EXIT_FINDINGS: u8 = 1;
pub(crate) const EXIT_TROUBLE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => cmd::check::run(args),
        Command::Fmt(args) => cmd::fmt::run(args),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}
