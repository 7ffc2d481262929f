//! Document symbols (the outline), workspace symbols and folding ranges.

use super::range;
use crate::world::World;
use fly_syntax::ast::{Expr, Item};
use tower_lsp_server::ls_types::{
    DocumentSymbol, FoldingRange, FoldingRangeKind, Location, SymbolInformation, SymbolKind,
};

/// The outline of document `id`: blocks nested, attributes as fields.
pub fn document(world: &World, id: usize) -> Vec<DocumentSymbol> {
    fn walk(world: &World, id: usize, items: &[Item]) -> Vec<DocumentSymbol> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Block(b) => {
                    let name = match b.labels.first() {
                        Some(l) => format!("{} \"{}\"", b.kind.name, l.value),
                        None => b.kind.name.to_string(),
                    };
                    #[allow(deprecated)]
                    Some(DocumentSymbol {
                        name,
                        detail: None,
                        kind: match b.kind.name.as_str() {
                            "egg" | "job" | "rift" | "uglyfox" => SymbolKind::CLASS,
                            "rule" => SymbolKind::FUNCTION,
                            "vars" => SymbolKind::NAMESPACE,
                            _ => SymbolKind::STRUCT,
                        },
                        tags: None,
                        deprecated: None,
                        range: range(world, id, b.span),
                        selection_range: range(
                            world,
                            id,
                            b.labels.first().map_or(b.kind.span, |l| l.span),
                        ),
                        children: Some(walk(world, id, &b.items)),
                    })
                }
                Item::Attribute(a) =>
                {
                    #[allow(deprecated)]
                    Some(DocumentSymbol {
                        name: a.name.name.to_string(),
                        detail: None,
                        kind: SymbolKind::FIELD,
                        tags: None,
                        deprecated: None,
                        range: range(world, id, a.span),
                        selection_range: range(world, id, a.name.span),
                        children: None,
                    })
                }
                Item::Error(_) => None,
            })
            .collect()
    }
    walk(world, id, &world.docs[id].parse.file.items)
}

/// Eggs, jobs, rifts and rules (every labelled block) across the Nest whose names contain
/// `query`.
pub fn workspace(world: &World, query: &str) -> Vec<SymbolInformation> {
    let query = query.to_lowercase();
    let mut out = Vec::new();
    for (id, doc) in world.docs.iter().enumerate() {
        let Ok(uri) = doc.uri.parse() else { continue };
        let mut stack: Vec<&[Item]> = vec![&doc.parse.file.items];
        while let Some(items) = stack.pop() {
            for i in items {
                let Item::Block(b) = i else { continue };
                stack.push(&b.items);
                let Some(label) = b.labels.first() else {
                    continue;
                };
                if !label.value.to_lowercase().contains(&query) {
                    continue;
                }
                #[allow(deprecated)]
                out.push(SymbolInformation {
                    name: label.value.clone(),
                    kind: if b.kind.name == "rule" {
                        SymbolKind::FUNCTION
                    } else {
                        SymbolKind::CLASS
                    },
                    tags: None,
                    deprecated: None,
                    location: Location {
                        uri: Clone::clone(&uri),
                        range: range(world, id, b.span),
                    },
                    container_name: Some(b.kind.name.to_string()),
                });
            }
        }
    }
    out
}

/// Folding ranges: blocks, multi-line lists and maps, heredocs and comment runs.
pub fn folding(world: &World, id: usize) -> Vec<FoldingRange> {
    let doc = &world.docs[id];
    let mut out = Vec::new();
    let mut add = |span: fly_syntax::Span, kind: Option<FoldingRangeKind>| {
        let (s, e) = world.range(id, span);
        if e.line > s.line {
            out.push(FoldingRange {
                start_line: s.line,
                start_character: None,
                end_line: e.line,
                end_character: None,
                kind,
                collapsed_text: None,
            });
        }
    };
    fn exprs(e: &Expr, add: &mut dyn FnMut(fly_syntax::Span, Option<FoldingRangeKind>)) {
        match e {
            Expr::List(l) => {
                add(l.span, None);
                l.elems.iter().for_each(|e| exprs(e, add));
            }
            Expr::Map(m) => {
                add(m.span, None);
                m.entries.iter().for_each(|e| exprs(&e.value, add));
            }
            Expr::Heredoc(h) => add(h.span, None),
            _ => {}
        }
    }
    let mut stack: Vec<&[Item]> = vec![&doc.parse.file.items];
    while let Some(items) = stack.pop() {
        for i in items {
            match i {
                Item::Block(b) => {
                    add(b.span, None);
                    stack.push(&b.items);
                }
                Item::Attribute(a) => exprs(&a.value, &mut add),
                Item::Error(_) => {}
            }
        }
    }
    for c in &doc.parse.comments {
        add(c.span, Some(FoldingRangeKind::Comment));
    }
    out.sort_by_key(|f| (f.start_line, f.end_line));
    out
}
