//! The layout engine. Rendering works bottom-up on strings: a rendered item's first line
//! carries no indentation (its parent places it), its later lines carry their absolute
//! indentation. Comments are taken from the parse's side table strictly in source order.

use crate::FormatError;
use fly_syntax::ast::{
    Attribute, Block, Expr, File, Heredoc, InterpExpr, Item, List, Map, MapEntry, MapKey, Template,
    TemplatePart,
};
use fly_syntax::{Comment, CommentKind, Parse, Span};

const INDENT: &str = "  ";

pub(crate) fn format(src: &str, parse: &Parse) -> Result<String, FormatError> {
    let mut p = Printer {
        src: Some(src),
        comments: &parse.comments,
        next: 0,
    };
    let out = p.file(&parse.file, src.len());
    if p.next != parse.comments.len() {
        return Err(FormatError::Internal(format!(
            "{} of {} comments were not placed",
            parse.comments.len() - p.next,
            parse.comments.len()
        )));
    }
    Ok(out)
}

pub(crate) fn print(file: &File) -> String {
    Printer {
        src: None,
        comments: &[],
        next: 0,
    }
    .file(file, 0)
}

struct Printer<'a> {
    /// The source, when formatting text (None when printing a bare tree).
    src: Option<&'a str>,
    comments: &'a [Comment],
    /// Index of the first comment not yet placed.
    next: usize,
}

/// One line-level entry of a body, list or map before layout.
struct Unit {
    /// Own-line comments above it, each with "a blank line precedes it".
    leading: Vec<(bool, String)>,
    /// A blank line between the leading comments (or the previous unit) and the entry.
    blank_before: bool,
    kind: UnitKind,
    /// Comments on the entry's last line.
    trailing: Vec<String>,
}

enum UnitKind {
    /// `name = value`, alignable when `value` is one line.
    Attr { name: String, value: String },
    /// Anything else, already rendered.
    Other(String),
}

/// The comments found between two entries.
#[derive(Default)]
struct Gap {
    /// Comments on the line of the previous entry (or of the opening delimiter).
    trailing: Vec<String>,
    /// Own-line comments.
    leading: Vec<(bool, String)>,
    /// Block comments on the entry's own line, before it (`/* x */ "linux",`).
    prefix: String,
}

impl<'a> Printer<'a> {
    fn file(&mut self, file: &File, end: usize) -> String {
        let (open, mut body) = self.units(
            &file.items.iter().map(|i| (i.span(), i)).collect::<Vec<_>>(),
            0,
            end,
            |p, item, ind| p.item(item, ind),
            0,
            false,
        );
        debug_assert!(open.is_empty());
        let mut out = String::new();
        self.layout(&mut body, 0, &mut out);
        if out.is_empty() {
            return out;
        }
        out
    }

    fn comment_text(&self, c: &Comment) -> String {
        let src = self.src.expect("comments only exist with a source");
        let text = &src[c.span.range()];
        match c.kind {
            CommentKind::Line => text.trim_end().to_string(),
            CommentKind::Block => text.to_string(),
        }
    }

    /// Number of line breaks in the source between two offsets.
    fn newlines(&self, from: usize, to: usize) -> usize {
        match self.src {
            Some(src) if from < to => src[from..to].bytes().filter(|&b| b == b'\n').count(),
            _ => 0,
        }
    }

    /// Takes the comments that start before `target`, sorting them into those on the line
    /// of `cursor` and those on lines of their own.
    ///
    /// `attachable` says whether the cursor's line holds something (an entry or an opening
    /// delimiter) that a same-line comment can trail; at the top of a file it does not.
    fn gap(&mut self, cursor: &mut usize, target: usize, at_start: bool, attachable: bool) -> Gap {
        let mut gap = Gap::default();
        while let Some(c) = self.comments.get(self.next).copied() {
            if c.span.start as usize >= target {
                break;
            }
            self.next += 1;
            let text = self.comment_text(&c);
            let breaks = self.newlines(*cursor, c.span.start as usize);
            if breaks == 0 && (attachable || !gap.leading.is_empty()) {
                match gap.leading.last_mut() {
                    Some((_, prev)) => {
                        prev.push(' ');
                        prev.push_str(&text);
                    }
                    None => gap.trailing.push(text),
                }
            } else if c.kind == CommentKind::Block
                && self.newlines(c.span.end as usize, target) == 0
            {
                gap.prefix.push_str(&text);
                gap.prefix.push(' ');
            } else {
                let blank = breaks >= 2 && !(at_start && gap.leading.is_empty());
                gap.leading.push((blank, text));
            }
            *cursor = c.span.end as usize;
        }
        gap
    }

    /// Skips the comments inside a span printed verbatim (interpolations in strings).
    fn skip_within(&mut self, span: Span) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= span.end {
                break;
            }
            self.next += 1;
        }
    }

    /// Block comments before `pos`, for inline positions (`egg /* x */ "a"`).
    fn inline_before(&mut self, pos: usize, out: &mut String) {
        while let Some(c) = self.comments.get(self.next).copied() {
            if c.span.start as usize >= pos {
                break;
            }
            self.next += 1;
            out.push_str(&self.comment_text(&c));
            out.push(' ');
        }
    }

    /// Collects the units of a body, list or map. Returns the comments on the opening
    /// delimiter's line and the units, with dangling comments as a final comment-only unit.
    fn units<T>(
        &mut self,
        entries: &[(Span, T)],
        start: usize,
        end: usize,
        mut render: impl FnMut(&mut Self, &T, usize) -> UnitKind,
        ind: usize,
        opener: bool,
    ) -> (Vec<String>, Vec<Unit>)
    where
        T: Copy,
    {
        let mut cursor = start;
        let mut units: Vec<Unit> = Vec::new();
        let mut open_trailing = Vec::new();
        for (span, entry) in entries {
            let at_start = units.is_empty();
            let gap = self.gap(
                &mut cursor,
                span.start as usize,
                at_start,
                !at_start || opener,
            );
            match units.last_mut() {
                Some(u) => u.trailing.extend(gap.trailing),
                None => open_trailing.extend(gap.trailing),
            }
            let blank_before = self.newlines(cursor, span.start as usize) >= 2
                && !(at_start && gap.leading.is_empty());
            let kind = match render(self, entry, ind) {
                kind if gap.prefix.is_empty() => kind,
                UnitKind::Attr { name, value } => UnitKind::Attr {
                    name: format!("{}{name}", gap.prefix),
                    value,
                },
                UnitKind::Other(s) => UnitKind::Other(format!("{}{s}", gap.prefix)),
            };
            units.push(Unit {
                leading: gap.leading,
                blank_before,
                kind,
                trailing: Vec::new(),
            });
            cursor = span.end as usize;
        }
        let at_start = units.is_empty();
        let gap = self.gap(&mut cursor, end, at_start, !at_start || opener);
        match units.last_mut() {
            Some(u) => u.trailing.extend(gap.trailing),
            None => open_trailing.extend(gap.trailing),
        }
        if !gap.leading.is_empty() {
            units.push(Unit {
                leading: gap.leading,
                blank_before: false,
                kind: UnitKind::Other(String::new()),
                trailing: Vec::new(),
            });
        }
        (open_trailing, units)
    }

    /// Writes units one per line at indentation `ind`, aligning `=` in runs.
    fn layout(&self, units: &mut [Unit], ind: usize, out: &mut String) {
        let pad = INDENT.repeat(ind);
        let mut i = 0;
        while i < units.len() {
            // The run of alignable attributes starting at i.
            let mut j = i;
            let mut width = 0;
            while j < units.len() {
                let u = &units[j];
                let alignable =
                    matches!(&u.kind, UnitKind::Attr { value, .. } if !value.contains('\n'));
                let breaks_run = j > i && (!u.leading.is_empty() || u.blank_before);
                if !alignable || breaks_run {
                    break;
                }
                if let UnitKind::Attr { name, .. } = &u.kind {
                    width = width.max(name.chars().count());
                }
                j += 1;
            }
            let run_end = j.max(i + 1);
            for u in &units[i..run_end] {
                for (blank, text) in &u.leading {
                    if *blank {
                        out.push('\n');
                    }
                    out.push_str(&pad);
                    out.push_str(text);
                    out.push('\n');
                }
                let line = match &u.kind {
                    UnitKind::Attr { name, value } => {
                        let w = if j > i { width } else { 0 };
                        let gap = w.saturating_sub(name.chars().count());
                        format!("{name}{} = {value}", " ".repeat(gap))
                    }
                    UnitKind::Other(s) if s.is_empty() => continue,
                    UnitKind::Other(s) => s.clone(),
                };
                if u.blank_before {
                    out.push('\n');
                }
                out.push_str(&pad);
                out.push_str(&line);
                for t in &u.trailing {
                    out.push(' ');
                    out.push_str(t);
                }
                out.push('\n');
            }
            i = run_end;
        }
    }

    fn item(&mut self, item: &Item, ind: usize) -> UnitKind {
        match item {
            Item::Attribute(a) => self.attribute(a, ind),
            Item::Block(b) => UnitKind::Other(self.block(b, ind)),
            Item::Error(span) => UnitKind::Other(match self.src {
                Some(src) => src[span.range()].to_string(),
                None => String::new(),
            }),
        }
    }

    fn attribute(&mut self, a: &Attribute, ind: usize) -> UnitKind {
        let mut value = String::new();
        self.inline_before(a.value.span().start as usize, &mut value);
        self.expr(&a.value, ind, &mut value);
        UnitKind::Attr {
            name: a.name.name.to_string(),
            value,
        }
    }

    fn block(&mut self, b: &Block, ind: usize) -> String {
        let mut out = String::new();
        out.push_str(&b.kind.name);
        for label in &b.labels {
            out.push(' ');
            self.inline_before(label.span.start as usize, &mut out);
            match self.src {
                Some(src) => out.push_str(&src[label.span.range()]),
                None => quote(&label.value, &mut out),
            }
        }
        out.push(' ');
        self.inline_before(b.open.start as usize, &mut out);
        out.push('{');
        let entries: Vec<(Span, &Item)> = b.items.iter().map(|i| (i.span(), i)).collect();
        let (open_trailing, mut units) = self.units(
            &entries,
            b.open.end as usize,
            b.close.start as usize,
            |p, item, ind| p.item(item, ind),
            ind + 1,
            true,
        );
        for t in &open_trailing {
            out.push(' ');
            out.push_str(t);
        }
        if units.is_empty() && open_trailing.is_empty() {
            out.push('}');
            return out;
        }
        out.push('\n');
        self.layout(&mut units, ind + 1, &mut out);
        out.push_str(&INDENT.repeat(ind));
        out.push('}');
        out
    }

    fn expr(&mut self, e: &Expr, ind: usize, out: &mut String) {
        match e {
            Expr::Number(n) => out.push_str(&n.raw),
            Expr::Bool(b, _) => out.push_str(if *b { "true" } else { "false" }),
            Expr::String(t) => self.template(t, out),
            Expr::Heredoc(h) => self.heredoc(h, out),
            Expr::List(l) => self.list(l, ind, out),
            Expr::Map(m) => self.map(m, ind, out),
            Expr::Error(span) => {
                if let Some(src) = self.src {
                    out.push_str(&src[span.range()]);
                }
            }
        }
    }

    fn template(&mut self, t: &Template, out: &mut String) {
        if let Some(src) = self.src {
            self.skip_within(t.span);
            out.push_str(&src[t.span.range()]);
            return;
        }
        out.push('"');
        for (i, part) in t.parts.iter().enumerate() {
            match part {
                TemplatePart::Literal(l) => {
                    let before_interp =
                        matches!(t.parts.get(i + 1), Some(TemplatePart::Interpolation(_)));
                    escape(&l.value, before_interp, out);
                }
                TemplatePart::Interpolation(interp) => interpolation(&interp.expr, out),
            }
        }
        out.push('"');
    }

    fn heredoc(&mut self, h: &Heredoc, out: &mut String) {
        out.push_str(if h.strip { "<<-" } else { "<<" });
        out.push_str(&h.marker);
        out.push('\n');
        if let Some(src) = self.src {
            self.skip_within(h.span);
            let text = &src[h.span.range()];
            let body = text.find('\n').map_or("", |i| &text[i + 1..]);
            out.push_str(body);
            return;
        }
        for part in &h.template.parts {
            match part {
                TemplatePart::Literal(l) => out.push_str(&l.value.replace("${", "$${")),
                TemplatePart::Interpolation(interp) => interpolation(&interp.expr, out),
            }
        }
        out.push_str(&h.marker);
    }

    /// True when the source wrote `span` over several lines or put comments inside.
    fn written_multiline(&self, span: Span) -> bool {
        let has_comment = self
            .comments
            .get(self.next)
            .is_some_and(|c| c.span.start < span.end);
        has_comment || self.newlines(span.start as usize, span.end as usize) > 0
    }

    fn list(&mut self, l: &List, ind: usize, out: &mut String) {
        if l.elems.is_empty() && !self.written_multiline(l.span) {
            out.push_str("[]");
            return;
        }
        let multiline = self.written_multiline(l.span);
        if !multiline {
            let mut one = String::from("[");
            for (i, e) in l.elems.iter().enumerate() {
                if i > 0 {
                    one.push_str(", ");
                }
                self.expr(e, ind, &mut one);
            }
            one.push(']');
            if !one.contains('\n') {
                out.push_str(&one);
                return;
            }
            // A heredoc element forces one element per line; render again without a source
            // layout hint (no comments exist inside, so nothing is consumed twice).
        }
        let entries: Vec<(Span, &Expr)> = l.elems.iter().map(|e| (e.span(), e)).collect();
        let (open_trailing, mut units) = self.units(
            &entries,
            l.span.start as usize + 1,
            (l.span.end as usize).saturating_sub(1),
            |p, e, ind| {
                let mut s = String::new();
                p.inline_before(e.span().start as usize, &mut s);
                p.expr(e, ind, &mut s);
                if matches!(e, Expr::Heredoc(_)) {
                    s.push('\n');
                    s.push_str(&INDENT.repeat(ind));
                }
                s.push(',');
                UnitKind::Other(s)
            },
            ind + 1,
            true,
        );
        self.delimited(('[', ']'), &open_trailing, &mut units, ind, out);
    }

    fn map(&mut self, m: &Map, ind: usize, out: &mut String) {
        if m.entries.is_empty() && !self.written_multiline(m.span) {
            out.push_str("{}");
            return;
        }
        if !self.written_multiline(m.span) {
            let mut one = String::from("{ ");
            for (i, e) in m.entries.iter().enumerate() {
                if i > 0 {
                    one.push_str(", ");
                }
                self.map_key(&e.key, &mut one);
                one.push_str(" = ");
                self.expr(&e.value, ind, &mut one);
            }
            one.push_str(" }");
            if !one.contains('\n') {
                out.push_str(&one);
                return;
            }
        }
        let entries: Vec<(Span, &MapEntry)> = m.entries.iter().map(|e| (e.span, e)).collect();
        let (open_trailing, mut units) = self.units(
            &entries,
            m.span.start as usize + 1,
            (m.span.end as usize).saturating_sub(1),
            |p, e, ind| {
                let mut name = String::new();
                p.map_key(&e.key, &mut name);
                let mut value = String::new();
                p.inline_before(e.value.span().start as usize, &mut value);
                p.expr(&e.value, ind, &mut value);
                UnitKind::Attr { name, value }
            },
            ind + 1,
            true,
        );
        self.delimited(('{', '}'), &open_trailing, &mut units, ind, out);
    }

    /// A multi-line list or map: the opener with its trailing comments, one unit per line
    /// one level deeper, the closer at the parent's indentation.
    fn delimited(
        &self,
        (open, close): (char, char),
        open_trailing: &[String],
        units: &mut [Unit],
        ind: usize,
        out: &mut String,
    ) {
        out.push(open);
        for t in open_trailing {
            out.push(' ');
            out.push_str(t);
        }
        out.push('\n');
        self.layout(units, ind + 1, out);
        out.push_str(&INDENT.repeat(ind));
        out.push(close);
    }

    fn map_key(&mut self, key: &MapKey, out: &mut String) {
        match key {
            MapKey::Ident(i) => out.push_str(&i.name),
            MapKey::String(s) => match self.src {
                Some(src) => out.push_str(&src[s.span.range()]),
                None => quote(&s.value, out),
            },
        }
    }
}

fn interpolation(expr: &InterpExpr, out: &mut String) {
    out.push_str("${");
    if let InterpExpr::Traversal(t) = expr {
        out.push_str(&t.dotted());
    }
    out.push('}');
}

fn quote(s: &str, out: &mut String) {
    out.push('"');
    escape(s, false, out);
    out.push('"');
}

/// Escapes literal text for a quoted string. A `$` that could merge with what follows
/// into `${` or `$${` is written as `\u0024`.
fn escape(s: &str, before_interp: bool, out: &mut String) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' => {
                let next = chars.peek().copied();
                let risky =
                    matches!(next, Some('{') | Some('$')) || (next.is_none() && before_interp);
                if risky {
                    out.push_str("\\u0024");
                } else {
                    out.push('$');
                }
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

pub(crate) fn print_expr(e: &Expr) -> String {
    let mut out = String::new();
    Printer {
        src: None,
        comments: &[],
        next: 0,
    }
    .expr(e, 0, &mut out);
    out
}
