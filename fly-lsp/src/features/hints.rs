//! Inlay hints: durations in seconds and the resolved value of a lone `${vars.NAME}`.

use super::range;
use super::syntax::schema_of;
use crate::world::World;
use fly_syntax::ast::{Expr, InterpExpr, Item, TemplatePart};
use fly_types::schema::Type;
use tower_lsp_server::ls_types::{InlayHint, InlayHintKind, InlayHintLabel};

/// Hints for document `id` within the lines `first..=last`.
pub fn hints(world: &World, id: usize, first: u32, last: u32) -> Vec<InlayHint> {
    let doc = &world.docs[id];
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<&fly_syntax::ast::Block>, &[Item])> =
        vec![(Vec::new(), &doc.parse.file.items)];
    while let Some((path, items)) = stack.pop() {
        let schema = schema_of(&path);
        for i in items {
            match i {
                Item::Block(b) => {
                    let mut p = path.clone();
                    p.push(b);
                    stack.push((p, &b.items));
                }
                Item::Attribute(a) => {
                    let Expr::String(t) = &a.value else { continue };
                    let end = range(world, id, t.span).end;
                    if end.line < first || end.line > last {
                        continue;
                    }
                    let label = match (
                        schema.and_then(|s| s.attr(&a.name.name)).map(|s| s.ty),
                        t.parts.as_slice(),
                    ) {
                        (_, [TemplatePart::Interpolation(interp)]) => {
                            let InterpExpr::Traversal(tr) = &interp.expr else {
                                continue;
                            };
                            let name = tr.path.first().map(|n| n.name.as_str()).unwrap_or("");
                            let value = world
                                .analysis
                                .as_ref()
                                .and_then(|an| an.vars.get(name))
                                .and_then(|v| v.value.as_ref());
                            match (tr.root.name.as_str(), value) {
                                ("vars", Some(v)) => format!("= {}", super::hover::render_value(v)),
                                _ => continue,
                            }
                        }
                        (Some(Type::Duration { .. }), _) => {
                            let Some(text) = t.as_literal() else { continue };
                            let Ok(secs) = fly_types::duration::parse_duration(&text) else {
                                continue;
                            };
                            format!("= {secs}s")
                        }
                        _ => continue,
                    };
                    out.push(InlayHint {
                        position: end,
                        label: InlayHintLabel::String(label),
                        kind: Some(InlayHintKind::TYPE),
                        text_edits: None,
                        tooltip: None,
                        padding_left: Some(true),
                        padding_right: None,
                        data: None,
                    });
                }
                Item::Error(_) => {}
            }
        }
    }
    out.sort_by_key(|h| (h.position.line, h.position.character));
    out
}
