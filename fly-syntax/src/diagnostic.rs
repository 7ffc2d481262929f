//! The one diagnostic type of the whole Fly toolchain.
//!
//! Every stage (lexer, parser, type checker, Nest-wide rules) reports [`Diagnostic`]s; front
//! ends render them (codespan-reporting in `fly check`, LSP diagnostics in `fly lsp`, JSON).

use crate::Span;
use serde::Serialize;
use std::fmt;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A hint that needs no action.
    Note,
    /// Suspicious but allowed; does not fail `fly check`.
    Warning,
    /// Invalid; fails `fly check`.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A stable diagnostic code such as `F0001`; documented in `docs/fly-language.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Code(pub &'static str);

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The syntax codes (`F00xx`). Later stages define theirs next to the rules that emit them.
pub mod codes {
    use super::Code;
    /// A token that cannot stand where it was found.
    pub const UNEXPECTED_TOKEN: Code = Code("F0001");
    /// A quoted string not closed before the end of its line.
    pub const UNTERMINATED_STRING: Code = Code("F0002");
    /// A heredoc whose closing marker never comes.
    pub const UNTERMINATED_HEREDOC: Code = Code("F0003");
    /// A `{`, `[` or `(` never closed, or a closer with no opener.
    pub const UNBALANCED_DELIMITER: Code = Code("F0004");
    /// An unknown escape sequence or a bad `\u` escape in a string.
    pub const INVALID_ESCAPE: Code = Code("F0005");
    /// A character that starts no token.
    pub const INVALID_CHARACTER: Code = Code("F0006");
    /// A malformed number.
    pub const INVALID_NUMBER: Code = Code("F0007");
    /// Two attributes or blocks on one line (one-line blocks hold one attribute).
    pub const MISSING_NEWLINE: Code = Code("F0008");
    /// A `/*` comment never closed.
    pub const UNTERMINATED_COMMENT: Code = Code("F0009");
    /// A block label or map key that uses interpolation.
    pub const INTERPOLATED_LABEL: Code = Code("F0010");
    /// A heredoc introducer not followed by a line break.
    pub const INVALID_HEREDOC: Code = Code("F0011");
    /// Blocks or lists nested deeper than the parser accepts.
    pub const TOO_DEEP: Code = Code("F0012");
}

/// A secondary location with a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What about it.
    pub message: String,
    /// The file it is in, when not the diagnostic's own file (Nest-wide rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One finding, located in a source file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// Stable code.
    pub code: Code,
    /// One sentence saying what is wrong, in words.
    pub message: String,
    /// The primary location.
    pub span: Span,
    /// Short text shown under the primary caret.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label: String,
    /// Related locations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secondary: Vec<Label>,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with `code` at `span`.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, span, message)
    }

    /// A warning with `code` at `span`.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, span, message)
    }

    /// A diagnostic of any severity.
    pub fn new(severity: Severity, code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Sets the text under the primary caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Adds a related location in the same file.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
            file: None,
        });
        self
    }

    /// Adds a related location in another file.
    pub fn with_secondary_in(
        mut self,
        file: impl Into<String>,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
            file: Some(file.into()),
        });
        self
    }

    /// Sets the help text.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
