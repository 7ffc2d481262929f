//! Editor features, one module each, as plain functions of the [`World`](crate::world::World).

pub mod actions;
pub mod completion;
pub mod diagnostics;
pub mod formatting;
pub mod hints;
pub mod hover;
pub mod navigation;
pub mod semantic;
pub mod symbols;
pub mod syntax;

use crate::world::World;
use fly_syntax::Span;
use tower_lsp_server::ls_types::{Position, Range};

/// The LSP range of `span` in document `id`.
pub fn range(world: &World, id: usize, span: Span) -> Range {
    let (s, e) = world.range(id, span);
    Range {
        start: Position {
            line: s.line,
            character: s.col,
        },
        end: Position {
            line: e.line,
            character: e.col,
        },
    }
}

/// The byte offset of an LSP position in document `id`.
pub fn offset(world: &World, id: usize, pos: Position) -> usize {
    world.docs[id].offset(pos.line, pos.character, world.encoding)
}
