//! Printing a compilation's diagnostics for people or tools.

use fly_syntax::render::{JsonDiagnostic, Sources};
use fly_types::Compilation;
use miette::IntoDiagnostic;

/// How diagnostics are printed.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Source snippets with carets, on standard error.
    Human,
    /// A JSON array of diagnostics on standard output.
    Json,
}

/// Prints every diagnostic and a summary; returns the number of errors.
pub fn print(compilation: &Compilation, format: Format) -> miette::Result<usize> {
    let mut sources = Sources::new();
    let ids: Vec<_> = compilation
        .files
        .iter()
        .map(|f| sources.add(f.path.clone(), f.text.clone()))
        .collect();
    let (mut errors, mut warnings) = (0usize, 0usize);
    let mut json: Vec<JsonDiagnostic> = Vec::new();
    for (file, id) in compilation.files.iter().zip(&ids) {
        for d in &file.diagnostics {
            if d.is_error() {
                errors += 1;
            } else {
                warnings += 1;
            }
            match format {
                Format::Human => sources.render_stderr(*id, d),
                Format::Json => json.push(sources.json(*id, d)),
            }
        }
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json).into_diagnostic()?),
        Format::Human => {
            let n = compilation.files.len();
            eprintln!(
                "checked {n} file{}: {errors} error{}, {warnings} warning{}",
                plural(n),
                plural(errors),
                plural(warnings)
            )
        }
    }
    Ok(errors)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
