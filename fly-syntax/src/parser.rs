//! The parser driver: runs the LALRPOP grammar over the lexer's tokens and turns parse
//! errors into worded diagnostics.

use crate::ast::{BlockLabel, File, Number, NumberValue, Template};
use crate::diagnostic::codes;
use crate::lexer::{Lexer, Spanned, TokInfo};
use crate::token::Tok;
use crate::token::TokKind;
use crate::{Comment, Diagnostic, Span};
use lalrpop_util::{ErrorRecovery, ParseError};

#[allow(clippy::all, unused_parens, dead_code, missing_docs)]
mod grammar {
    include!(concat!(env!("OUT_DIR"), "/grammar.rs"));
}

/// The parser never produces errors of its own type: lexical problems are diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Never {}

/// State shared with grammar actions.
#[derive(Default)]
pub struct Ctx<'s> {
    pub(crate) errors: Vec<ErrorRecovery<usize, Tok<'s>, Never>>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// The result of parsing one file: always a tree, plus whatever went wrong.
#[derive(Clone, Debug)]
pub struct Parse {
    /// The (possibly partial) syntax tree.
    pub file: File,
    /// Every comment, in source order.
    pub comments: Vec<Comment>,
    /// Every lexical and syntax error, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Parse {
    /// True when some diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses a `.fly` source. Never fails and never panics: errors are reported in
/// [`Parse::diagnostics`] beside a tree of everything that could be read.
pub fn parse(src: &str) -> Parse {
    let mut lexer = Lexer::new(src);
    let mut ctx = Ctx::default();
    let result =
        grammar::FileParser::new().parse(&mut ctx, lexer.by_ref().map(Ok::<Spanned<'_>, Never>));
    let (comments, mut diagnostics, tokens) = lexer.finish();
    let file = match result {
        Ok(file) => File {
            span: Span::new(0, src.len()),
            ..file
        },
        Err(err) => {
            diagnostics.push(describe(src, &tokens, err));
            File {
                items: Vec::new(),
                span: Span::new(0, src.len()),
            }
        }
    };
    for rec in ctx.errors {
        diagnostics.push(describe(src, &tokens, rec.error));
    }
    diagnostics.extend(ctx.diagnostics);
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    Parse {
        file,
        comments,
        diagnostics,
    }
}

/// The span of text skipped by error recovery. LALRPOP may report the end of an empty
/// recovery before its start; the span is then empty at the later position.
pub(crate) fn recovered(l: usize, r: usize) -> Span {
    Span::new(l.min(r), r.max(l))
}

/// Builds a number node; `negative` when a `-` precedes it (the span then covers it).
pub(crate) fn number(text: &str, negative: bool, l: usize, r: usize) -> Number {
    let raw: crate::ast::CompactString = if negative {
        compact_str::format_compact!("-{text}")
    } else {
        text.into()
    };
    Number {
        value: NumberValue::parse(&raw),
        raw,
        span: Span::new(l, r),
    }
}

/// A block label or quoted map key: a string without interpolation.
pub(crate) fn label(ctx: &mut Ctx<'_>, t: Template, what: &str) -> BlockLabel {
    let value = match t.as_literal() {
        Some(v) => v,
        None => {
            ctx.diagnostics.push(
                Diagnostic::error(
                    codes::INTERPOLATED_LABEL,
                    t.span,
                    format!("a {what} cannot use interpolation"),
                )
                .with_help(format!("write the {what} as a plain string")),
            );
            String::new()
        }
    };
    BlockLabel {
        value,
        span: t.span,
    }
}

/// Human names for the grammar's terminals.
fn terminal_name(t: &str) -> &str {
    match t.trim_matches('"') {
        "name" => "a name",
        "number" => "a number",
        "true" | "false" => "a bool",
        "newline" => "a line break",
        "quote" | "heredoc" => "a string",
        "text" => "string text",
        "end quote" => "`\"`",
        "end interp" => "`}`",
        "end heredoc" => "the heredoc's closing marker",
        "{" => "`{`",
        "}" => "`}`",
        "[" => "`[`",
        "]" => "`]`",
        "(" => "`(`",
        ")" => "`)`",
        "=" => "`=`",
        "," => "`,`",
        "." => "`.`",
        "-" => "`-`",
        ":" => "`:`",
        "${" => "`${`",
        other => other,
    }
}

fn expected_list(expected: &[String]) -> String {
    let is_value = |t: &str| {
        matches!(
            t.trim_matches('"'),
            "number" | "true" | "false" | "quote" | "heredoc" | "[" | "{" | "-"
        )
    };
    let mut names: Vec<&str> = Vec::new();
    let value_like = expected.iter().filter(|t| is_value(t)).count();
    if value_like >= 3 {
        names.push("a value");
    }
    for t in expected {
        if value_like >= 3 && is_value(t) {
            continue;
        }
        let n = terminal_name(t);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    match names.len() {
        0 => "something else".to_string(),
        1 => names[0].to_string(),
        _ => {
            let (last, rest) = names.split_last().expect("len >= 2");
            format!("{} or {}", rest.join(", "), last)
        }
    }
}

fn found_name(tok: &Tok<'_>, span: Span) -> String {
    match tok {
        Tok::RBrace if span.is_empty() => "the end of the block".to_string(),
        Tok::RBracket if span.is_empty() => "the end of the list".to_string(),
        Tok::Ident(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

fn describe(src: &str, tokens: &[TokInfo], err: ParseError<usize, Tok<'_>, Never>) -> Diagnostic {
    let (span, found, expected, idx) = match err {
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => {
            // A line break is shown as the end of its line, not as a two-line range.
            let span = if tok == Tok::Newline {
                Span::empty(l)
            } else {
                Span::new(l, r)
            };
            let kind = tok.kind();
            let first = tokens.partition_point(|t| (t.start as usize) < l);
            let idx = (first..tokens.len())
                .find(|&i| tokens[i].end as usize == r && tokens[i].kind == kind)
                .unwrap_or(first);
            (span, found_name(&tok, span), expected, idx)
        }
        ParseError::UnrecognizedEof { location, expected } => (
            Span::empty(location),
            "the end of the file".to_string(),
            expected,
            tokens.len(),
        ),
        ParseError::InvalidToken { location } => {
            return Diagnostic::error(
                codes::UNEXPECTED_TOKEN,
                Span::empty(location),
                "unexpected input",
            )
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            let span = Span::new(l, r);
            return Diagnostic::error(
                codes::UNEXPECTED_TOKEN,
                span,
                format!("unexpected {}", found_name(&tok, span)),
            );
        }
        ParseError::User { error } => match error {},
    };
    let info = |i: Option<usize>| i.and_then(|i| tokens.get(i));
    let prev = info(idx.checked_sub(1));
    let prev2 = info(idx.checked_sub(2));
    let kind = |t: Option<&TokInfo>| t.map(|t| t.kind);
    let name = |t: &TokInfo| src.get(t.start as usize..t.end as usize).unwrap_or("");
    let expects = |t: &str| expected.iter().any(|e| e.trim_matches('"') == t);
    let at_item_start = matches!(kind(prev2), None | Some(TokKind::Newline | TokKind::LBrace));

    match (kind(prev), kind(prev2)) {
        (Some(TokKind::Ident), _) if at_item_start && expects("=") => {
            let name = prev.map(name).unwrap_or("");
            Diagnostic::error(
                codes::UNEXPECTED_TOKEN,
                span,
                format!("expected `=` after attribute name `{name}`, found {found}"),
            )
            .with_label("expected `=` here")
            .with_help(format!(
                "write `{name} = <value>`, or open a block with `{name} {{ … }}`"
            ))
        }
        (Some(TokKind::Eq), Some(TokKind::Ident)) => Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            span,
            format!(
                "expected a value for `{}` after `=`, found {found}",
                prev2.map(name).unwrap_or("")
            ),
        )
        .with_label("expected a value here")
        .with_help("a value is a number, a string, `true`/`false`, a list `[…]` or a map `{ … }`"),
        (Some(TokKind::InterpStart), _) => Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            span,
            format!("expected a reference such as `vars.name` inside `${{ }}`, found {found}"),
        )
        .with_help("write `$${` for a literal `${`"),
        (Some(TokKind::Dot), _) => Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            span,
            format!("expected a name after `.`, found {found}"),
        ),
        (Some(TokKind::StrEnd), _) if expects("{") && !expects("newline") => Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            span,
            format!("expected `{{` to open the block body, found {found}"),
        )
        .with_label("expected `{` here"),
        _ if expects("newline") && starts_item(kind(tokens.get(idx))) => {
            Diagnostic::error(
                codes::MISSING_NEWLINE,
                span,
                format!("expected a line break before {found}"),
            )
            .with_label("expected a new line here")
            .with_help(
                "put each attribute and block on its own line (a one-line block holds one item); separate map entries with commas or line breaks",
            )
        }
        _ if expects("]") && expects(",") => Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            span,
            format!("expected `,` or `]` after a list element, found {found}"),
        )
        .with_help("separate list elements with commas"),
        _ => Diagnostic::error(
            codes::UNEXPECTED_TOKEN,
            span,
            format!("expected {}, found {found}", expected_list(&expected)),
        ),
    }
}

/// True for a token that can begin an attribute, block or map entry.
fn starts_item(tok: Option<TokKind>) -> bool {
    matches!(tok, Some(TokKind::Ident | TokKind::StrStart))
}
