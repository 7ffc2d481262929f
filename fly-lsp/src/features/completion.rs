//! Completion: block types valid at the cursor, attributes not yet set, enum values, the
//! Nest's rift names for an egg's `rift`, time zone names, `vars.`/`env.` names inside `${`,
//! metrics inside conditions, and snippets.

use super::offset;
use super::syntax::{blocks_at, items_of, schema_of};
use crate::world::World;
use fly_syntax::ast::Item;
use fly_types::ir::{Metric, RunnerStateOrPool};
use fly_types::schema::Type;
use tower_lsp_server::ls_types::{
    CompletionItem, CompletionItemKind, Documentation, InsertTextFormat, MarkupContent, MarkupKind,
    Position,
};

/// Completion items at `pos` in document `id`.
pub fn complete(world: &World, id: usize, pos: Position) -> Vec<CompletionItem> {
    let doc = &world.docs[id];
    let at = offset(world, id, pos);
    let line_start = doc.text[..at].rfind('\n').map_or(0, |i| i + 1);
    let before = &doc.text[line_start..at];
    let path = blocks_at(&doc.parse.file, at);
    let Some(schema) = schema_of(&path) else {
        return Vec::new();
    };

    // Inside `${ … }` of a string.
    if let Some(open) = before.rfind("${") {
        let inner = &before[open + 2..];
        if !inner.contains('}') {
            return interpolation(world, inner.trim_start());
        }
    }

    // In the value of `name = …`.
    if let Some((name, value)) = before.split_once('=') {
        let name = name.trim();
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
            let Some(attr) = schema.attr(name) else {
                return Vec::new();
            };
            let in_string = value.matches('"').count() % 2 == 1;
            let quote = |v: &str| {
                if in_string {
                    v.to_string()
                } else {
                    format!("\"{v}\"")
                }
            };
            if schema.name == "egg" && attr.name == "rift" {
                return rift_names(world)
                    .into_iter()
                    .map(|n| item(quote(&n), CompletionItemKind::REFERENCE, None))
                    .collect();
            }
            return match attr.ty {
                Type::TimeZone => fly_types::ir::chrono_tz::TZ_VARIANTS
                    .iter()
                    .map(|z| item(quote(z.name()), CompletionItemKind::VALUE, None))
                    .collect(),
                Type::Enum(values) if !in_string => values
                    .iter()
                    .map(|v| item(format!("\"{v}\""), CompletionItemKind::ENUM_MEMBER, None))
                    .collect(),
                Type::Enum(values) => values
                    .iter()
                    .map(|v| item(v.to_string(), CompletionItemKind::ENUM_MEMBER, None))
                    .collect(),
                Type::Bool => ["true", "false"]
                    .iter()
                    .map(|v| item(v.to_string(), CompletionItemKind::VALUE, None))
                    .collect(),
                Type::Condition if in_string => condition(value),
                _ => Vec::new(),
            };
        }
        return Vec::new();
    }

    // At the start of an item: attributes not yet set, blocks, snippets.
    if !before
        .trim_start()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Vec::new();
    }
    let items = items_of(&doc.parse.file, &path);
    let set: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Attribute(a) => Some(a.name.name.as_str()),
            _ => None,
        })
        .collect();
    let present: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Block(b) => Some(b.kind.name.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for a in schema.attrs.iter().filter(|a| !set.contains(&a.name)) {
        let mut it = item(
            a.name.to_string(),
            CompletionItemKind::PROPERTY,
            Some(super::hover::attr_doc(a)),
        );
        it.detail = Some(a.ty.describe());
        it.insert_text = Some(format!("{} = ${{1}}", a.name));
        it.insert_text_format = Some(InsertTextFormat::SNIPPET);
        it.sort_text = Some(format!("{}{}", if a.required { "0" } else { "1" }, a.name));
        out.push(it);
    }
    for b in schema
        .blocks
        .iter()
        .filter(|b| b.repeatable || !present.contains(&b.name))
    {
        let mut it = item(
            b.name.to_string(),
            CompletionItemKind::STRUCT,
            Some(super::hover::block_doc(b)),
        );
        let labels: String = b
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!(" \"${{{}:{l}}}\"", i + 1))
            .collect();
        it.insert_text = Some(format!("{}{labels} {{\n\t$0\n}}", b.name));
        it.insert_text_format = Some(InsertTextFormat::SNIPPET);
        it.sort_text = Some(format!("2{}", b.name));
        out.push(it);
    }
    if path.is_empty() {
        out.extend(top_level_snippets());
    }
    if schema.name == "policies" {
        out.push(snippet(
            "rule (snippet)",
            "rule \"${1:name}\" {\n\tcondition = \"${2:failed_count >= 3}\"\n\taction    = \"${3|terminate,demote_to_nadir,promote_to_apex,restart,notify|}\"\n}",
        ));
    }
    out
}

/// The names of the rifts declared anywhere in the Nest, sorted, each once.
fn rift_names(world: &World) -> Vec<String> {
    let mut names: Vec<String> = world
        .docs
        .iter()
        .flat_map(|d| d.parse.file.items.iter())
        .filter_map(|i| match i {
            Item::Block(b) if b.kind.name == "rift" => b.labels.first().map(|l| l.value.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn interpolation(world: &World, inner: &str) -> Vec<CompletionItem> {
    if let Some(prefix) = inner.strip_prefix("vars.") {
        let Some(a) = &world.analysis else {
            return Vec::new();
        };
        return a
            .vars
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, info)| {
                let value = info.value.as_ref().map(super::hover::render_value);
                let mut it = item(n.clone(), CompletionItemKind::VARIABLE, None);
                it.detail = value;
                it
            })
            .collect();
    }
    if let Some(prefix) = inner.strip_prefix("env.") {
        let mut names: Vec<&String> = world
            .env
            .vars
            .keys()
            .filter(|k| k.starts_with(prefix))
            .collect();
        names.sort();
        names.truncate(200);
        return names
            .into_iter()
            .map(|n| item(n.clone(), CompletionItemKind::VARIABLE, None))
            .collect();
    }
    vec![
        item(
            "vars.".into(),
            CompletionItemKind::MODULE,
            Some("A variable from a `vars { }` block of the Nest.".into()),
        ),
        item(
            "env.".into(),
            CompletionItemKind::MODULE,
            Some("A variable of the compiling environment.".into()),
        ),
    ]
}

fn condition(value: &str) -> Vec<CompletionItem> {
    // After an opening quote inside the condition: states and pools.
    if value.matches('\'').count() % 2 == 1 {
        return RunnerStateOrPool::ALL
            .iter()
            .map(|(_, n)| item(n.to_string(), CompletionItemKind::ENUM_MEMBER, None))
            .collect();
    }
    let mut out: Vec<CompletionItem> = Metric::ALL
        .iter()
        .map(|(_, name, ty, doc)| {
            let mut it = item(
                name.to_string(),
                CompletionItemKind::FIELD,
                Some(doc.to_string()),
            );
            it.detail = Some(format!("{ty:?}"));
            it
        })
        .collect();
    for kw in ["AND", "OR", "NOT"] {
        out.push(item(kw.into(), CompletionItemKind::KEYWORD, None));
    }
    out
}

fn top_level_snippets() -> Vec<CompletionItem> {
    vec![
        snippet(
            "egg (snippet)",
            "egg \"${1:name}\" {\n\ttype = \"${2|vm,serverless|}\"\n\n\tcloud {\n\t\tprovider = \"${3|yandex,aws|}\"\n\t\tregion   = \"${4:ru-central1-a}\"\n\t}\n\n\trunner {\n\t\ttags = [${5:\"docker\"}]\n\t}\n\n\tgitlab {\n\t\tproject_id   = ${6:12345}\n\t\ttoken_secret = \"${7:vault://gitlab/runner-token}\"\n\t}\n}",
        ),
        snippet(
            "rift (snippet)",
            "rift \"${1:main}\" {\n\taddress      = \"${2:https://rift.internal:9443}\"\n\tdocker_proxy = ${3|false,true|}\n}",
        ),
        snippet(
            "job (snippet)",
            "job \"${1:name}\" {\n\tschedule = \"${2:0 2 * * *}\"\n\tscript   = <<-EOT\n\t\t${3:echo hello}\n\tEOT\n}",
        ),
    ]
}

fn snippet(label: &str, body: &str) -> CompletionItem {
    CompletionItem {
        label: label.into(),
        kind: Some(CompletionItemKind::SNIPPET),
        insert_text: Some(body.into()),
        insert_text_format: Some(InsertTextFormat::SNIPPET),
        sort_text: Some(format!("3{label}")),
        ..Default::default()
    }
}

fn item(label: String, kind: CompletionItemKind, doc: Option<String>) -> CompletionItem {
    CompletionItem {
        label,
        kind: Some(kind),
        documentation: doc.map(|value| {
            Documentation::MarkupContent(MarkupContent {
                kind: MarkupKind::Markdown,
                value,
            })
        }),
        ..Default::default()
    }
}
