//! Evaluating values: literals, lists, maps and string templates with `${vars.NAME}` and
//! `${env.NAME}` substituted (Property 4).
//!
//! A template that is exactly one interpolation (`"${vars.cpu}"`) takes the referenced
//! value as it is, so a number stays a number and is type-checked as one; any other template
//! is text. Variables may refer to other variables; a cycle is reported with its path.

use crate::codes;
use crate::Diags;
use fly_syntax::ast::{Expr, InterpExpr, NumberValue, Template, TemplatePart, Traversal};
use fly_syntax::{Diagnostic, Severity, Span};
use std::collections::{BTreeMap, HashMap};

/// An evaluated value, with the span of the source it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where it was written (for an interpolated value: the interpolation).
    pub span: Span,
}

/// The kinds of value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// Text.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A list.
    List(Vec<Value>),
    /// A map, in source order.
    Map(Vec<(String, Value)>),
}

impl ValueKind {
    /// "a string", "an integer", … for messages.
    pub fn name(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a float",
            ValueKind::Bool(_) => "a bool",
            ValueKind::List(_) => "a list",
            ValueKind::Map(_) => "a map",
        }
    }
}

/// The compiling environment for `${env.NAME}`.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// Variables visible to the Nest.
    pub vars: BTreeMap<String, String>,
    /// Whether a reference to an unset variable is an error (`fly build`, deploy) or a
    /// warning (`fly check`, the editor, where CI variables are usually absent).
    pub unset_is_error: bool,
}

impl Env {
    /// The process environment.
    pub fn from_process(unset_is_error: bool) -> Self {
        Env {
            vars: std::env::vars().collect(),
            unset_is_error,
        }
    }
}

/// A `vars` attribute: its value expression and where it is.
pub(crate) struct VarDef<'a> {
    pub file: usize,
    pub expr: &'a Expr,
    pub name_span: Span,
}

enum VarState {
    Resolving,
    Done(Option<Value>),
}

/// Evaluates expressions against the Nest's variables and the environment.
pub(crate) struct Evaluator<'a> {
    pub vars: HashMap<String, VarDef<'a>>,
    env: &'a Env,
    state: HashMap<String, VarState>,
    stack: Vec<String>,
}

impl<'a> Evaluator<'a> {
    pub fn new(vars: HashMap<String, VarDef<'a>>, env: &'a Env) -> Self {
        Evaluator {
            vars,
            env,
            state: HashMap::new(),
            stack: Vec::new(),
        }
    }

    /// Evaluates `expr` written in `file`; `None` after reporting a problem.
    pub fn expr(&mut self, file: usize, expr: &Expr, diags: &mut Diags) -> Option<Value> {
        let span = expr.span();
        let kind = match expr {
            Expr::Number(n) => match n.value {
                NumberValue::Int(i) => ValueKind::Int(i),
                NumberValue::Float(f) => ValueKind::Float(f),
            },
            Expr::Bool(b, _) => ValueKind::Bool(*b),
            Expr::String(t) => return self.template(file, t, diags),
            Expr::Heredoc(h) => {
                let mut v = self.template(file, &h.template, diags)?;
                v.span = h.span;
                return Some(v);
            }
            Expr::List(l) => {
                let mut items = Vec::with_capacity(l.elems.len());
                let mut ok = true;
                for e in &l.elems {
                    match self.expr(file, e, diags) {
                        Some(v) => items.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ValueKind::List(items)
            }
            Expr::Map(m) => {
                let mut entries = Vec::with_capacity(m.entries.len());
                let mut ok = true;
                for e in &m.entries {
                    match self.expr(file, &e.value, diags) {
                        Some(v) => entries.push((e.key.name().to_string(), v)),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                ValueKind::Map(entries)
            }
            Expr::Error(_) => return None,
        };
        Some(Value { kind, span })
    }

    fn template(&mut self, file: usize, t: &Template, diags: &mut Diags) -> Option<Value> {
        if let [TemplatePart::Interpolation(i)] = t.parts.as_slice() {
            let InterpExpr::Traversal(tr) = &i.expr else {
                return None;
            };
            let mut v = self.reference(file, tr, diags)?;
            v.span = t.span;
            return Some(v);
        }
        let mut text = String::new();
        let mut ok = true;
        for part in &t.parts {
            match part {
                TemplatePart::Literal(l) => text.push_str(&l.value),
                TemplatePart::Interpolation(i) => {
                    let InterpExpr::Traversal(tr) = &i.expr else {
                        ok = false;
                        continue;
                    };
                    match self.reference(file, tr, diags) {
                        Some(v) => match &v.kind {
                            ValueKind::Str(s) => text.push_str(s),
                            ValueKind::Int(n) => text.push_str(&n.to_string()),
                            ValueKind::Float(f) => text.push_str(&f.to_string()),
                            ValueKind::Bool(b) => text.push_str(&b.to_string()),
                            ValueKind::List(_) | ValueKind::Map(_) => {
                                diags.push(
                                    file,
                                    Diagnostic::error(
                                        codes::BAD_INTERPOLATION,
                                        tr.span,
                                        format!(
                                            "`{}` is {} and cannot be part of a string",
                                            tr.dotted(),
                                            v.kind.name()
                                        ),
                                    )
                                    .with_help("use the reference alone as the value: `\"${…}\"`"),
                                );
                                ok = false;
                            }
                        },
                        None => ok = false,
                    }
                }
            }
        }
        ok.then_some(Value {
            kind: ValueKind::Str(text),
            span: t.span,
        })
    }

    /// Resolves `vars.NAME` or `env.NAME`.
    pub fn reference(&mut self, file: usize, tr: &Traversal, diags: &mut Diags) -> Option<Value> {
        let root = tr.root.name.as_str();
        let [name] = tr.path.as_slice() else {
            let message = match (root, tr.path.len()) {
                ("vars" | "env", 0) => format!("`{root}` needs a name: `{root}.NAME`"),
                ("vars" | "env", _) => {
                    format!("`{}` goes too deep: write `{root}.NAME`", tr.dotted())
                }
                _ => format!("unknown reference `{}`", tr.dotted()),
            };
            diags.push(
                file,
                Diagnostic::error(codes::UNKNOWN_REFERENCE, tr.span, message)
                    .with_help("references are `${vars.NAME}` (from a `vars` block) or `${env.NAME}` (from the environment)"),
            );
            return None;
        };
        match root {
            "vars" => self.var(file, &name.name, name.span, diags),
            "env" => match self.env.vars.get(name.name.as_str()) {
                Some(v) => Some(Value {
                    kind: ValueKind::Str(v.clone()),
                    span: tr.span,
                }),
                None => {
                    let severity = if self.env.unset_is_error {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    diags.push(
                        file,
                        Diagnostic::new(
                            severity,
                            codes::UNSET_ENV,
                            tr.span,
                            format!("environment variable `{}` is not set", name.name),
                        )
                        .with_help("set it where the Nest is compiled (`fly build`, `gosling deploy`), or use `${vars.NAME}`"),
                    );
                    None
                }
            },
            other => {
                let help = match crate::suggest(other, ["vars", "env"]) {
                    Some(s) => format!("did you mean `{s}.{}`?", name.name),
                    None => "references start with `vars.` or `env.`".into(),
                };
                diags.push(
                    file,
                    Diagnostic::error(
                        codes::UNKNOWN_REFERENCE,
                        tr.root.span,
                        format!("unknown reference `{}`", tr.dotted()),
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    /// Every variable with its definition site and value (problems were reported already).
    pub fn resolve_all(&mut self) -> std::collections::BTreeMap<String, crate::VarInfo> {
        let mut names: Vec<(String, usize, Span)> = self
            .vars
            .iter()
            .map(|(n, d)| (n.clone(), d.file, d.name_span))
            .collect();
        names.sort();
        let mut sink = Diags::default();
        names
            .into_iter()
            .map(|(name, file, name_span)| {
                let value = self.var(file, &name, name_span, &mut sink);
                (
                    name,
                    crate::VarInfo {
                        file,
                        name_span,
                        value,
                    },
                )
            })
            .collect()
    }

    fn var(&mut self, file: usize, name: &str, at: Span, diags: &mut Diags) -> Option<Value> {
        match self.state.get(name) {
            Some(VarState::Done(v)) => {
                return v.clone().map(|mut v| {
                    v.span = at;
                    v
                })
            }
            Some(VarState::Resolving) => {
                let start = self.stack.iter().position(|n| n == name).unwrap_or(0);
                let mut path: Vec<&str> = self.stack[start..].iter().map(String::as_str).collect();
                path.push(name);
                diags.push(
                    file,
                    Diagnostic::error(
                        codes::REFERENCE_CYCLE,
                        at,
                        format!(
                            "variables refer to each other in a cycle: {}",
                            path.join(" → ")
                        ),
                    )
                    .with_help("give one of them a value that does not refer back"),
                );
                return None;
            }
            None => {}
        }
        let Some(def) = self.vars.get(name) else {
            let help = match crate::suggest(name, self.vars.keys().map(String::as_str)) {
                Some(s) => format!("did you mean `vars.{s}`?"),
                None if self.vars.is_empty() => "define it in a `vars { }` block".to_string(),
                None => format!(
                    "defined variables: {}",
                    sorted(self.vars.keys().map(String::as_str)).join(", ")
                ),
            };
            diags.push(
                file,
                Diagnostic::error(
                    codes::UNKNOWN_REFERENCE,
                    at,
                    format!("unknown variable `{name}`"),
                )
                .with_help(help),
            );
            return None;
        };
        let (def_file, expr) = (def.file, def.expr);
        self.state.insert(name.to_string(), VarState::Resolving);
        self.stack.push(name.to_string());
        let value = self.expr(def_file, expr, diags);
        self.stack.pop();
        self.state
            .insert(name.to_string(), VarState::Done(value.clone()));
        value.map(|mut v| {
            v.span = at;
            v
        })
    }
}

fn sorted<'s>(it: impl Iterator<Item = &'s str>) -> Vec<&'s str> {
    let mut v: Vec<&str> = it.collect();
    v.sort_unstable();
    v
}
