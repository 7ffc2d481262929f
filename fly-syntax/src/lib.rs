//! The Fly language front end: lexer, parser, syntax tree, line index and diagnostics.
//!
//! ```
//! let parse = fly_syntax::parse("egg \"app\" {\n  type = \"vm\"\n}\n");
//! assert!(parse.diagnostics.is_empty());
//! assert_eq!(parse.file.items.len(), 1);
//! ```
#![warn(missing_docs)]

pub mod ast;
pub mod diagnostic;
pub mod lexer;
pub mod line_index;
mod parser;
pub mod render;
mod span;
pub mod token;

pub use diagnostic::{Code, Diagnostic, Label, Severity};
pub use line_index::{Encoding, LineCol, LineIndex};
pub use parser::{parse, Parse};
pub use span::Span;

/// A comment, kept beside the tree for the formatter and the language server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Comment {
    /// `#`/`//` line comment or `/* */` block comment.
    pub kind: CommentKind,
    /// The comment's text, markers included (a line comment excludes its line break).
    pub span: Span,
}

/// The two kinds of comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CommentKind {
    /// `# …` or `// …`, to the end of the line.
    Line,
    /// `/* … */`
    Block,
}
