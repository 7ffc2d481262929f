//! Shared helpers for the workspace tests: a compact, readable dump of syntax trees for
//! snapshots, fixture discovery, and rendering diagnostics as plain text.

pub mod arb;
pub mod generate;

use fly_syntax::ast::{Expr, File, InterpExpr, Item, MapKey, TemplatePart};
use fly_syntax::render::Sources;
use fly_syntax::Diagnostic;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The `tests/fixtures` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every `*.fly` file under `dir`, sorted.
pub fn fly_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "fly"))
        .collect();
    out.sort();
    out
}

/// Renders diagnostics as codespan-reporting prints them, without colour.
pub fn render(name: &str, text: &str, diags: &[Diagnostic]) -> String {
    let mut sources = Sources::new();
    let id = sources.add(name, text);
    diags.iter().map(|d| sources.render_plain(id, d)).collect()
}

/// A compact dump of a tree: one node per line, with spans.
pub fn dump(file: &File) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "File @{}..{}", file.span.start, file.span.end);
    for item in &file.items {
        dump_item(item, 1, &mut out);
    }
    out
}

fn pad(depth: usize) -> String {
    "  ".repeat(depth)
}

fn dump_item(item: &Item, depth: usize, out: &mut String) {
    match item {
        Item::Attribute(a) => {
            let _ = write!(out, "{}Attr {} = ", pad(depth), a.name.name);
            dump_expr(&a.value, depth, out);
        }
        Item::Block(b) => {
            let labels: Vec<String> = b.labels.iter().map(|l| format!("{:?}", l.value)).collect();
            let _ = writeln!(
                out,
                "{}Block {} [{}] @{}..{}",
                pad(depth),
                b.kind.name,
                labels.join(", "),
                b.span.start,
                b.span.end
            );
            for i in &b.items {
                dump_item(i, depth + 1, out);
            }
        }
        Item::Error(s) => {
            let _ = writeln!(out, "{}Error @{}..{}", pad(depth), s.start, s.end);
        }
    }
}

fn dump_expr(e: &Expr, depth: usize, out: &mut String) {
    let span = e.span();
    match e {
        Expr::Number(n) => {
            let _ = writeln!(out, "{:?} @{}..{}", n.value, span.start, span.end);
        }
        Expr::Bool(b, _) => {
            let _ = writeln!(out, "Bool({b}) @{}..{}", span.start, span.end);
        }
        Expr::String(t) | Expr::Heredoc(fly_syntax::ast::Heredoc { template: t, .. }) => {
            let kind = if matches!(e, Expr::String(_)) {
                "String"
            } else {
                "Heredoc"
            };
            let parts: Vec<String> = t
                .parts
                .iter()
                .map(|p| match p {
                    TemplatePart::Literal(l) => format!("{:?}", l.value),
                    TemplatePart::Interpolation(i) => match &i.expr {
                        InterpExpr::Traversal(t) => format!("${{{}}}", t.dotted()),
                        InterpExpr::Error(_) => "${<error>}".to_string(),
                    },
                })
                .collect();
            let _ = writeln!(
                out,
                "{kind} [{}] @{}..{}",
                parts.join(" "),
                span.start,
                span.end
            );
        }
        Expr::List(l) => {
            let _ = writeln!(out, "List @{}..{}", span.start, span.end);
            for el in &l.elems {
                let _ = write!(out, "{}- ", pad(depth + 1));
                dump_expr(el, depth + 1, out);
            }
        }
        Expr::Map(m) => {
            let _ = writeln!(out, "Map @{}..{}", span.start, span.end);
            for en in &m.entries {
                let key = match &en.key {
                    MapKey::Ident(i) => i.name.to_string(),
                    MapKey::String(s) => format!("{:?}", s.value),
                };
                let _ = write!(out, "{}{key} = ", pad(depth + 1));
                dump_expr(&en.value, depth + 1, out);
            }
        }
        Expr::Error(_) => {
            let _ = writeln!(out, "Error @{}..{}", span.start, span.end);
        }
    }
}
