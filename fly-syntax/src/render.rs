//! Rendering diagnostics for people (codespan-reporting) and for tools (JSON records).
//!
//! Shared by every front end that reports source diagnostics (`fly check`, `gosling
//! validate`), so the two print exactly the same thing.

use crate::{Diagnostic, Encoding, LineIndex, Severity};
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use serde::Serialize;
use std::collections::HashMap;

/// A set of source files that diagnostics point into.
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
    ids: HashMap<String, usize>,
    indexes: Vec<LineIndex>,
}

/// A file's handle in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(usize);

impl Sources {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file under its display name.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> SourceId {
        let name = name.into();
        let text = text.into();
        self.indexes.push(LineIndex::new(&text));
        let id = self.files.add(name.clone(), text);
        self.ids.insert(name, id);
        SourceId(id)
    }

    /// The file's display name.
    pub fn name(&self, id: SourceId) -> &str {
        self.files
            .get(id.0)
            .map(|f| f.name().as_str())
            .unwrap_or("")
    }

    /// The file's text.
    pub fn text(&self, id: SourceId) -> &str {
        self.files
            .get(id.0)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    fn to_codespan(&self, id: SourceId, d: &Diagnostic) -> cs::Diagnostic<usize> {
        let severity = match d.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
            Severity::Note => cs::Severity::Note,
        };
        let mut labels = vec![
            cs::Label::primary(id.0, clamp(d.span.range(), self.text(id))).with_message(&d.label),
        ];
        for l in &d.secondary {
            let file = l
                .file
                .as_ref()
                .and_then(|name| self.ids.get(name).copied())
                .unwrap_or(id.0);
            let text = self
                .files
                .get(file)
                .map(|f| f.source().as_str())
                .unwrap_or("");
            labels.push(
                cs::Label::secondary(file, clamp(l.span.range(), text)).with_message(&l.message),
            );
        }
        let notes = d.help.iter().map(|h| format!("help: {h}")).collect();
        cs::Diagnostic::new(severity)
            .with_code(d.code.0)
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(notes)
    }

    /// Renders one diagnostic as plain text (snapshots, logs).
    pub fn render_plain(&self, id: SourceId, d: &Diagnostic) -> String {
        term::emit_into_string(
            &term::Config::default(),
            &self.files,
            &self.to_codespan(id, d),
        )
        .unwrap_or_else(|e| format!("{}: {} ({e})", self.name(id), d.message))
    }

    /// Renders one diagnostic to standard error, coloured when it is a terminal.
    pub fn render_stderr(&self, id: SourceId, d: &Diagnostic) {
        use std::io::IsTerminal;
        use term::termcolor::{ColorChoice, StandardStream};
        let choice = if std::env::var_os("NO_COLOR").is_some() || !std::io::stderr().is_terminal() {
            ColorChoice::Never
        } else {
            ColorChoice::Auto
        };
        let stream = StandardStream::stderr(choice);
        let mut lock = stream.lock();
        let styles = term::Styles::default();
        let mut writer = term::StylesWriter::new(&mut lock, &styles);
        if term::emit_to_write_style(
            &mut writer,
            &term::Config::default(),
            &self.files,
            &self.to_codespan(id, d),
        )
        .is_err()
        {
            eprintln!("{}: {}", self.name(id), d.message);
        }
    }

    /// The machine-readable form of one diagnostic.
    pub fn json(&self, id: SourceId, d: &Diagnostic) -> JsonDiagnostic {
        let text = self.text(id);
        let index = &self.indexes[id.0];
        let (start, end) = index.range(text, d.span, Encoding::Utf32);
        JsonDiagnostic {
            file: self.name(id).to_string(),
            severity: d.severity,
            code: d.code.0.to_string(),
            message: d.message.clone(),
            range: JsonRange {
                start: JsonPosition {
                    line: start.line + 1,
                    column: start.col + 1,
                },
                end: JsonPosition {
                    line: end.line + 1,
                    column: end.col + 1,
                },
            },
            help: d.help.clone(),
        }
    }
}

fn clamp(r: std::ops::Range<usize>, text: &str) -> std::ops::Range<usize> {
    let end = r.end.min(text.len());
    r.start.min(end)..end
}

/// A diagnostic as `fly check --format json` prints it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct JsonDiagnostic {
    /// The file as given on the command line (or found under a directory).
    pub file: String,
    /// `error`, `warning` or `note`.
    pub severity: Severity,
    /// Stable code, e.g. `F0001`.
    pub code: String,
    /// The message.
    pub message: String,
    /// Where, 1-based, columns in characters.
    pub range: JsonRange,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// A 1-based range.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct JsonRange {
    /// First character.
    pub start: JsonPosition,
    /// One past the last character.
    pub end: JsonPosition,
}

/// A 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct JsonPosition {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}
