//! Go to definition, find references and rename, for variables (through interpolations in
//! strings and heredocs, across the Nest), for egg and job names, and for rift names (the
//! `rift "NAME"` declarations and the eggs' `rift = "NAME"`).

use super::syntax::{block_header_at, traversals, var_definitions};
use super::{offset, range};
use crate::world::World;
use fly_syntax::ast::{Expr, File, Item, TemplatePart};
use fly_syntax::Span;
use std::collections::HashMap;
use tower_lsp_server::ls_types::{Location, Position, Range, TextEdit, Uri, WorkspaceEdit};

/// What the cursor is on.
enum Symbol {
    Var(String),
    Named { kind: String, name: String },
}

fn symbol_at(world: &World, id: usize, at: usize) -> Option<(Symbol, Span)> {
    let file = &world.docs[id].parse.file;
    for t in traversals(file) {
        if t.root.name == "vars" {
            if let Some(name) = t.path.first() {
                if t.span.contains(at) {
                    return Some((Symbol::Var(name.name.to_string()), name.span));
                }
            }
        }
    }
    for a in var_definitions(file) {
        if a.name.span.contains(at) {
            return Some((Symbol::Var(a.name.name.to_string()), a.name.span));
        }
    }
    for (name, span) in rift_uses(file) {
        if span.contains(at) {
            let name = name.to_string();
            return Some((
                Symbol::Named {
                    kind: "rift".into(),
                    name,
                },
                span,
            ));
        }
    }
    let (_, b) = block_header_at(file, at)?;
    let label = b.labels.first().filter(|l| l.span.contains(at))?;
    if matches!(b.kind.name.as_str(), "egg" | "job" | "rule" | "rift") {
        return Some((
            Symbol::Named {
                kind: b.kind.name.to_string(),
                name: label.value.clone(),
            },
            inner(label.span),
        ));
    }
    None
}

/// Every egg's `rift = "NAME"`: the name and the span of its text (without the quotes),
/// when written as plain text.
fn rift_uses(file: &File) -> Vec<(&str, Span)> {
    file.items
        .iter()
        .filter_map(|i| match i {
            Item::Block(b) if b.kind.name == "egg" => Some(b),
            _ => None,
        })
        .flat_map(|b| b.items.iter())
        .filter_map(|i| match i {
            Item::Attribute(a) if a.name.name == "rift" => match &a.value {
                Expr::String(t) => match t.parts.as_slice() {
                    [TemplatePart::Literal(l)] if l.span.len() == l.value.len() => {
                        Some((l.value.as_str(), l.span))
                    }
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A quoted label's span without its quotes.
fn inner(span: Span) -> Span {
    if span.len() >= 2 {
        Span::new(span.start as usize + 1, span.end as usize - 1)
    } else {
        span
    }
}

/// Every occurrence (document id, span of the name) of a symbol; definitions first.
fn occurrences(world: &World, symbol: &Symbol) -> Vec<(usize, Span, bool)> {
    let mut out = Vec::new();
    for (id, doc) in world.docs.iter().enumerate() {
        let file = &doc.parse.file;
        match symbol {
            Symbol::Var(name) => {
                for a in var_definitions(file) {
                    if a.name.name == name.as_str() {
                        out.push((id, a.name.span, true));
                    }
                }
                for t in traversals(file) {
                    if t.root.name == "vars" {
                        if let Some(n) = t.path.first().filter(|n| n.name == name.as_str()) {
                            out.push((id, n.span, false));
                        }
                    }
                }
            }
            Symbol::Named { kind, name } => {
                fn walk(
                    items: &[fly_syntax::ast::Item],
                    kind: &str,
                    name: &str,
                    out: &mut Vec<Span>,
                ) {
                    for i in items {
                        if let fly_syntax::ast::Item::Block(b) = i {
                            if b.kind.name == kind
                                && b.labels.first().is_some_and(|l| l.value == name)
                            {
                                out.push(inner(b.labels[0].span));
                            }
                            walk(&b.items, kind, name, out);
                        }
                    }
                }
                let mut spans = Vec::new();
                walk(&file.items, kind, name, &mut spans);
                out.extend(spans.into_iter().map(|s| (id, s, true)));
                if kind == "rift" {
                    for (n, span) in rift_uses(file) {
                        if n == name {
                            out.push((id, span, false));
                        }
                    }
                }
            }
        }
    }
    out.sort_by_key(|(id, s, def)| (!def, *id, s.start));
    out
}

fn location(world: &World, id: usize, span: Span) -> Option<Location> {
    Some(Location {
        uri: world.docs[id].uri.parse().ok()?,
        range: range(world, id, span),
    })
}

/// Where the symbol at `pos` is defined.
pub fn definition(world: &World, id: usize, pos: Position) -> Option<Location> {
    let (symbol, _) = symbol_at(world, id, offset(world, id, pos))?;
    let (did, span, _) = occurrences(world, &symbol).into_iter().find(|o| o.2)?;
    location(world, did, span)
}

/// Every place the symbol at `pos` occurs.
pub fn references(
    world: &World,
    id: usize,
    pos: Position,
    include_declaration: bool,
) -> Vec<Location> {
    let Some((symbol, _)) = symbol_at(world, id, offset(world, id, pos)) else {
        return Vec::new();
    };
    occurrences(world, &symbol)
        .into_iter()
        .filter(|o| include_declaration || !o.2)
        .filter_map(|(i, s, _)| location(world, i, s))
        .collect()
}

/// The range that would be renamed at `pos`.
pub fn prepare_rename(world: &World, id: usize, pos: Position) -> Option<Range> {
    let (_, span) = symbol_at(world, id, offset(world, id, pos))?;
    Some(range(world, id, span))
}

/// Why a rename is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RenameError {
    /// Nothing renameable at the cursor.
    NothingHere,
    /// The new name is not valid for this kind of symbol.
    InvalidName(String),
}

/// Renames the symbol at `pos` everywhere in the Nest.
pub fn rename(
    world: &World,
    id: usize,
    pos: Position,
    new_name: &str,
) -> Result<WorkspaceEdit, RenameError> {
    let (symbol, _) =
        symbol_at(world, id, offset(world, id, pos)).ok_or(RenameError::NothingHere)?;
    let valid = match &symbol {
        Symbol::Var(_) => {
            let mut chars = new_name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && new_name != "true"
                && new_name != "false"
        }
        Symbol::Named { .. } => !new_name.is_empty() && !new_name.contains(['"', '\\', '\n', '$']),
    };
    if !valid {
        return Err(RenameError::InvalidName(new_name.to_string()));
    }
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    for (i, span, _) in occurrences(world, &symbol) {
        let Ok(uri) = world.docs[i].uri.parse::<Uri>() else {
            continue;
        };
        changes.entry(uri).or_default().push(TextEdit {
            range: range(world, i, span),
            new_text: new_name.to_string(),
        });
    }
    Ok(WorkspaceEdit {
        changes: Some(changes),
        ..Default::default()
    })
}
