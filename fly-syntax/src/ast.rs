//! The abstract syntax tree. Every node carries its byte [`Span`].
//!
//! The tree is what the source *means*; how it was laid out lives in the source text and
//! the comment side table ([`crate::Parse::comments`]), which the formatter consults.

use crate::Span;
pub use compact_str::CompactString;
use serde::Serialize;

/// A whole `.fly` file: a body of top-level items.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct File {
    /// Top-level attributes and blocks.
    pub items: Vec<Item>,
    /// The whole file.
    pub span: Span,
}

/// One entry of a body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Item {
    /// `name = value`
    Attribute(Attribute),
    /// `type "label" … { … }`
    Block(Block),
    /// Text the parser skipped while recovering from an error.
    Error(Span),
}

impl Item {
    /// The item's span.
    pub fn span(&self) -> Span {
        match self {
            Item::Attribute(a) => a.span,
            Item::Block(b) => b.span,
            Item::Error(s) => *s,
        }
    }
}

/// A name: attribute name, block type, map key or traversal step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ident {
    /// The name as written (stored inline when short, as names almost always are).
    pub name: CompactString,
    /// Where.
    pub span: Span,
}

/// `name = value`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attribute {
    /// The attribute name.
    pub name: Ident,
    /// Its value.
    pub value: Expr,
    /// From the name to the end of the value.
    pub span: Span,
}

/// `kind "label" … { items }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Block {
    /// The block type, e.g. `egg`.
    pub kind: Ident,
    /// String labels, e.g. the egg's name.
    pub labels: Vec<BlockLabel>,
    /// The body.
    pub items: Vec<Item>,
    /// The `{`.
    pub open: Span,
    /// The `}` (zero-width when it was missing).
    pub close: Span,
    /// From the block type to the `}`.
    pub span: Span,
}

/// A block label: a quoted string without interpolation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockLabel {
    /// The decoded text.
    pub value: String,
    /// The quoted string, quotes included.
    pub span: Span,
}

/// A value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Expr {
    /// A number, possibly negative.
    Number(Number),
    /// `true` / `false`.
    Bool(bool, Span),
    /// A quoted string, possibly with interpolations.
    String(Template),
    /// A heredoc.
    Heredoc(Heredoc),
    /// `[a, b]`
    List(List),
    /// `{ key = value }`
    Map(Map),
    /// A value the parser could not read.
    Error(Span),
}

impl Expr {
    /// The value's span.
    pub fn span(&self) -> Span {
        match self {
            Expr::Number(n) => n.span,
            Expr::Bool(_, s) | Expr::Error(s) => *s,
            Expr::String(t) => t.span,
            Expr::Heredoc(h) => h.span,
            Expr::List(l) => l.span,
            Expr::Map(m) => m.span,
        }
    }

    /// A short name of the value's kind, for messages ("a string", "a list").
    pub fn kind_name(&self) -> &'static str {
        match self {
            Expr::Number(n) => match n.value {
                NumberValue::Int(_) => "an integer",
                NumberValue::Float(_) => "a float",
            },
            Expr::Bool(..) => "a bool",
            Expr::String(_) | Expr::Heredoc(_) => "a string",
            Expr::List(_) => "a list",
            Expr::Map(_) => "a map",
            Expr::Error(_) => "an invalid value",
        }
    }
}

/// A number literal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Number {
    /// The text as written, sign included (`-1.5e3`).
    pub raw: CompactString,
    /// Its value.
    pub value: NumberValue,
    /// Where.
    pub span: Span,
}

/// The value of a number literal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum NumberValue {
    /// Written without `.` or exponent and fits an `i64`.
    Int(i64),
    /// Anything else.
    Float(f64),
}

impl NumberValue {
    /// Reads a number literal (sign included). Unreadable text gives `Int(0)`; the lexer
    /// has already reported it.
    pub fn parse(raw: &str) -> NumberValue {
        let int_like = !raw.contains(['.', 'e', 'E']);
        if int_like {
            if let Ok(i) = raw.parse::<i64>() {
                return NumberValue::Int(i);
            }
        }
        raw.parse::<f64>()
            .map(NumberValue::Float)
            .unwrap_or(NumberValue::Int(0))
    }
}

/// A string with literal and interpolated parts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Template {
    /// The parts in order; adjacent literals are merged.
    pub parts: Vec<TemplatePart>,
    /// The whole string, quotes included.
    pub span: Span,
}

impl Template {
    /// The text when the template has no interpolation.
    pub fn as_literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(l) => out.push_str(&l.value),
                TemplatePart::Interpolation(_) => return None,
            }
        }
        Some(out)
    }
}

/// One part of a template.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TemplatePart {
    /// Decoded literal text.
    Literal(Literal),
    /// `${ expr }`
    Interpolation(Interpolation),
}

/// Literal template text, escapes decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Literal {
    /// The decoded text.
    pub value: String,
    /// The source text it came from.
    pub span: Span,
}

/// `${ expr }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interpolation {
    /// The expression inside.
    pub expr: InterpExpr,
    /// From `${` to `}`.
    pub span: Span,
}

/// An expression inside `${ }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum InterpExpr {
    /// `vars.region`
    Traversal(Traversal),
    /// Something unreadable.
    Error(Span),
}

/// A dotted reference such as `vars.region` or `env.HOME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Traversal {
    /// The first name (`vars`).
    pub root: Ident,
    /// The names after dots.
    pub path: Vec<Ident>,
    /// The whole reference.
    pub span: Span,
}

impl Traversal {
    /// The reference as written without spaces, e.g. `vars.region`.
    pub fn dotted(&self) -> String {
        let mut s = self.root.name.to_string();
        for step in &self.path {
            s.push('.');
            s.push_str(&step.name);
        }
        s
    }
}

/// `<<EOT` … `EOT`, or `<<-EOT` with indentation stripped.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Heredoc {
    /// The marker, e.g. `EOT`.
    pub marker: String,
    /// True for `<<-`.
    pub strip: bool,
    /// The text after indentation stripping.
    pub template: Template,
    /// From `<<` to the end of the closing marker.
    pub span: Span,
}

/// `[a, b, c]`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct List {
    /// The elements.
    pub elems: Vec<Expr>,
    /// From `[` to `]`.
    pub span: Span,
}

/// `{ key = value, … }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Map {
    /// The entries in source order.
    pub entries: Vec<MapEntry>,
    /// From `{` to `}`.
    pub span: Span,
}

/// `key = value` inside a map.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MapEntry {
    /// The key.
    pub key: MapKey,
    /// The value.
    pub value: Expr,
    /// From the key to the end of the value.
    pub span: Span,
}

/// A map key: a bare name or a quoted string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum MapKey {
    /// `key`
    Ident(Ident),
    /// `"some-key"`
    String(BlockLabel),
}

impl MapKey {
    /// The key's text.
    pub fn name(&self) -> &str {
        match self {
            MapKey::Ident(i) => &i.name,
            MapKey::String(s) => &s.value,
        }
    }
    /// The key's span.
    pub fn span(&self) -> Span {
        match self {
            MapKey::Ident(i) => i.span,
            MapKey::String(s) => s.span,
        }
    }
}

/// Sets every span in a tree to the empty span, so trees can be compared by structure.
pub trait EraseSpans {
    /// Erase in place.
    fn erase_spans(&mut self);
}

impl EraseSpans for File {
    fn erase_spans(&mut self) {
        self.span = Span::default();
        self.items.iter_mut().for_each(EraseSpans::erase_spans);
    }
}

impl EraseSpans for Item {
    fn erase_spans(&mut self) {
        match self {
            Item::Attribute(a) => {
                a.span = Span::default();
                a.name.span = Span::default();
                a.value.erase_spans();
            }
            Item::Block(b) => {
                b.span = Span::default();
                b.open = Span::default();
                b.close = Span::default();
                b.kind.span = Span::default();
                b.labels.iter_mut().for_each(|l| l.span = Span::default());
                b.items.iter_mut().for_each(EraseSpans::erase_spans);
            }
            Item::Error(s) => *s = Span::default(),
        }
    }
}

impl EraseSpans for Expr {
    fn erase_spans(&mut self) {
        match self {
            Expr::Number(n) => n.span = Span::default(),
            Expr::Bool(_, s) | Expr::Error(s) => *s = Span::default(),
            Expr::String(t) => t.erase_spans(),
            Expr::Heredoc(h) => {
                h.span = Span::default();
                h.template.erase_spans();
            }
            Expr::List(l) => {
                l.span = Span::default();
                l.elems.iter_mut().for_each(EraseSpans::erase_spans);
            }
            Expr::Map(m) => {
                m.span = Span::default();
                for e in &mut m.entries {
                    e.span = Span::default();
                    match &mut e.key {
                        MapKey::Ident(i) => i.span = Span::default(),
                        MapKey::String(s) => s.span = Span::default(),
                    }
                    e.value.erase_spans();
                }
            }
        }
    }
}

impl EraseSpans for Template {
    fn erase_spans(&mut self) {
        self.span = Span::default();
        for part in &mut self.parts {
            match part {
                TemplatePart::Literal(l) => l.span = Span::default(),
                TemplatePart::Interpolation(i) => {
                    i.span = Span::default();
                    match &mut i.expr {
                        InterpExpr::Traversal(t) => {
                            t.span = Span::default();
                            t.root.span = Span::default();
                            t.path.iter_mut().for_each(|p| p.span = Span::default());
                        }
                        InterpExpr::Error(s) => *s = Span::default(),
                    }
                }
            }
        }
    }
}
