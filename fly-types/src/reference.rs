//! The generated reference page, `docs/reference.md`, from the schema.

use crate::schema::{BlockSchema, ROOT};
use std::fmt::Write;

/// The whole reference page as Markdown.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("# Fly reference\n\n");
    out.push_str("<!-- Generated from fly-types/src/schema.rs by `fly reference`; a test fails when it is stale. -->\n\n");
    out.push_str(
        "Every block and attribute a Nest may use. Types: `duration` is a string such as \
                  `\"90s\"`, `\"10m\"`, `\"1h30m\"`; `secret reference` is `\"vault://PATH\"`, \
                  `\"yc-lockbox://SECRET_ID/KEY\"` or `\"aws-sm://NAME\"`; `cron expression` has \
                  five fields in UTC (in `timezone` for `scale` windows); `time zone` is an \
                  IANA name such as `\"Europe/Moscow\"`. See `fly-language.md` for the syntax.\n\n",
    );
    for b in ROOT.blocks {
        block(b, "", &mut out);
    }
    out.push_str(
        "## Policy condition metrics\n\n| metric | type | meaning |\n| --- | --- | --- |\n",
    );
    for (_, name, ty, doc) in fly_ir::Metric::ALL {
        let _ = writeln!(out, "| `{name}` | {ty:?} | {doc} |");
    }
    out.push('\n');
    out
}

fn block(b: &'static BlockSchema, parent: &str, out: &mut String) {
    let path = if parent.is_empty() {
        b.name.to_string()
    } else {
        format!("{parent}.{}", b.name)
    };
    let labels: String = b
        .labels
        .iter()
        .map(|l| format!(" \"{}\"", l.to_uppercase()))
        .collect();
    let _ = writeln!(out, "## `{path}`\n\n`{}{labels} {{ … }}`", b.name);
    let mut facts = Vec::new();
    if b.required {
        facts.push("required");
    }
    if b.repeatable {
        facts.push("may be repeated");
    }
    if !facts.is_empty() {
        let _ = write!(out, " ({})", facts.join(", "));
    }
    let _ = writeln!(out, "\n\n{}\n", b.doc);
    if let Some(ty) = b.free_attrs {
        let _ = writeln!(out, "Any attribute name; values: {}.\n", ty.describe());
    }
    if !b.attrs.is_empty() {
        out.push_str("| attribute | type | required | default | description |\n| --- | --- | --- | --- | --- |\n");
        for a in b.attrs {
            let default = a
                .default
                .map(|d| format!("`{}`", d.fly()))
                .unwrap_or_else(|| "—".into());
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} Example: `{}` |",
                a.name,
                a.ty.describe(),
                if a.required { "yes" } else { "no" },
                default,
                a.doc,
                a.example
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "```fly\n{}\n```\n", b.example);
    for c in b.blocks {
        block(c, &path, out);
    }
}
