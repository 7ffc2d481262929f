//! Code actions: apply a "did you mean" suggestion, add a missing required attribute,
//! replace a plaintext secret with a reference placeholder.

use super::offset;
use crate::world::World;
use fly_types::schema::ROOT;
use std::collections::HashMap;
use tower_lsp_server::ls_types::{
    CodeAction, CodeActionKind, Diagnostic, NumberOrString, Position, Range, TextEdit, Uri,
    WorkspaceEdit,
};

/// Quick fixes for the diagnostics the client sends back.
pub fn quick_fixes(
    world: &World,
    id: usize,
    uri: &Uri,
    diagnostics: &[Diagnostic],
) -> Vec<CodeAction> {
    let mut out = Vec::new();
    let doc = &world.docs[id];
    for d in diagnostics {
        let code = match &d.code {
            Some(NumberOrString::String(c)) => c.as_str(),
            _ => continue,
        };
        let help = d.data.as_ref().and_then(|v| v.as_str()).unwrap_or("");
        let edit = |range: Range, text: String| -> WorkspaceEdit {
            let mut changes = HashMap::new();
            changes.insert(
                uri.clone(),
                vec![TextEdit {
                    range,
                    new_text: text,
                }],
            );
            WorkspaceEdit {
                changes: Some(changes),
                ..Default::default()
            }
        };
        let mut fix = |title: String, e: WorkspaceEdit| {
            out.push(CodeAction {
                title,
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                edit: Some(e),
                is_preferred: Some(true),
                ..Default::default()
            })
        };
        if let Some(suggestion) = did_you_mean(help) {
            fix(
                format!("Change to {suggestion}"),
                edit(d.range, suggestion.to_string()),
            );
            continue;
        }
        match code {
            "F1003" => {
                // `… is missing the required attribute `NAME``: insert its example.
                let Some(name) = d.message.rsplit('`').nth(1) else {
                    continue;
                };
                let at = offset(world, id, d.range.start);
                let path = super::syntax::blocks_at(&doc.parse.file, at + 1);
                let schema = path
                    .iter()
                    .try_fold(&ROOT, |s, b| s.block(&b.kind.name))
                    .and_then(|s| s.attr(name))
                    .or_else(|| find_attr(name));
                let Some(attr) = schema else { continue };
                let line = d.range.start.line + 1;
                let indent = doc
                    .text
                    .lines()
                    .nth(d.range.start.line as usize)
                    .map_or(0, |l| l.len() - l.trim_start().len())
                    + 2;
                let insert = Range {
                    start: Position { line, character: 0 },
                    end: Position { line, character: 0 },
                };
                fix(
                    format!("Add `{}`", attr.example),
                    edit(insert, format!("{}{}\n", " ".repeat(indent), attr.example)),
                );
            }
            "F1010" => fix(
                "Replace with a secret reference".into(),
                edit(d.range, "\"vault://CHANGE-ME\"".into()),
            ),
            _ => {}
        }
    }
    out
}

/// The suggestion of a help text `did you mean `x`?` (or `"x"`, `'x'`), as it should be
/// written in place of the diagnostic's range.
fn did_you_mean(help: &str) -> Option<&str> {
    let rest = help.strip_prefix("did you mean ")?.strip_suffix('?')?;
    let inner = rest.strip_prefix('`').and_then(|r| r.strip_suffix('`'));
    match inner {
        Some(i) => Some(i.strip_prefix("vars.").unwrap_or(i)),
        None => Some(rest),
    }
}

fn find_attr(name: &str) -> Option<&'static fly_types::schema::AttrSchema> {
    fn walk(
        b: &'static fly_types::schema::BlockSchema,
        name: &str,
    ) -> Option<&'static fly_types::schema::AttrSchema> {
        b.attr(name)
            .or_else(|| b.blocks.iter().find_map(|c| walk(c, name)))
    }
    walk(&ROOT, name)
}
