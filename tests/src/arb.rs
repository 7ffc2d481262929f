//! proptest generators of Fly syntax trees (spans empty), shared by the property tests.

use fly_syntax::ast::*;
use fly_syntax::Span;
use proptest::prelude::*;

pub fn sp() -> Span {
    Span::default()
}

pub fn ident_name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,7}".prop_filter("keywords", |s| s != "true" && s != "false")
}

pub fn ident() -> impl Strategy<Value = Ident> {
    ident_name().prop_map(|name| Ident {
        name: name.into(),
        span: sp(),
    })
}

/// Text that exercises every escape, `$` next to `{`, and non-ASCII characters.
pub fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 ]{1,5}",
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("\n".to_string()),
            Just("\t".to_string()),
            Just("\r".to_string()),
            Just("$".to_string()),
            Just("{".to_string()),
            Just("${".to_string()),
            Just("$${".to_string()),
            Just("é".to_string()),
            Just("😀".to_string()),
            Just("\u{1}".to_string()),
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

pub fn traversal() -> impl Strategy<Value = Traversal> {
    (ident(), prop::collection::vec(ident(), 0..3)).prop_map(|(root, path)| Traversal {
        root,
        path,
        span: sp(),
    })
}

#[derive(Debug, Clone)]
pub enum Piece {
    Text(String),
    Interp(Traversal),
}

/// Merges adjacent literals and drops empty ones, as the parser does.
pub fn template_parts(pieces: Vec<Piece>) -> Vec<TemplatePart> {
    let mut parts: Vec<TemplatePart> = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) if t.is_empty() => {}
            Piece::Text(t) => match parts.last_mut() {
                Some(TemplatePart::Literal(l)) => l.value.push_str(&t),
                _ => parts.push(TemplatePart::Literal(Literal {
                    value: t,
                    span: sp(),
                })),
            },
            Piece::Interp(t) => parts.push(TemplatePart::Interpolation(Interpolation {
                expr: InterpExpr::Traversal(t),
                span: sp(),
            })),
        }
    }
    parts
}

pub fn template() -> impl Strategy<Value = Template> {
    prop::collection::vec(
        prop_oneof![
            3 => text().prop_map(Piece::Text),
            1 => traversal().prop_map(Piece::Interp),
        ],
        0..4,
    )
    .prop_map(|pieces| Template {
        parts: template_parts(pieces),
        span: sp(),
    })
}

/// Heredoc bodies: whole lines; with `strip`, at least one line starts unindented so the
/// stripped text is what gets printed.
pub fn heredoc() -> impl Strategy<Value = Heredoc> {
    let line = prop::collection::vec(
        prop_oneof![
            3 => "[a-z0-9#!/ {}\\\\\"]{0,8}".prop_map(Piece::Text),
            1 => traversal().prop_map(Piece::Interp),
        ],
        0..3,
    );
    (
        any::<bool>(),
        prop_oneof![Just("EOT"), Just("END_OF_TEXT")],
        prop::collection::vec(line, 0..4),
    )
        .prop_map(|(strip, marker, lines)| {
            let mut pieces = Vec::new();
            for (i, line) in lines.into_iter().enumerate() {
                if strip && i == 0 {
                    pieces.push(Piece::Text("x".into()));
                }
                pieces.extend(line);
                pieces.push(Piece::Text("\n".into()));
            }
            Heredoc {
                marker: marker.to_string(),
                strip,
                template: Template {
                    parts: template_parts(pieces),
                    span: sp(),
                },
                span: sp(),
            }
        })
}

pub fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
    ]
    .prop_map(|raw| Number {
        value: NumberValue::parse(&raw),
        raw: raw.into(),
        span: sp(),
    })
}

pub fn leaf(heredocs: bool) -> BoxedStrategy<Expr> {
    let base = prop_oneof![
        number().prop_map(Expr::Number),
        any::<bool>().prop_map(|b| Expr::Bool(b, sp())),
        template().prop_map(Expr::String),
    ];
    if heredocs {
        prop_oneof![4 => base, 1 => heredoc().prop_map(Expr::Heredoc)].boxed()
    } else {
        base.boxed()
    }
}

pub fn map_key() -> impl Strategy<Value = MapKey> {
    prop_oneof![
        ident().prop_map(MapKey::Ident),
        text().prop_map(|value| MapKey::String(BlockLabel { value, span: sp() })),
    ]
}

pub fn expr(heredocs: bool) -> impl Strategy<Value = Expr> {
    leaf(heredocs).prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|elems| Expr::List(List { elems, span: sp() })),
            prop::collection::vec((map_key(), inner), 0..3).prop_map(|entries| {
                Expr::Map(Map {
                    entries: entries
                        .into_iter()
                        .map(|(key, value)| MapEntry {
                            key,
                            value,
                            span: sp(),
                        })
                        .collect(),
                    span: sp(),
                })
            }),
        ]
    })
}

pub fn attribute(heredocs: bool) -> impl Strategy<Value = Item> {
    (ident(), expr(heredocs)).prop_map(|(name, value)| {
        Item::Attribute(Attribute {
            name,
            value,
            span: sp(),
        })
    })
}

pub fn block_with(items: impl Strategy<Value = Vec<Item>>) -> impl Strategy<Value = Item> {
    (ident(), prop::collection::vec(text(), 0..3), items).prop_map(|(kind, labels, items)| {
        Item::Block(Block {
            kind,
            labels: labels
                .into_iter()
                .map(|value| BlockLabel { value, span: sp() })
                .collect(),
            items,
            open: sp(),
            close: sp(),
            span: sp(),
        })
    })
}

pub fn items(heredocs: bool) -> impl Strategy<Value = Vec<Item>> {
    let item = attribute(heredocs).prop_recursive(4, 32, 5, move |inner| {
        prop_oneof![
            1 => attribute(heredocs),
            1 => block_with(prop::collection::vec(inner, 0..5)),
        ]
    });
    prop::collection::vec(item, 0..6)
}

pub fn file(heredocs: bool) -> impl Strategy<Value = File> {
    items(heredocs).prop_map(|items| File { items, span: sp() })
}
