//! The modal lexer: logos for the normal and the quoted-string modes, a line scanner for
//! heredocs, and a driver that switches between them.
//!
//! The driver guarantees the parser a well-formed delimiter structure: every `{`, `[`, `(`,
//! string, interpolation and heredoc it opens is closed, by a synthesised zero-width token
//! if the source forgets to, with a diagnostic that points at the opener. Comments are kept
//! in a side table, and line breaks are tokens only where they separate items (not inside
//! brackets or interpolations).

use crate::diagnostic::codes;
use crate::token::{HeredocHead, Tok, TokKind};
use crate::{Comment, CommentKind, Diagnostic, Span};
use logos::Logos;
use std::borrow::Cow;
use std::collections::VecDeque;

/// Deepest nesting of blocks, lists, maps, strings and interpolations accepted.
pub const MAX_DEPTH: usize = 128;

/// A token with its byte span, as LALRPOP wants it.
pub type Spanned<'s> = (usize, Tok<'s>, usize);

/// Output of [`lex`].
#[derive(Debug, Default)]
pub struct Lexed<'s> {
    /// Tokens in source order.
    pub tokens: Vec<Spanned<'s>>,
    /// Comments in source order.
    pub comments: Vec<Comment>,
    /// Lexical errors.
    pub diagnostics: Vec<Diagnostic>,
}

/// Normal-mode tokens.
#[derive(Logos, Clone, Copy, Debug, PartialEq)]
enum Raw {
    #[regex(r"[ \t\r\f]+")]
    Space,
    #[token("\n")]
    Newline,
    #[regex(r"#[^\n]*", allow_greedy = true)]
    HashComment,
    #[regex(r"//[^\n]*", allow_greedy = true)]
    SlashComment,
    #[token("/*")]
    BlockCommentStart,
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[regex(r"[0-9][0-9A-Za-z_.]*", number_exponent_sign)]
    Number,
    #[regex(r"<<-?[A-Za-z_][A-Za-z0-9_]*")]
    HeredocIntro,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("=")]
    Eq,
    #[token(",")]
    Comma,
    #[token(".")]
    Dot,
    #[token("-")]
    Minus,
    #[token(":")]
    Colon,
    #[token("\"")]
    Quote,
}

/// `1e` followed by `-5` or `+5`: the sign and digits belong to the number.
fn number_exponent_sign(lex: &mut logos::Lexer<Raw>) {
    if lex.slice().ends_with(['e', 'E']) {
        let rest = lex.remainder().as_bytes();
        if rest.len() >= 2 && (rest[0] == b'-' || rest[0] == b'+') && rest[1].is_ascii_digit() {
            let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
            lex.bump(1 + digits);
        }
    }
}

/// Quoted-string-mode tokens.
#[derive(Logos, Clone, Copy, Debug, PartialEq)]
enum StrRaw {
    #[regex(r#"[^"\\$\n]+"#)]
    Text,
    #[token("$${")]
    EscapedInterp,
    #[token("${")]
    InterpStart,
    #[token("$")]
    Dollar,
    #[token("\\")]
    Backslash,
    #[token("\"")]
    Quote,
    #[token("\n")]
    Newline,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Delim {
    Brace,
    Bracket,
    Paren,
}

impl Delim {
    fn open(self) -> &'static str {
        match self {
            Delim::Brace => "{",
            Delim::Bracket => "[",
            Delim::Paren => "(",
        }
    }
    fn close(self) -> &'static str {
        match self {
            Delim::Brace => "}",
            Delim::Bracket => "]",
            Delim::Paren => ")",
        }
    }
    fn close_tok(self) -> Tok<'static> {
        match self {
            Delim::Brace => Tok::RBrace,
            Delim::Bracket => Tok::RBracket,
            Delim::Paren => Tok::RParen,
        }
    }
    fn what(self) -> &'static str {
        match self {
            Delim::Brace => "block or map",
            Delim::Bracket => "list",
            Delim::Paren => "parenthesis",
        }
    }
}

/// Splits `src` into tokens and comments. Never fails: problems become diagnostics.
pub fn lex(src: &str) -> Lexed<'_> {
    let mut lexer = Lexer::new(src);
    let tokens: Vec<Spanned<'_>> = lexer.by_ref().collect();
    let (comments, diagnostics, _) = lexer.finish();
    Lexed {
        tokens,
        comments,
        diagnostics,
    }
}

/// What the parser's error messages need to know of a token once it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokInfo {
    /// Start offset.
    pub start: u32,
    /// End offset.
    pub end: u32,
    /// Which token.
    pub kind: TokKind,
}

/// A streaming lexer: tokens are produced a line at a time as the parser asks for them, so
/// a large file never has all its tokens in memory at once. Comments, lexical diagnostics
/// and a compact record of every token ([`TokInfo`]) are collected on the side.
pub struct Lexer<'s> {
    driver: Driver<'s>,
    top: Vec<(Delim, Span)>,
    done: bool,
}

impl<'s> Lexer<'s> {
    /// A lexer over `src`.
    pub fn new(src: &'s str) -> Self {
        Lexer {
            driver: Driver {
                src,
                pos: 0,
                depth: 0,
                abandoned: false,
                queue: VecDeque::new(),
                info: Vec::with_capacity(src.len() / 5),
                comments: Vec::new(),
                diagnostics: Vec::new(),
            },
            top: Vec::new(),
            done: false,
        }
    }

    /// The comments, diagnostics and token records gathered so far.
    pub fn finish(self) -> (Vec<Comment>, Vec<Diagnostic>, Vec<TokInfo>) {
        (
            self.driver.comments,
            self.driver.diagnostics,
            self.driver.info,
        )
    }
}

impl<'s> Iterator for Lexer<'s> {
    type Item = Spanned<'s>;

    fn next(&mut self) -> Option<Spanned<'s>> {
        loop {
            if let Some(t) = self.driver.queue.pop_front() {
                return Some(t);
            }
            if self.done {
                return None;
            }
            let mut top = std::mem::take(&mut self.top);
            let more = self.driver.normal_in(None, &mut top, true);
            self.top = top;
            self.done = !more;
        }
    }
}

struct Driver<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
    /// Set when the input was abandoned for being too deep: what is still open is closed
    /// silently, since the one F0012 says it all.
    abandoned: bool,
    /// Tokens lexed but not yet taken by the parser.
    queue: VecDeque<Spanned<'s>>,
    info: Vec<TokInfo>,
    comments: Vec<Comment>,
    diagnostics: Vec<Diagnostic>,
}

impl<'s> Driver<'s> {
    fn push(&mut self, start: usize, tok: Tok<'s>, end: usize) {
        self.info.push(TokInfo {
            start: start as u32,
            end: end as u32,
            kind: tok.kind(),
        });
        self.queue.push_back((start, tok, end));
    }

    fn error(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Enters one nesting level; false (after reporting) when the input is too deep, in
    /// which case the rest of the input is abandoned.
    fn enter(&mut self, span: Span) -> bool {
        self.depth += 1;
        if self.abandoned {
            return false;
        }
        if self.depth > MAX_DEPTH {
            self.error(
                Diagnostic::error(
                    codes::TOO_DEEP,
                    span,
                    format!("nesting deeper than {MAX_DEPTH} levels"),
                )
                .with_label("too deep from here on; the rest of the file was not read"),
            );
            self.pos = self.src.len();
            self.abandoned = true;
            return false;
        }
        true
    }

    /// Normal mode. With `interp = Some(open)`, lexes one interpolation body and stops
    /// after its closing `}`; otherwise runs to the end of input.
    fn normal(&mut self, interp: Option<Span>) {
        let mut stack: Vec<(Delim, Span)> = Vec::new();
        self.normal_in(interp, &mut stack, false);
    }

    /// Normal mode with an outside delimiter stack. With `yield_at_newline`, returns `true`
    /// right after a significant line break (the caller resumes later); returns `false` once
    /// the input (or the interpolation) is finished.
    fn normal_in(
        &mut self,
        interp: Option<Span>,
        stack: &mut Vec<(Delim, Span)>,
        yield_at_newline: bool,
    ) -> bool {
        'outer: while self.pos < self.src.len() {
            let base = self.pos;
            let mut lex = Raw::lexer(&self.src[base..]);
            while let Some(raw) = lex.next() {
                let span = lex.span();
                let (start, end) = (base + span.start, base + span.end);
                self.pos = end;
                let Ok(raw) = raw else {
                    let ch = self.src[start..].chars().next().unwrap_or('\u{fffd}');
                    let end = start + ch.len_utf8();
                    self.pos = end;
                    self.error(
                        Diagnostic::error(
                            codes::INVALID_CHARACTER,
                            Span::new(start, end),
                            format!("unexpected character `{}`", ch.escape_debug()),
                        )
                        .with_label("no token starts with this character"),
                    );
                    continue 'outer;
                };
                if interp.is_some() && matches!(raw, Raw::Newline | Raw::Quote) {
                    // An interpolation holds one reference on one line: a line break or a
                    // quote means its `}` is missing. Leave the character to the string.
                    self.pos = start;
                    break 'outer;
                }
                match raw {
                    Raw::Space => {}
                    Raw::Newline => {
                        let significant = interp.is_none()
                            && matches!(stack.last(), None | Some((Delim::Brace, _)));
                        if significant {
                            self.push(start, Tok::Newline, end);
                            if yield_at_newline {
                                return true;
                            }
                        }
                    }
                    Raw::HashComment | Raw::SlashComment => {
                        self.comments.push(Comment {
                            kind: CommentKind::Line,
                            span: Span::new(start, end),
                        });
                    }
                    Raw::BlockCommentStart => {
                        self.block_comment(start);
                        continue 'outer;
                    }
                    Raw::Ident => self.push(start, Tok::Ident(lex.slice()), end),
                    Raw::True => self.push(start, Tok::True, end),
                    Raw::False => self.push(start, Tok::False, end),
                    Raw::Number => {
                        let text = lex.slice();
                        if !is_valid_number(text) {
                            self.error(
                                Diagnostic::error(
                                    codes::INVALID_NUMBER,
                                    Span::new(start, end),
                                    format!("`{text}` is not a valid number"),
                                )
                                .with_help(
                                    "numbers look like `42`, `-7`, `0.5` or `1.5e3`; \
                                     quote the value if it is meant as a string",
                                ),
                            );
                        } else if (text.contains(['e', 'E']) || text.len() > 300)
                            && text.parse::<f64>().is_ok_and(f64::is_infinite)
                        {
                            self.error(
                                Diagnostic::error(
                                    codes::INVALID_NUMBER,
                                    Span::new(start, end),
                                    format!("`{text}` is too large to be a number"),
                                )
                                .with_help(
                                    "numbers go up to about 1.8e308; quote the value if it is \
                                     meant as a string",
                                ),
                            );
                        }
                        self.push(start, Tok::Number(text), end)
                    }
                    Raw::HeredocIntro => {
                        self.heredoc(start, end);
                        continue 'outer;
                    }
                    Raw::Quote => {
                        self.string(start);
                        continue 'outer;
                    }
                    Raw::LBrace | Raw::LBracket | Raw::LParen => {
                        let (delim, tok) = match raw {
                            Raw::LBrace => (Delim::Brace, Tok::LBrace),
                            Raw::LBracket => (Delim::Bracket, Tok::LBracket),
                            _ => (Delim::Paren, Tok::LParen),
                        };
                        let span = Span::new(start, end);
                        if !self.enter(span) {
                            break 'outer;
                        }
                        stack.push((delim, span));
                        self.push(start, tok, end);
                    }
                    Raw::RBrace | Raw::RBracket | Raw::RParen => {
                        let delim = match raw {
                            Raw::RBrace => Delim::Brace,
                            Raw::RBracket => Delim::Bracket,
                            _ => Delim::Paren,
                        };
                        if delim == Delim::Brace && stack.is_empty() && interp.is_some() {
                            self.push(start, Tok::InterpEnd, end);
                            return false;
                        }
                        self.close(stack, delim, Span::new(start, end));
                    }
                    Raw::Eq => self.push(start, Tok::Eq, end),
                    Raw::Comma => self.push(start, Tok::Comma, end),
                    Raw::Dot => self.push(start, Tok::Dot, end),
                    Raw::Minus => self.push(start, Tok::Minus, end),
                    Raw::Colon => self.push(start, Tok::Colon, end),
                }
            }
            // The logos lexer ran out of input.
            self.pos = self.src.len();
        }
        let eof = self.pos;
        while let Some((delim, open)) = stack.pop() {
            self.unclosed(delim, open, eof);
        }
        if let Some(open) = interp.filter(|_| !self.abandoned) {
            self.error(
                Diagnostic::error(
                    codes::UNBALANCED_DELIMITER,
                    open,
                    "this interpolation is never closed",
                )
                .with_label("`${` opened here")
                .with_help("close it with `}`"),
            );
        }
        if interp.is_some() {
            self.push(eof, Tok::InterpEnd, eof);
        }
        false
    }

    /// A closing delimiter: pops the matching opener, closing (and reporting) any openers
    /// left unclosed above it; a closer with no opener is reported and dropped.
    fn close(&mut self, stack: &mut Vec<(Delim, Span)>, delim: Delim, at: Span) {
        let Some(idx) = stack.iter().rposition(|(d, _)| *d == delim) else {
            self.error(
                Diagnostic::error(
                    codes::UNBALANCED_DELIMITER,
                    at,
                    format!("unexpected `{}` with nothing to close", delim.close()),
                )
                .with_label("no open `".to_string() + delim.open() + "` before this"),
            );
            return;
        };
        while stack.len() > idx + 1 {
            let (inner, open) = stack.pop().expect("len checked");
            self.unclosed(inner, open, at.start as usize);
        }
        stack.pop();
        self.depth -= 1;
        self.push(at.start as usize, delim.close_tok(), at.end as usize);
    }

    fn unclosed(&mut self, delim: Delim, open: Span, at: usize) {
        if self.abandoned {
            self.depth -= 1;
            self.push(at, delim.close_tok(), at);
            return;
        }
        let here = if at >= self.src.len() {
            "the file ends here"
        } else {
            "expected it closed before this"
        };
        self.error(
            Diagnostic::error(
                codes::UNBALANCED_DELIMITER,
                open,
                format!(
                    "unclosed `{}`: this {} is never closed",
                    delim.open(),
                    delim.what()
                ),
            )
            .with_label("opened here")
            .with_secondary(Span::empty(at), here)
            .with_help(format!("add the missing `{}`", delim.close())),
        );
        self.depth -= 1;
        self.push(at, delim.close_tok(), at);
    }

    fn block_comment(&mut self, start: usize) {
        match self.src[start + 2..].find("*/") {
            Some(i) => {
                let end = start + 2 + i + 2;
                self.comments.push(Comment {
                    kind: CommentKind::Block,
                    span: Span::new(start, end),
                });
                self.pos = end;
            }
            None => {
                let end = self.src.len();
                self.error(
                    Diagnostic::error(
                        codes::UNTERMINATED_COMMENT,
                        Span::new(start, start + 2),
                        "unterminated `/*` comment",
                    )
                    .with_label("comment opened here")
                    .with_secondary(Span::empty(end), "the file ends here")
                    .with_help("close the comment with `*/`"),
                );
                self.comments.push(Comment {
                    kind: CommentKind::Block,
                    span: Span::new(start, end),
                });
                self.pos = end;
            }
        }
    }

    /// Quoted string mode, from the opening quote at `open`.
    fn string(&mut self, open: usize) {
        let open_span = Span::new(open, open + 1);
        self.push(open, Tok::StrStart, open + 1);
        if !self.enter(open_span) {
            self.push(self.pos, Tok::StrEnd, self.pos);
            return;
        }
        self.pos = open + 1;
        let mut lit = LitBuf::new(self.src);
        'outer: loop {
            let base = self.pos;
            let mut lex = StrRaw::lexer(&self.src[base..]);
            while let Some(raw) = lex.next() {
                let span = lex.span();
                let (start, end) = (base + span.start, base + span.end);
                self.pos = end;
                match raw {
                    Ok(StrRaw::Text) | Ok(StrRaw::Dollar) => lit.push(start, end, lex.slice()),
                    Ok(StrRaw::EscapedInterp) => lit.push(start, end, "${"),
                    Ok(StrRaw::InterpStart) => {
                        lit.flush(self);
                        self.interpolation(start);
                        continue 'outer;
                    }
                    Ok(StrRaw::Backslash) => {
                        self.escape(start, &mut lit);
                        continue 'outer;
                    }
                    Ok(StrRaw::Quote) => {
                        lit.flush(self);
                        self.push(start, Tok::StrEnd, end);
                        self.depth -= 1;
                        return;
                    }
                    Ok(StrRaw::Newline) | Err(()) => {
                        // A raw line break ends the string: report it at the opening quote and
                        // resume normal lexing at the line break so the next line parses.
                        self.pos = start;
                        break 'outer;
                    }
                }
            }
            self.pos = self.src.len();
            break;
        }
        lit.flush(self);
        let at = self.pos;
        if self.abandoned {
            self.push(at, Tok::StrEnd, at);
            self.depth -= 1;
            return;
        }
        self.error(
            Diagnostic::error(
                codes::UNTERMINATED_STRING,
                open_span,
                "unterminated string",
            )
            .with_label("string opened here")
            .with_secondary(
                Span::empty(at),
                if at >= self.src.len() {
                    "the file ends here"
                } else {
                    "the line ends here"
                },
            )
            .with_help("close the string with `\"`; for text over several lines use a heredoc (`<<-EOT`)"),
        );
        self.push(at, Tok::StrEnd, at);
        self.depth -= 1;
    }

    /// A `\` escape inside a quoted string, at `start`.
    fn escape(&mut self, start: usize, lit: &mut LitBuf) {
        let rest = &self.src[start + 1..];
        let mut chars = rest.chars();
        let Some(c) = chars.next() else {
            self.pos = start + 1;
            return;
        };
        let simple = match c {
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(decoded) = simple {
            let end = start + 2;
            lit.push_char(start, end, decoded);
            self.pos = end;
            return;
        }
        if c == 'u' || c == 'U' {
            let want = if c == 'u' { 4 } else { 8 };
            let hex: String = rest[1..]
                .chars()
                .take(want)
                .take_while(|h| h.is_ascii_hexdigit())
                .collect();
            let end = start + 2 + hex.len();
            let decoded = (hex.len() == want)
                .then(|| u32::from_str_radix(&hex, 16).ok())
                .flatten()
                .and_then(char::from_u32);
            self.pos = end;
            match decoded {
                Some(ch) => lit.push_char(start, end, ch),
                None => self.error(
                    Diagnostic::error(
                        codes::INVALID_ESCAPE,
                        Span::new(start, end),
                        format!("invalid unicode escape `{}`", &self.src[start..end]),
                    )
                    .with_help(format!(
                        "`\\{c}` takes exactly {want} hexadecimal digits naming a Unicode scalar value"
                    )),
                ),
            }
            return;
        }
        if c == '\n' {
            // Leave the line break to end the string (reported as unterminated).
            self.pos = start + 1;
            return;
        }
        let end = start + 1 + c.len_utf8();
        self.pos = end;
        self.error(
            Diagnostic::error(
                codes::INVALID_ESCAPE,
                Span::new(start, end),
                format!("unknown escape sequence `\\{}`", c.escape_debug()),
            )
            .with_help("valid escapes are `\\n`, `\\r`, `\\t`, `\\\"`, `\\\\`, `\\uNNNN` and `\\UNNNNNNNN`; write `\\\\` for a backslash"),
        );
    }

    /// `${ … }` starting at `start`: pushes its tokens and leaves `pos` after the `}`.
    fn interpolation(&mut self, start: usize) {
        let open = Span::new(start, start + 2);
        self.push(start, Tok::InterpStart, start + 2);
        self.pos = start + 2;
        if !self.enter(open) {
            self.push(self.pos, Tok::InterpEnd, self.pos);
            return;
        }
        self.normal(Some(open));
        self.depth -= 1;
    }

    /// A heredoc whose introducer (`<<EOT` / `<<-EOT`) spans `start..intro_end`.
    fn heredoc(&mut self, start: usize, intro_end: usize) {
        let intro = &self.src[start..intro_end];
        let strip = intro.starts_with("<<-");
        let marker = &intro[if strip { 3 } else { 2 }..];
        let intro_span = Span::new(start, intro_end);
        // The introducer must end its line.
        let after = &self.src[intro_end..];
        let line_end = after.find('\n');
        let trailing = &after[..line_end.unwrap_or(after.len())];
        if !trailing.trim_end_matches([' ', '\t', '\r']).is_empty() {
            // Read the heredoc from the next line anyway, so one mistake gives one error.
            self.error(
                Diagnostic::error(
                    codes::INVALID_HEREDOC,
                    Span::new(intro_end, intro_end + trailing.len()),
                    format!("a heredoc introducer `{intro}` must end its line"),
                )
                .with_label("unexpected text after the introducer")
                .with_secondary(intro_span, "heredoc introduced here")
                .with_help(format!(
                    "start the text on the next line and end it with a line holding only `{marker}`"
                )),
            );
        }
        let body_start = match line_end {
            Some(i) => intro_end + i + 1,
            None => self.src.len(),
        };
        self.push(
            start,
            Tok::HeredocStart(HeredocHead { marker, strip }),
            body_start,
        );
        if !self.enter(intro_span) {
            self.push(self.pos, Tok::HeredocEnd, self.pos);
            return;
        }

        // Find the closing marker line.
        let mut lines: Vec<(usize, usize)> = Vec::new(); // (start, end incl. '\n')
        let mut close: Option<(usize, usize)> = None;
        let mut at = body_start;
        while at < self.src.len() {
            let nl = self.src[at..].find('\n').map(|i| at + i + 1);
            let end = nl.unwrap_or(self.src.len());
            let content = self.src[at..end].trim_end_matches(['\n', '\r']);
            let trimmed = content.trim_start_matches([' ', '\t']);
            if trimmed.trim_end_matches([' ', '\t']) == marker {
                let mstart = at + (content.len() - trimmed.len());
                close = Some((mstart, mstart + marker.len()));
                break;
            }
            lines.push((at, end));
            at = end;
        }
        let body_end = close.map(|(s, _)| s).unwrap_or(self.src.len());

        let indent = if strip {
            lines
                .iter()
                .filter_map(|&(s, e)| {
                    let line = &self.src[s..e.min(body_end)];
                    let ws = line.len() - line.trim_start_matches([' ', '\t']).len();
                    let blank = line[ws..].trim_end_matches(['\n', '\r']).is_empty();
                    (!blank).then_some(ws)
                })
                .min()
                .unwrap_or(0)
        } else {
            0
        };

        let mut lit = LitBuf::new(self.src);
        for &(ls, le) in &lines {
            let le = le.min(body_end);
            let line = &self.src[ls..le];
            let ws = line.len() - line.trim_start_matches([' ', '\t']).len();
            let mut p = ls + ws.min(indent);
            while p < le {
                let rest = &self.src[p..le];
                if rest.starts_with("$${") {
                    lit.push(p, p + 3, "${");
                    p += 3;
                } else if rest.starts_with("${") {
                    lit.flush(self);
                    self.interpolation(p);
                    // An interpolation may not run past its line in a heredoc.
                    p = self.pos.max(p + 2);
                    if p > le {
                        break;
                    }
                } else {
                    let first = rest.chars().next().map_or(1, char::len_utf8);
                    let n = rest[first..]
                        .find('$')
                        .map(|i| i + first)
                        .unwrap_or(rest.len());
                    lit.push(p, p + n, &rest[..n]);
                    p += n;
                }
            }
        }
        lit.flush(self);
        match close {
            Some((s, e)) if !self.abandoned => {
                self.push(s, Tok::HeredocEnd, e);
                self.pos = e;
            }
            _ if self.abandoned => {
                let eof = self.src.len();
                self.push(eof, Tok::HeredocEnd, eof);
            }
            _ => {
                let eof = self.src.len();
                self.error(
                    Diagnostic::error(
                        codes::UNTERMINATED_HEREDOC,
                        intro_span,
                        format!("unterminated heredoc: no line holds only `{marker}`"),
                    )
                    .with_label("heredoc opened here")
                    .with_secondary(Span::empty(eof), "the file ends here")
                    .with_help(format!(
                        "end the heredoc with a line holding only `{marker}`"
                    )),
                );
                self.push(eof, Tok::HeredocEnd, eof);
                self.pos = eof;
            }
        }
        self.depth -= 1;
    }
}

/// Accumulates adjacent literal pieces into one `Lit` token, borrowing from the source
/// when the text needs no decoding (the common case).
struct LitBuf<'s> {
    src: &'s str,
    /// Decoded text, once some piece differed from its source.
    owned: Option<String>,
    span: Option<(usize, usize)>,
}

impl<'s> LitBuf<'s> {
    fn new(src: &'s str) -> Self {
        LitBuf {
            src,
            owned: None,
            span: None,
        }
    }
    /// A piece whose decoded text is `s` and whose source is `start..end`.
    fn push(&mut self, start: usize, end: usize, s: &str) {
        let verbatim = self.src.get(start..end) == Some(s);
        let contiguous = self.span.is_none_or(|(_, e)| e == start);
        if self.owned.is_none() && !(verbatim && contiguous) {
            let sofar = self.span.map_or("", |(s0, e0)| &self.src[s0..e0]);
            self.owned = Some(sofar.to_string());
        } else if self.owned.is_none() {
            self.span = Some((self.span.map_or(start, |(s0, _)| s0), end));
            return;
        }
        self.owned.as_mut().expect("set above").push_str(s);
        self.span = Some((self.span.map_or(start, |(s0, _)| s0), end));
    }
    fn push_char(&mut self, start: usize, end: usize, c: char) {
        let mut buf = [0u8; 4];
        self.push(start, end, c.encode_utf8(&mut buf));
    }
    fn flush(&mut self, driver: &mut Driver<'s>) {
        let Some((s, e)) = self.span.take() else {
            return;
        };
        let lit = match self.owned.take() {
            None => Cow::Borrowed(&self.src[s..e]),
            Some(text) => Cow::Owned(text),
        };
        driver.push(s, Tok::Lit(lit), e);
    }
}

/// `digits [. digits] [(e|E) [+|-] digits]`
pub(crate) fn is_valid_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    if !digits(&mut i) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}
