//! `fly check`: report every problem in the given files and directories: syntax, types,
//! interpolation, policy conditions, and the Nest-wide rules across all of them.

use super::{report, EXIT_FINDINGS};
use crate::files;
use fly_types::{check, Env, SourceFile};
use miette::{IntoDiagnostic, WrapErr};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check `.fly` files and report every problem.
///
/// The files are checked together as one Nest (duplicate egg names across files, job tags no
/// egg provides, …). `${env.NAME}` references to unset variables are warnings here and errors
/// in `fly build`.
///
/// Example: `fly check` (the Nest in the current directory), `fly check Eggs/ --format json`
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for `*.fly`).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = report::Format::Human)]
    format: report::Format,
}

/// Runs the subcommand.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    let paths = files::collect(&args.paths).into_diagnostic()?;
    let mut sources = Vec::with_capacity(paths.len());
    for path in &paths {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
        sources.push(SourceFile::new(files::display(path), text));
    }
    let compilation = check(sources, &Env::from_process(false));
    let errors = report::print(&compilation, args.format)?;
    Ok(if errors > 0 {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}
