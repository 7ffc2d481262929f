//! Checking blocks and attributes against the schema, and values against their types
//! (Property 2: every type error names the expected and the actual type, with its location
//! and a valid example).

use crate::condition::parse_condition;
use crate::duration::parse_duration;
use crate::eval::{Evaluator, Value, ValueKind};
use crate::schema::{AttrSchema, BlockSchema, Type};
use crate::{codes, suggest, Diags};
use fly_ir::{Condition, Schedule};
use fly_syntax::ast::{Attribute, Block, Expr, Item, TemplatePart};
use fly_syntax::{Diagnostic, Span};
use std::collections::HashMap;

/// A checked block: its schema, its syntax, its typed attributes and its child blocks.
pub(crate) struct Node<'a> {
    pub schema: &'static BlockSchema,
    pub block: &'a Block,
    pub file: usize,
    /// Attributes that were set and type-checked: name → (typed value, attribute).
    pub attrs: HashMap<String, (Typed, &'a Attribute)>,
    pub children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    pub fn label(&self) -> &str {
        self.block
            .labels
            .first()
            .map(|l| l.value.as_str())
            .unwrap_or("")
    }

    pub fn child(&self, name: &str) -> Option<&Node<'a>> {
        self.children.iter().find(|c| c.schema.name == name)
    }

    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Node<'a>> + 's {
        self.children.iter().filter(move |c| c.schema.name == name)
    }

    pub fn typed(&self, name: &str) -> Option<&Typed> {
        self.attrs.get(name).map(|(t, _)| t)
    }

    pub fn attr_span(&self, name: &str) -> Option<Span> {
        self.attrs.get(name).map(|(_, a)| a.value.span())
    }
}

/// A value that passed its type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Typed {
    Str(String),
    Int(i64),
    Bool(bool),
    Seconds(u64),
    Schedule(Schedule),
    Condition(Condition, String),
    List(Vec<Typed>),
    Any(Value),
}

impl Typed {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Typed::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Typed::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_seconds(&self) -> Option<u64> {
        match self {
            Typed::Seconds(s) => Some(*s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Typed::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_strings(&self) -> Vec<String> {
        match self {
            Typed::List(items) => items
                .iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

pub(crate) struct Checker<'e, 'a> {
    pub eval: &'e mut Evaluator<'a>,
    pub diags: &'e mut Diags,
}

impl<'a> Checker<'_, 'a> {
    /// Checks the items of a block (or a file, with the root schema).
    pub fn items(
        &mut self,
        file: usize,
        schema: &'static BlockSchema,
        items: &'a [Item],
        parent: Option<&'a Block>,
    ) -> (HashMap<String, (Typed, &'a Attribute)>, Vec<Node<'a>>) {
        let mut attrs: HashMap<String, (Typed, &'a Attribute)> = HashMap::new();
        let mut set: Vec<&'a str> = Vec::new();
        let mut seen_attrs: HashMap<&str, Span> = HashMap::new();
        let mut children: Vec<Node<'a>> = Vec::new();
        let mut seen_blocks: HashMap<&str, Span> = HashMap::new();
        for item in items {
            match item {
                Item::Attribute(a) => {
                    let name = a.name.name.as_str();
                    if let Some(first) = seen_attrs.get(name) {
                        self.diags.push(
                            file,
                            Diagnostic::error(
                                codes::DUPLICATE_ATTRIBUTE,
                                a.name.span,
                                format!("`{name}` is set twice"),
                            )
                            .with_label("set again here")
                            .with_secondary(*first, "first set here")
                            .with_help("remove one of them"),
                        );
                        continue;
                    }
                    seen_attrs.insert(name, a.name.span);
                    set.push(name);
                    let ty = match (schema.attr(name), schema.free_attrs) {
                        (Some(attr), _) => Some((attr.ty, Some(attr))),
                        (None, Some(ty)) => Some((ty, None)),
                        (None, None) => None,
                    };
                    let Some((ty, attr_schema)) = ty else {
                        self.unknown_attribute(file, schema, a);
                        continue;
                    };
                    if let Some(value) = self.eval.expr(file, &a.value, self.diags) {
                        if let Some(typed) = self.value(file, ty, &value, attr_schema, &a.value) {
                            attrs.insert(name.to_string(), (typed, a));
                        }
                    }
                }
                Item::Block(b) => {
                    let name = b.kind.name.as_str();
                    let Some(child_schema) = schema.block(name) else {
                        self.unknown_block(file, schema, b);
                        continue;
                    };
                    if !child_schema.repeatable {
                        if let Some(first) = seen_blocks.get(name) {
                            self.diags.push(
                                file,
                                Diagnostic::error(
                                    codes::DUPLICATE_BLOCK,
                                    b.kind.span,
                                    format!("only one `{name}` block is allowed here"),
                                )
                                .with_secondary(*first, "the first one")
                                .with_help(format!("merge the two `{name}` blocks")),
                            );
                            continue;
                        }
                    }
                    seen_blocks.insert(name, b.kind.span);
                    if let Some(node) = self.block(file, child_schema, b) {
                        children.push(node);
                    }
                }
                Item::Error(_) => {}
            }
        }
        // Missing required attributes and blocks.
        let at = parent.map(|b| b.kind.span).unwrap_or_default();
        if parent.is_some() {
            for attr in schema.attrs.iter().filter(|a| a.required) {
                if !set.contains(&attr.name) {
                    let what = parent.map(describe_block).unwrap_or_default();
                    self.diags.push(
                        file,
                        Diagnostic::error(
                            codes::MISSING_ATTRIBUTE,
                            at,
                            format!("{what} is missing the required attribute `{}`", attr.name),
                        )
                        .with_help(format!(
                            "add `{}` ({})",
                            attr.example,
                            attr.ty.describe()
                        )),
                    );
                }
            }
            for b in schema.blocks.iter().filter(|b| b.required) {
                if !seen_blocks.contains_key(b.name) {
                    let what = parent.map(describe_block).unwrap_or_default();
                    self.diags.push(
                        file,
                        Diagnostic::error(
                            codes::MISSING_BLOCK,
                            at,
                            format!("{what} is missing the required block `{}`", b.name),
                        )
                        .with_help(format!("add:\n{}", b.example)),
                    );
                }
            }
        }
        (attrs, children)
    }

    fn block(
        &mut self,
        file: usize,
        schema: &'static BlockSchema,
        b: &'a Block,
    ) -> Option<Node<'a>> {
        if b.labels.len() != schema.labels.len() {
            let msg = match (schema.labels.len(), b.labels.len()) {
                (0, _) => format!("a `{}` block takes no label", schema.name),
                (1, 0) => format!(
                    "a `{}` block needs a {}: `{} \"NAME\" {{ … }}`",
                    schema.name, schema.labels[0], schema.name
                ),
                (n, m) => format!("a `{}` block takes {n} label(s), found {m}", schema.name),
            };
            let span = b.labels.first().map(|l| l.span).unwrap_or(b.kind.span);
            self.diags.push(
                file,
                Diagnostic::error(codes::LABELS, span, msg)
                    .with_help(format!("for example:\n{}", schema.example)),
            );
            return None;
        }
        if let Some(l) = b.labels.first() {
            if l.value.trim().is_empty() {
                self.diags.push(
                    file,
                    Diagnostic::error(
                        codes::LABELS,
                        l.span,
                        format!("a `{}` name cannot be empty", schema.name),
                    ),
                );
                return None;
            }
        }
        let (attrs, children) = self.items(file, schema, &b.items, Some(b));
        Some(Node {
            schema,
            block: b,
            file,
            attrs,
            children,
        })
    }

    fn unknown_attribute(&mut self, file: usize, schema: &'static BlockSchema, a: &Attribute) {
        let name = &a.name.name;
        let mut d = Diagnostic::error(
            codes::UNKNOWN_ATTRIBUTE,
            a.name.span,
            if schema.name.is_empty() {
                format!("unknown top-level attribute `{name}`")
            } else {
                format!("unknown attribute `{name}` in `{}`", schema.name)
            },
        );
        if let Some(s) = suggest(name, schema.attrs.iter().map(|a| a.name)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else if schema.block(name).is_some() {
            d = d.with_help(format!("`{name}` is a block: write `{name} {{ … }}`"));
        } else if schema.attrs.is_empty() {
            d = d.with_help(format!(
                "`{}` holds only blocks",
                if schema.name.is_empty() {
                    "a file"
                } else {
                    schema.name
                }
            ));
        } else {
            let names: Vec<&str> = schema.attrs.iter().map(|a| a.name).collect();
            d = d.with_help(format!(
                "attributes of `{}`: {}",
                schema.name,
                names.join(", ")
            ));
        }
        self.diags.push(file, d);
    }

    fn unknown_block(&mut self, file: usize, schema: &'static BlockSchema, b: &Block) {
        let name = &b.kind.name;
        let mut d = Diagnostic::error(
            codes::UNKNOWN_BLOCK,
            b.kind.span,
            if schema.name.is_empty() {
                format!("unknown block type `{name}`")
            } else {
                format!("unknown block `{name}` in `{}`", schema.name)
            },
        );
        if let Some(s) = suggest(name, schema.blocks.iter().map(|b| b.name)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else if schema.attr(name).is_some() {
            d = d.with_help(format!("`{name}` is an attribute: write `{name} = …`"));
        } else if schema.blocks.is_empty() {
            d = d.with_help(format!("`{}` holds no blocks", schema.name));
        } else {
            let names: Vec<&str> = schema.blocks.iter().map(|b| b.name).collect();
            d = d.with_help(format!("blocks allowed here: {}", names.join(", ")));
        }
        self.diags.push(file, d);
    }

    /// Checks `value` against `ty`; reports and returns `None` on a mismatch.
    pub fn value(
        &mut self,
        file: usize,
        ty: Type,
        value: &Value,
        attr: Option<&AttrSchema>,
        expr: &Expr,
    ) -> Option<Typed> {
        let span = value.span;
        let mismatch = |this: &mut Self, expected: &str| {
            let mut d = Diagnostic::error(
                codes::TYPE_MISMATCH,
                span,
                format!("expected {expected}, found {}", value.kind.name()),
            )
            .with_label(format!("this is {}", value.kind.name()));
            if let Some(a) = attr {
                d = d.with_help(format!(
                    "`{}` is {}; for example: {}",
                    a.name,
                    ty.describe(),
                    a.example
                ));
            }
            this.diags.push(file, d);
            None
        };
        match (ty, &value.kind) {
            (Type::Any, _) => Some(Typed::Any(value.clone())),
            (Type::String, ValueKind::Str(s)) => Some(Typed::Str(s.clone())),
            (Type::String, ValueKind::Int(_) | ValueKind::Float(_) | ValueKind::Bool(_))
                if attr.is_none() =>
            {
                // Free-form string maps (environment): scalars are written as text.
                Some(Typed::Str(scalar_text(&value.kind)))
            }
            (Type::String, _) => mismatch(self, "a string"),
            (Type::Int { min, max }, ValueKind::Int(i)) => {
                if *i < min || *i > max {
                    let range = if max == i64::MAX {
                        format!("at least {min}")
                    } else {
                        format!("between {min} and {max}")
                    };
                    let mut d = Diagnostic::error(
                        codes::OUT_OF_RANGE,
                        span,
                        format!("{i} is out of range: must be {range}"),
                    );
                    if let Some(a) = attr {
                        d = d.with_help(format!("for example: {}", a.example));
                    }
                    self.diags.push(file, d);
                    return None;
                }
                Some(Typed::Int(*i))
            }
            (Type::Int { .. }, _) => mismatch(self, "an integer"),
            (Type::Bool, ValueKind::Bool(b)) => Some(Typed::Bool(*b)),
            (Type::Bool, _) => mismatch(self, "a bool (`true` or `false`)"),
            (Type::Enum(values), ValueKind::Str(s)) => {
                if values.contains(&s.as_str()) {
                    return Some(Typed::Str(s.clone()));
                }
                let list: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
                let help = match suggest(s, values.iter().copied()) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => format!("allowed values: {}", list.join(", ")),
                };
                self.diags.push(
                    file,
                    Diagnostic::error(
                        codes::INVALID_ENUM,
                        span,
                        format!("\"{s}\" is not one of {}", list.join(", ")),
                    )
                    .with_help(help),
                );
                None
            }
            (Type::Enum(_), _) => mismatch(self, "a string"),
            (Type::Duration { max_s }, ValueKind::Str(s)) => match parse_duration(s) {
                Ok(secs) if secs > max_s => {
                    self.diags.push(
                        file,
                        Diagnostic::error(
                            codes::OUT_OF_RANGE,
                            span,
                            format!(
                                "\"{s}\" is too long: at most {}",
                                crate::duration::format_duration(max_s)
                            ),
                        ),
                    );
                    None
                }
                Ok(secs) => Some(Typed::Seconds(secs)),
                Err(msg) => {
                    self.diags.push(
                        file,
                        Diagnostic::error(codes::INVALID_DURATION, span, msg).with_help(
                            "durations look like \"90s\", \"10m\", \"24h\" or \"1h30m\"",
                        ),
                    );
                    None
                }
            },
            (Type::Duration { .. }, ValueKind::Int(i)) => {
                self.diags.push(
                    file,
                    Diagnostic::error(
                        codes::TYPE_MISMATCH,
                        span,
                        "expected a duration string, found an integer",
                    )
                    .with_help(format!("write the unit: \"{i}s\", \"{i}m\" or \"{i}h\"")),
                );
                None
            }
            (Type::Duration { .. }, _) => mismatch(self, "a duration string such as \"10m\""),
            (Type::Cron, ValueKind::Str(s)) => match Schedule::parse(s) {
                Ok(schedule) => Some(Typed::Schedule(schedule)),
                Err(e) => {
                    let at = inner_span(expr, span, e.start, e.end);
                    self.diags.push(
                        file,
                        Diagnostic::error(codes::INVALID_CRON, at, format!("invalid cron schedule: {}", e.message))
                            .with_help("five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\" (02:00 UTC daily)"),
                    );
                    None
                }
            },
            (Type::Cron, _) => mismatch(self, "a cron expression string"),
            (Type::Secret, ValueKind::Str(s)) => self.secret(file, s, span),
            (Type::Secret, _) => mismatch(self, "a secret reference string"),
            (Type::Region, ValueKind::Str(s)) if !s.trim().is_empty() => {
                Some(Typed::Str(s.clone()))
            }
            (Type::Region, _) => mismatch(self, "a region name"),
            (Type::Email, ValueKind::Str(s)) => {
                if is_email(s) {
                    Some(Typed::Str(s.clone()))
                } else {
                    self.diags.push(
                        file,
                        Diagnostic::error(
                            codes::INVALID_EMAIL,
                            span,
                            format!("\"{s}\" is not an e-mail address"),
                        )
                        .with_help("for example \"ops@example.com\""),
                    );
                    None
                }
            }
            (Type::Email, _) => mismatch(self, "an e-mail address"),
            (Type::Url, ValueKind::Str(s)) => {
                let ok = (s.starts_with("https://") || s.starts_with("http://"))
                    && s.split("://")
                        .nth(1)
                        .is_some_and(|h| !h.is_empty() && !h.contains(' '));
                if ok {
                    Some(Typed::Str(s.trim_end_matches('/').to_string()))
                } else {
                    self.diags.push(
                        file,
                        Diagnostic::error(
                            codes::INVALID_URL,
                            span,
                            format!("\"{s}\" is not an http(s) URL"),
                        )
                        .with_help("for example \"https://gitlab.example.com\""),
                    );
                    None
                }
            }
            (Type::Url, _) => mismatch(self, "a URL string"),
            (Type::Condition, ValueKind::Str(s)) => match parse_condition(s) {
                Ok(c) => Some(Typed::Condition(c, s.clone())),
                Err(e) => {
                    let at = inner_span(expr, span, e.start, e.end);
                    let mut d = Diagnostic::error(e.code, at, e.message);
                    if let Some(h) = e.help {
                        d = d.with_help(h);
                    }
                    self.diags.push(file, d);
                    None
                }
            },
            (Type::Condition, _) => mismatch(self, "a condition string"),
            (Type::TimeZone, ValueKind::Str(s)) => match time_zone(s) {
                Ok(()) => Some(Typed::Str(s.clone())),
                Err(help) => {
                    self.diags.push(
                        file,
                        Diagnostic::error(
                            codes::INVALID_TIME_ZONE,
                            span,
                            format!("\"{}\" is not an IANA time zone", truncate(s)),
                        )
                        .with_help(help),
                    );
                    None
                }
            },
            (Type::TimeZone, _) => mismatch(self, "a time zone name"),
            (Type::Certificate, ValueKind::Str(s)) => match certificate(s) {
                Ok(()) => Some(Typed::Str(s.clone())),
                Err(message) => {
                    self.diags.push(
                        file,
                        Diagnostic::error(codes::INVALID_CERTIFICATE, span, message).with_help(
                            "paste the CA certificate as a heredoc:\n\
                             tls_ca = <<-EOT\n  -----BEGIN CERTIFICATE-----\n  MIIB…\n  -----END CERTIFICATE-----\nEOT",
                        ),
                    );
                    None
                }
            },
            (Type::Certificate, _) => mismatch(self, "a PEM certificate string"),
            (Type::Tags, ValueKind::List(items)) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match &item.kind {
                        ValueKind::Str(t) if valid_tag(t) => out.push(Typed::Str(t.clone())),
                        ValueKind::Str(t) => {
                            self.diags.push(
                                file,
                                Diagnostic::error(codes::INVALID_TAG, item.span, format!("\"{t}\" is not a valid tag"))
                                    .with_help("tags are non-empty, at most 255 characters, without commas or surrounding spaces"),
                            );
                            ok = false;
                        }
                        other => {
                            self.diags.push(
                                file,
                                Diagnostic::error(
                                    codes::TYPE_MISMATCH,
                                    item.span,
                                    format!("expected a tag string, found {}", other.name()),
                                )
                                .with_help("for example: tags = [\"docker\", \"linux\"]"),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(Typed::List(out))
            }
            (Type::Tags, _) => mismatch(self, "a list of tags"),
            (Type::List(inner), ValueKind::List(items)) => {
                let elems: Vec<&Expr> = match expr {
                    Expr::List(l) => l.elems.iter().collect(),
                    _ => Vec::new(),
                };
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    let e = elems.get(i).copied().unwrap_or(expr);
                    match self.value(file, *inner, item, None, e) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                ok.then_some(Typed::List(out))
            }
            (Type::List(inner), _) => mismatch(self, &format!("a list of {}", inner.describe())),
        }
    }

    fn secret(&mut self, file: usize, s: &str, span: Span) -> Option<Typed> {
        const SCHEMES: [&str; 3] = ["vault://", "yc-lockbox://", "aws-sm://"];
        if let Some(scheme) = SCHEMES.iter().find(|p| s.starts_with(**p)) {
            if s.len() > scheme.len() && !s.contains(char::is_whitespace) {
                return Some(Typed::Str(s.to_string()));
            }
            self.diags.push(
                file,
                Diagnostic::error(
                    codes::PLAINTEXT_SECRET,
                    span,
                    format!("`{scheme}` needs a path without spaces"),
                )
                .with_help(format!("for example \"{scheme}gitlab/runner-token\"")),
            );
            return None;
        }
        let looks_like_token = looks_like_token(s);
        let message = if looks_like_token {
            "this looks like a token written in plain text: secrets must never be stored in the Nest".to_string()
        } else {
            format!("\"{}\" is not a secret reference", truncate(s))
        };
        self.diags.push(
            file,
            Diagnostic::error(codes::PLAINTEXT_SECRET, span, message).with_help(
                "store the token in Vault, Yandex Lockbox or AWS Secrets Manager and refer to it: \
                 \"vault://PATH\", \"yc-lockbox://SECRET_ID/KEY\" or \"aws-sm://NAME\"; \
                 if the token was committed, revoke it",
            ),
        );
        None
    }
}

fn describe_block(b: &Block) -> String {
    match b.labels.first() {
        Some(l) => format!("{} \"{}\"", b.kind.name, l.value),
        None => format!("`{}`", b.kind.name),
    }
}

fn scalar_text(v: &ValueKind) -> String {
    match v {
        ValueKind::Str(s) => s.clone(),
        ValueKind::Int(i) => i.to_string(),
        ValueKind::Float(f) => f.to_string(),
        ValueKind::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Maps a byte range inside a string value to a source span, when the string is written
/// without escapes or interpolation (else the whole string).
fn inner_span(expr: &Expr, whole: Span, start: usize, end: usize) -> Span {
    if let Expr::String(t) = expr {
        if let [TemplatePart::Literal(l)] = t.parts.as_slice() {
            if l.span.len() == l.value.len() && end <= l.value.len() {
                let base = l.span.start as usize;
                return Span::new(base + start, base + end.max(start));
            }
        }
    }
    whole
}

/// Whether `name` is in the IANA time zone database; otherwise the help to show.
pub(crate) fn time_zone(name: &str) -> Result<(), String> {
    use chrono_tz::{Tz, TZ_VARIANTS};
    if name.parse::<Tz>().is_ok() {
        return Ok(());
    }
    let names = || TZ_VARIANTS.iter().map(|tz| tz.name());
    if let Some(exact) = names().find(|n| n.eq_ignore_ascii_case(name)) {
        // Names are case sensitive; the plain form lets the editor offer the fix.
        return Err(format!("did you mean \"{exact}\"?"));
    }
    // A fixed offset such as "UTC+3" or "+03:00".
    let offset = name
        .trim_start_matches("UTC")
        .trim_start_matches("GMT")
        .trim_end_matches(":00");
    if let Some((sign, hours)) = offset.split_at_checked(1) {
        if matches!(sign, "+" | "-")
            && !hours.is_empty()
            && hours.len() <= 2
            && hours.bytes().all(|b| b.is_ascii_digit())
        {
            let h: u32 = hours.parse().unwrap_or(0);
            let inverted = if sign == "+" { "-" } else { "+" };
            if h == 0 {
                return Err("for UTC write \"UTC\"".into());
            }
            return Err(format!(
                "prefer the zone's name, such as \"Europe/Moscow\"; for a fixed offset of \
                 {sign}{h} hours write \"Etc/GMT{inverted}{h}\" (the sign is inverted in these names)"
            ));
        }
    }
    Err(match crate::suggest(name, names()) {
        Some(near) => format!("did you mean \"{near}\"?"),
        None => "time zones are IANA names such as \"Europe/Moscow\", \"America/New_York\" \
                 or \"UTC\""
            .into(),
    })
}

/// Whether `text` holds one or more PEM certificates and nothing but whitespace around
/// them; otherwise what is wrong.
pub(crate) fn certificate(text: &str) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "this is a private key, not a certificate: a private key must never be in the Nest \
             (if it was committed, replace the key)"
                .into(),
        );
    }
    let mut rest = text.trim();
    if !rest.starts_with(BEGIN) {
        return Err(match rest.find("-----BEGIN ") {
            Some(0) => {
                let kind = rest["-----BEGIN ".len()..]
                    .split("-----")
                    .next()
                    .unwrap_or("");
                format!(
                    "expected a PEM certificate, found a PEM `{}`",
                    truncate(kind)
                )
            }
            _ => format!("expected a PEM certificate (`{BEGIN}` … `{END}`)"),
        });
    }
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix(BEGIN) else {
            return Err(format!(
                "only certificates may follow a certificate, found `{}`",
                truncate(rest.lines().next().unwrap_or(""))
            ));
        };
        let Some(end) = body.find(END) else {
            return Err(format!("the certificate has no `{END}` line"));
        };
        let b64: String = body[..end].split_whitespace().collect();
        let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
        if b64.is_empty() || !b64.len().is_multiple_of(4) || !b64.chars().all(base64) {
            return Err("the certificate's body is not base64".into());
        }
        rest = body[end + END.len()..].trim_start();
    }
    Ok(())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty() && t.len() <= 255 && !t.contains(',') && t.trim() == t
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.starts_with('.')
        && domain.contains('.')
        && !domain.ends_with('.')
        && !s.contains(char::is_whitespace)
        && !domain.contains('@')
}

/// GitLab tokens (`glrt-`, `glpat-`, `GR1348941…`), AWS keys, or long random-looking text.
pub(crate) fn looks_like_token(s: &str) -> bool {
    const PREFIXES: [&str; 8] = [
        "glrt-",
        "glpat-",
        "gldt-",
        "glcbt-",
        "GR1348941",
        "AKIA",
        "ASIA",
        "ghp_",
    ];
    if PREFIXES.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    let long = s.len() >= 20 && !s.contains(char::is_whitespace) && !s.contains('/');
    let classes = [
        s.chars().any(|c| c.is_ascii_lowercase()),
        s.chars().any(|c| c.is_ascii_uppercase()),
        s.chars().any(|c| c.is_ascii_digit()),
    ];
    long && classes.iter().filter(|c| **c).count() >= 2
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}
