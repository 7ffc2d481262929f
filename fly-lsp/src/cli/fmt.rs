//! `fly fmt`: rewrite files in the canonical style.

use super::EXIT_FINDINGS;
use crate::files;
use fly_fmt::FormatError;
use fly_syntax::render::Sources;
use miette::{IntoDiagnostic, WrapErr};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Format `.fly` files in place (or check that they are formatted).
///
/// Examples: `fly fmt` (everything under the current directory), `fly fmt --check .`,
/// `fly fmt --diff Eggs/`, `cat egg.fly | fly fmt -`.
#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for `*.fly`); `-` reads standard input
    /// and writes the result to standard output.
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Write nothing; list the files that would change and exit 1 if there are any.
    #[arg(long)]
    check: bool,
    /// Write nothing; print a unified diff of what would change and exit 1 if anything would.
    #[arg(long)]
    diff: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    if args.paths.len() == 1 && args.paths[0].as_os_str() == "-" {
        return stdin(&args);
    }
    if args.paths.iter().any(|p| p.as_os_str() == "-") {
        miette::bail!("`-` (standard input) cannot be combined with other paths");
    }
    let paths = files::collect(&args.paths).into_diagnostic()?;
    let mut failed = false;
    let mut changed = 0usize;
    let mut sources = Sources::new();
    for path in &paths {
        let name = files::display(path);
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read `{name}`"))?;
        let formatted = match fly_fmt::format(&text) {
            Ok(f) => f,
            Err(err) => {
                failed = true;
                report(&mut sources, &name, &text, err);
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        changed += 1;
        if args.diff {
            print_diff(&name, &text, &formatted)?;
        } else if args.check {
            println!("{name}");
        } else {
            std::fs::write(path, &formatted)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write `{name}`"))?;
            eprintln!("formatted {name}");
        }
    }
    let dry = args.check || args.diff;
    Ok(if failed || (dry && changed > 0) {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

fn stdin(args: &Args) -> miette::Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .into_diagnostic()
        .wrap_err("cannot read standard input")?;
    match fly_fmt::format(&text) {
        Ok(formatted) => {
            if args.diff {
                print_diff("<stdin>", &text, &formatted)?;
            } else {
                std::io::stdout()
                    .write_all(formatted.as_bytes())
                    .into_diagnostic()?;
            }
            let dry = args.check || args.diff;
            Ok(if dry && formatted != text {
                ExitCode::from(EXIT_FINDINGS)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(err) => {
            report(&mut Sources::new(), "<stdin>", &text, err);
            Ok(ExitCode::from(EXIT_FINDINGS))
        }
    }
}

fn report(sources: &mut Sources, name: &str, text: &str, err: FormatError) {
    match err {
        FormatError::Syntax(diags) => {
            let id = sources.add(name, text);
            for d in &diags {
                sources.render_stderr(id, d);
            }
            eprintln!("{name}: not formatted because of syntax errors");
        }
        FormatError::Internal(msg) => eprintln!("{name}: not formatted: {msg}"),
    }
}

fn print_diff(name: &str, old: &str, new: &str) -> miette::Result<()> {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string();
    std::io::stdout()
        .write_all(text.as_bytes())
        .into_diagnostic()
}
