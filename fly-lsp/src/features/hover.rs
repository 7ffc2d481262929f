//! Hover: schema docs for blocks and attributes, the value of a `${vars.NAME}`, the meaning
//! of a metric inside a policy condition, and durations in seconds.

use super::syntax::{attribute_at, block_header_at, schema_of, traversals};
use super::{offset, range};
use crate::world::World;
use fly_syntax::ast::{Expr, TemplatePart};
use fly_types::schema::{AttrSchema, BlockSchema, Type};
use fly_types::{Value, ValueKind};
use tower_lsp_server::ls_types::{Hover, HoverContents, MarkupContent, MarkupKind, Position};

/// The hover at `pos` in document `id`.
pub fn hover(world: &World, id: usize, pos: Position) -> Option<Hover> {
    let at = offset(world, id, pos);
    let file = &world.docs[id].parse.file;
    // A reference inside a string.
    if let Some(t) = traversals(file).into_iter().find(|t| t.span.contains(at)) {
        let text = reference(world, t)?;
        return Some(markdown(text, Some(range(world, id, t.span))));
    }
    if let Some((path, block)) = block_header_at(file, at) {
        let mut full = path.clone();
        full.push(block);
        let schema = schema_of(&full)?;
        return Some(markdown(
            block_doc(schema),
            Some(range(world, id, block.kind.span)),
        ));
    }
    let (path, attr) = attribute_at(file, at)?;
    let schema = schema_of(&path)?;
    if attr.name.span.contains(at) {
        let text = match schema.attr(&attr.name.name) {
            Some(a) => attr_doc(a),
            None if schema.free_attrs.is_some() => {
                format!("**{}** — {}", attr.name.name, free_doc(schema))
            }
            None => return None,
        };
        return Some(markdown(text, Some(range(world, id, attr.name.span))));
    }
    // Inside the value.
    let a = schema.attr(&attr.name.name)?;
    match (&a.ty, &attr.value) {
        (Type::Condition, Expr::String(t)) => {
            let [TemplatePart::Literal(l)] = t.parts.as_slice() else {
                return None;
            };
            if l.span.len() != l.value.len() || !l.span.contains(at) {
                return None;
            }
            let rel = at - l.span.start as usize;
            let (s, e) = word_at(&l.value, rel)?;
            let word = &l.value[s..e];
            let metric = fly_types::ir::Metric::from_name(word)?;
            let span = fly_syntax::Span::new(l.span.start as usize + s, l.span.start as usize + e);
            Some(markdown(
                format!("**{}** — {}\n\nType: {:?}", word, metric.doc(), metric.ty()),
                Some(range(world, id, span)),
            ))
        }
        (Type::Duration { .. }, Expr::String(t)) => {
            let text = t.as_literal()?;
            let secs = fly_types::duration::parse_duration(&text).ok()?;
            Some(markdown(
                format!("`{text}` = {secs} seconds"),
                Some(range(world, id, t.span)),
            ))
        }
        _ => None,
    }
}

fn word_at(text: &str, at: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut s = at.min(b.len());
    while s > 0 && is_word(b[s - 1]) {
        s -= 1;
    }
    let mut e = at.min(b.len());
    while e < b.len() && is_word(b[e]) {
        e += 1;
    }
    (e > s).then_some((s, e))
}

fn reference(world: &World, t: &fly_syntax::ast::Traversal) -> Option<String> {
    let name = t.path.first()?;
    match t.root.name.as_str() {
        "vars" => {
            let info = world.analysis.as_ref()?.vars.get(name.name.as_str())?;
            let value = info
                .value
                .as_ref()
                .map(render_value)
                .unwrap_or_else(|| "(does not resolve)".into());
            Some(format!(
                "`vars.{}` = `{}`\n\nDefined in `{}`",
                name.name, value, world.docs[info.file].path
            ))
        }
        "env" => Some(match world.env.vars.get(name.name.as_str()) {
            Some(v) => format!("`env.{}` = `{}` (from the environment)", name.name, v),
            None => format!(
                "`env.{}` is not set in the language server's environment",
                name.name
            ),
        }),
        _ => None,
    }
}

/// A value as Fly would write it.
pub fn render_value(v: &Value) -> String {
    match &v.kind {
        ValueKind::Str(s) => format!("{s:?}"),
        ValueKind::Int(i) => i.to_string(),
        ValueKind::Float(f) => f.to_string(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(render_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ValueKind::Map(entries) => format!(
            "{{ {} }}",
            entries
                .iter()
                .map(|(k, v)| format!("{k} = {}", render_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The hover text of a block type.
pub fn block_doc(b: &BlockSchema) -> String {
    let labels: String = b
        .labels
        .iter()
        .map(|l| format!(" \"{}\"", l.to_uppercase()))
        .collect();
    format!(
        "**{}{labels} {{ … }}**\n\n{}\n\n```fly\n{}\n```",
        b.name, b.doc, b.example
    )
}

/// The hover text of an attribute.
pub fn attr_doc(a: &AttrSchema) -> String {
    let mut s = format!("**{}**: {}", a.name, a.ty.describe());
    if a.required {
        s.push_str(" (required)");
    }
    if let Some(d) = a.default {
        s.push_str(&format!(", default `{}`", d.fly()));
    }
    s.push_str(&format!("\n\n{}\n\nExample: `{}`", a.doc, a.example));
    s
}

fn free_doc(b: &BlockSchema) -> String {
    match b.name {
        "vars" => "a variable, used as `${vars.NAME}` anywhere in the Nest".into(),
        _ => format!("an entry of `{}`", b.name),
    }
}

fn markdown(value: String, range: Option<tower_lsp_server::ls_types::Range>) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value,
        }),
        range,
    }
}
