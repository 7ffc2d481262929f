//! Formatting: a pure function of the buffer, never waiting for analysis.

use tower_lsp_server::ls_types::{Position, Range, TextEdit};

/// The edit that formats `text`, if it parses and is not formatted yet.
pub fn format(
    text: &str,
    index: &fly_syntax::LineIndex,
    enc: fly_syntax::Encoding,
) -> Option<Vec<TextEdit>> {
    let formatted = fly_fmt::format(text).ok()?;
    if formatted == text {
        return Some(Vec::new());
    }
    let end = index.line_col(text, text.len(), enc);
    Some(vec![TextEdit {
        range: Range {
            start: Position {
                line: 0,
                character: 0,
            },
            end: Position {
                line: end.line,
                character: end.col,
            },
        },
        new_text: formatted,
    }])
}
