//! Mapping between byte offsets and line/column positions.
//!
//! Lines and columns are 0-based here; front ends that show 1-based numbers add one.
//! Columns come in two flavours: UTF-8 (bytes) and UTF-16 (code units), the latter being
//! the Language Server Protocol's default.

use crate::Span;

/// A 0-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineCol {
    /// 0-based line number.
    pub line: u32,
    /// 0-based column in the chosen encoding.
    pub col: u32,
}

/// Column encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Columns count bytes.
    Utf8,
    /// Columns count UTF-16 code units.
    Utf16,
    /// Columns count Unicode scalar values (what humans see as characters, roughly).
    Utf32,
}

/// Precomputed line starts of one text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineIndex {
    line_starts: Vec<u32>,
    len: u32,
}

impl LineIndex {
    /// Index `text`.
    pub fn new(text: &str) -> Self {
        let mut line_starts = Vec::with_capacity(text.len() / 32 + 1);
        line_starts.push(0);
        line_starts.extend(
            memchr_newlines(text.as_bytes())
                .into_iter()
                .map(|i| i as u32 + 1),
        );
        LineIndex {
            line_starts,
            len: text.len() as u32,
        }
    }

    /// Number of lines (a trailing newline starts one more, empty line).
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// Byte offset where `line` starts, if it exists.
    pub fn line_start(&self, line: u32) -> Option<usize> {
        self.line_starts.get(line as usize).map(|&o| o as usize)
    }

    /// Line and column of `offset` (clamped to the text, and to a char boundary).
    pub fn line_col(&self, text: &str, offset: usize, enc: Encoding) -> LineCol {
        let offset = floor_char_boundary(text, offset.min(self.len as usize));
        let line = self
            .line_starts
            .partition_point(|&start| start as usize <= offset)
            - 1;
        let start = self.line_starts[line] as usize;
        let prefix = &text[start..offset];
        let col = match enc {
            Encoding::Utf8 => prefix.len(),
            Encoding::Utf16 => prefix.chars().map(char::len_utf16).sum(),
            Encoding::Utf32 => prefix.chars().count(),
        };
        LineCol {
            line: line as u32,
            col: col as u32,
        }
    }

    /// Byte offset of a line/column, clamped to the line's end (never inside a character).
    pub fn offset(&self, text: &str, pos: LineCol, enc: Encoding) -> usize {
        let Some(start) = self.line_start(pos.line) else {
            return self.len as usize;
        };
        let end = self
            .line_start(pos.line + 1)
            .map(|e| e - 1)
            .unwrap_or(self.len as usize);
        let line = &text[start..end];
        let mut units = 0u32;
        for (i, ch) in line.char_indices() {
            if units >= pos.col {
                return start + i;
            }
            units += match enc {
                Encoding::Utf8 => ch.len_utf8() as u32,
                Encoding::Utf16 => ch.len_utf16() as u32,
                Encoding::Utf32 => 1,
            };
        }
        end
    }

    /// Start and end positions of a span.
    pub fn range(&self, text: &str, span: Span, enc: Encoding) -> (LineCol, LineCol) {
        (
            self.line_col(text, span.start as usize, enc),
            self.line_col(text, span.end as usize, enc),
        )
    }
}

fn memchr_newlines(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b'\n').then_some(i))
        .collect()
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_in_each_encoding() {
        let text = "a = \"é😀x\"\nb";
        let idx = LineIndex::new(text);
        let x = text.find('x').unwrap();
        assert_eq!(
            idx.line_col(text, x, Encoding::Utf8),
            LineCol { line: 0, col: 11 }
        );
        assert_eq!(
            idx.line_col(text, x, Encoding::Utf16),
            LineCol { line: 0, col: 8 }
        );
        assert_eq!(
            idx.line_col(text, x, Encoding::Utf32),
            LineCol { line: 0, col: 7 }
        );
        let b = text.find('b').unwrap();
        assert_eq!(
            idx.line_col(text, b, Encoding::Utf16),
            LineCol { line: 1, col: 0 }
        );
        for enc in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            for off in 0..=text.len() {
                if text.is_char_boundary(off) {
                    let lc = idx.line_col(text, off, enc);
                    assert_eq!(idx.offset(text, lc, enc), off, "{enc:?} {off}");
                }
            }
        }
    }

    #[test]
    fn offsets_inside_a_char_and_past_the_end_are_clamped() {
        let text = "é\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line_col(text, 1, Encoding::Utf8).col, 0);
        assert_eq!(
            idx.line_col(text, 99, Encoding::Utf8),
            LineCol { line: 1, col: 0 }
        );
        assert_eq!(
            idx.offset(text, LineCol { line: 0, col: 40 }, Encoding::Utf16),
            2
        );
        assert_eq!(
            idx.offset(text, LineCol { line: 7, col: 0 }, Encoding::Utf16),
            3
        );
    }
}
