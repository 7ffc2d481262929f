//! `fly check`: report every syntax error in the given files and directories.

use super::EXIT_FINDINGS;
use crate::files;
use fly_syntax::render::{JsonDiagnostic, Sources};
use miette::{IntoDiagnostic, WrapErr};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check `.fly` files and report every problem.
///
/// Example: `fly check Eggs/ Jobs/build.fly --format json`
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for `*.fly`).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Source snippets with carets, on standard error.
    Human,
    /// A JSON array of diagnostics on standard output.
    Json,
}

/// Runs the subcommand.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    let paths = files::collect(&args.paths).into_diagnostic()?;
    let mut sources = Sources::new();
    let mut json: Vec<JsonDiagnostic> = Vec::new();
    let (mut errors, mut warnings) = (0usize, 0usize);
    for path in &paths {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read `{}`", path.display()))?;
        let parse = fly_syntax::parse(&text);
        let id = sources.add(files::display(path), text);
        for d in &parse.diagnostics {
            if d.is_error() {
                errors += 1;
            } else {
                warnings += 1;
            }
            match args.format {
                Format::Human => sources.render_stderr(id, d),
                Format::Json => json.push(sources.json(id, d)),
            }
        }
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json).into_diagnostic()?),
        Format::Human => eprintln!(
            "checked {} file{}: {} error{}, {} warning{}",
            paths.len(),
            plural(paths.len()),
            errors,
            plural(errors),
            warnings,
            plural(warnings)
        ),
    }
    Ok(if errors > 0 {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
