//! `fly build`: compile a Nest to the deployment IR.

use super::{report, EXIT_FINDINGS};
use fly_types::{compile, load_nest, Env};
use miette::{IntoDiagnostic, WrapErr};
use std::path::PathBuf;
use std::process::ExitCode;

/// Compile a Nest to the deployment IR (JSON).
///
/// Every `*.fly` file under the Nest is compiled together; `${env.NAME}` must be set.
/// Nothing is written when there is any error.
///
/// Example: `fly build . -o deployment.json`
#[derive(clap::Args)]
pub struct Args {
    /// The Nest directory.
    #[arg(default_value = ".")]
    nest: PathBuf,
    /// Write the IR here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    if !args.nest.is_dir() {
        miette::bail!("`{}` is not a directory", args.nest.display());
    }
    let files = load_nest(&args.nest).into_diagnostic()?;
    let compilation = compile(files, &Env::from_process(true));
    let Some(ir) = &compilation.ir else {
        report::print(&compilation, report::Format::Human)?;
        return Ok(ExitCode::from(EXIT_FINDINGS));
    };
    for (path, d) in compilation.diagnostics() {
        eprintln!("{path}: {}: {}", d.severity, d.message);
    }
    let json = ir.to_json();
    match &args.output {
        Some(path) => {
            std::fs::write(path, json)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write `{}`", path.display()))?;
            eprintln!(
                "wrote {} ({} eggs, {} jobs)",
                path.display(),
                ir.eggs.len(),
                ir.jobs.len()
            );
        }
        None => print!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}
