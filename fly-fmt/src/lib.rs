//! The Fly formatter: one canonical layout, like `terraform fmt`.
//!
//! * two-space indentation; `=` aligned within runs of consecutive one-line attributes;
//! * runs of blank lines collapsed to one, none after `{` or before `}`;
//! * no trailing whitespace, exactly one final newline;
//! * lists and maps stay on one line when written on one line without comments, otherwise
//!   one element per line;
//! * strings, heredoc bodies and numbers are printed exactly as written;
//! * every comment is kept where it was (leading, trailing, dangling).
//!
//! Formatting is a pure function of the text: it never touches the file system and never
//! waits on analysis. A file with syntax errors is never formatted.

mod printer;

use fly_syntax::{ast::File, Diagnostic, Parse};

/// Why a text could not be formatted.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The text has syntax errors; it is left alone.
    #[error("the file has {} syntax error(s)", .0.iter().filter(|d| d.is_error()).count())]
    Syntax(Vec<Diagnostic>),
    /// The printer would have dropped a comment: a bug, reported rather than written.
    #[error("internal formatter error: {0}")]
    Internal(String),
}

/// Formats `src`, or says why not.
pub fn format(src: &str) -> Result<String, FormatError> {
    let parse = fly_syntax::parse(src);
    format_parsed(src, &parse)
}

/// Formats `src` from its existing parse (the language server reuses its parse).
pub fn format_parsed(src: &str, parse: &Parse) -> Result<String, FormatError> {
    if parse.has_errors() {
        return Err(FormatError::Syntax(parse.diagnostics.clone()));
    }
    printer::format(src, parse)
}

/// Prints a syntax tree with no source at hand (generated trees, code actions): canonical
/// layout, strings escaped canonically, no comments.
pub fn print(file: &File) -> String {
    printer::print(file)
}

/// Prints one value with no source at hand, as [`print`] would inside a file.
pub fn print_expr(expr: &fly_syntax::ast::Expr) -> String {
    printer::print_expr(expr)
}
