//! Runner mode as `gosling runner` runs it (the same options and entry point), built here
//! so that runner mode's tests run real processes without building the whole `gosling`.

use clap::Parser;

/// `gosling runner`.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: gosling_runner::RunnerArgs,
}

fn main() -> std::process::ExitCode {
    match gosling_runner::run(Cli::parse().args) {
        Ok(outcome) => std::process::ExitCode::from(outcome.code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
