//! Semantic tokens: block types, attribute names, strings, numbers, comments, references.

use crate::world::World;
use fly_syntax::ast::{Expr, InterpExpr, Item, TemplatePart};
use fly_syntax::Span;
use tower_lsp_server::ls_types::{SemanticToken, SemanticTokenType, SemanticTokensLegend};

/// Token types, in legend order.
pub const TYPES: [SemanticTokenType; 8] = [
    SemanticTokenType::KEYWORD,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::STRING,
    SemanticTokenType::NUMBER,
    SemanticTokenType::COMMENT,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::NAMESPACE,
    SemanticTokenType::ENUM_MEMBER,
];

/// The legend announced to the client.
pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: Vec::new(),
    }
}

/// Semantic tokens of document `id`, delta-encoded as LSP wants them.
pub fn tokens(world: &World, id: usize) -> Vec<SemanticToken> {
    let doc = &world.docs[id];
    let mut raw: Vec<(Span, u32)> = Vec::new();
    fn expr(e: &Expr, raw: &mut Vec<(Span, u32)>) {
        match e {
            Expr::Number(n) => raw.push((n.span, 3)),
            Expr::Bool(_, s) => raw.push((*s, 7)),
            Expr::String(t) | Expr::Heredoc(fly_syntax::ast::Heredoc { template: t, .. }) => {
                let mut at = t.span.start;
                for p in &t.parts {
                    if let TemplatePart::Interpolation(i) = p {
                        if i.span.start > at {
                            raw.push((Span::new(at as usize, i.span.start as usize), 2));
                        }
                        if let InterpExpr::Traversal(tr) = &i.expr {
                            raw.push((tr.root.span, 6));
                            for step in &tr.path {
                                raw.push((step.span, 5));
                            }
                        }
                        at = i.span.end;
                    }
                }
                if t.span.end > at {
                    raw.push((Span::new(at as usize, t.span.end as usize), 2));
                }
            }
            Expr::List(l) => l.elems.iter().for_each(|e| expr(e, raw)),
            Expr::Map(m) => m.entries.iter().for_each(|e| expr(&e.value, raw)),
            Expr::Error(_) => {}
        }
    }
    fn items(list: &[Item], raw: &mut Vec<(Span, u32)>) {
        for i in list {
            match i {
                Item::Block(b) => {
                    raw.push((b.kind.span, 0));
                    for l in &b.labels {
                        raw.push((l.span, 2));
                    }
                    items(&b.items, raw);
                }
                Item::Attribute(a) => {
                    raw.push((a.name.span, 1));
                    expr(&a.value, raw);
                }
                Item::Error(_) => {}
            }
        }
    }
    items(&doc.parse.file.items, &mut raw);
    for c in &doc.parse.comments {
        raw.push((c.span, 4));
    }
    raw.sort_by_key(|(s, _)| s.start);
    // LSP tokens are single-line and may not overlap: split multi-line spans (heredocs,
    // block comments) and clip a span that starts inside the previous one (possible in
    // broken text, e.g. a line comment inside an unclosed interpolation).
    let mut out = Vec::new();
    let (mut prev_line, mut prev_col) = (0u32, 0u32);
    let mut last_end = 0usize;
    for (span, ty) in raw {
        let start = (span.start as usize).max(last_end);
        let end = (span.end as usize).min(doc.text.len());
        if start >= end || !doc.text.is_char_boundary(start) || !doc.text.is_char_boundary(end) {
            continue;
        }
        last_end = end;
        let span = Span::new(start, end);
        let text = &doc.text[span.range()];
        let mut start = span.start as usize;
        for piece in text.split('\n') {
            let len = piece.trim_end_matches('\r');
            if !len.is_empty() {
                let pos = doc.position(start, world.encoding);
                let end = doc.position(start + len.len(), world.encoding);
                let delta_line = pos.line.saturating_sub(prev_line);
                let delta_start = if delta_line == 0 {
                    pos.col.saturating_sub(prev_col)
                } else {
                    pos.col
                };
                out.push(SemanticToken {
                    delta_line,
                    delta_start,
                    length: end.col.saturating_sub(pos.col),
                    token_type: ty,
                    token_modifiers_bitset: 0,
                });
                prev_line = pos.line;
                prev_col = pos.col;
            }
            start += piece.len() + 1;
        }
    }
    out
}
