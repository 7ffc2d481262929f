//! Tokens the parser consumes.

use std::borrow::Cow;
use std::fmt;

/// A token as handed to the LALRPOP parser; positions travel beside it as byte offsets.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok<'s> {
    /// An identifier such as `egg` or `cpu`.
    Ident(&'s str),
    /// A number literal as written (`42`, `1.5e3`); a leading `-` is a separate token.
    Number(&'s str),
    /// `true`.
    True,
    /// `false`.
    False,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `=`
    Eq,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `-`
    Minus,
    /// `:`
    Colon,
    /// A significant line break (outside brackets and interpolations).
    Newline,
    /// The opening `"` of a quoted string.
    StrStart,
    /// The closing `"` of a quoted string (synthesised, empty, when it is missing).
    StrEnd,
    /// Literal text of a string or heredoc, escapes already decoded.
    Lit(Cow<'s, str>),
    /// `${`
    InterpStart,
    /// The `}` closing an interpolation.
    InterpEnd,
    /// `<<EOT` or `<<-EOT` and its line break.
    HeredocStart(HeredocHead<'s>),
    /// The closing marker line of a heredoc.
    HeredocEnd,
}

/// What a heredoc introducer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeredocHead<'s> {
    /// The marker, e.g. `EOT`.
    pub marker: &'s str,
    /// `<<-`: strip the common indentation.
    pub strip: bool,
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Number(s) => write!(f, "number `{s}`"),
            Tok::True => f.write_str("`true`"),
            Tok::False => f.write_str("`false`"),
            Tok::LBrace => f.write_str("`{`"),
            Tok::RBrace => f.write_str("`}`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::Eq => f.write_str("`=`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Dot => f.write_str("`.`"),
            Tok::Minus => f.write_str("`-`"),
            Tok::Colon => f.write_str("`:`"),
            Tok::Newline => f.write_str("a line break"),
            Tok::StrStart => f.write_str("a string"),
            Tok::StrEnd => f.write_str("the end of the string"),
            Tok::Lit(_) => f.write_str("string text"),
            Tok::InterpStart => f.write_str("`${`"),
            Tok::InterpEnd => f.write_str("the `}` closing the interpolation"),
            Tok::HeredocStart(_) => f.write_str("a heredoc"),
            Tok::HeredocEnd => f.write_str("the end of the heredoc"),
        }
    }
}

/// A token's kind without its payload, for compact records.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokKind {
    Ident,
    Number,
    True,
    False,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Eq,
    Comma,
    Dot,
    Minus,
    Colon,
    Newline,
    StrStart,
    StrEnd,
    Lit,
    InterpStart,
    InterpEnd,
    HeredocStart,
    HeredocEnd,
}

impl Tok<'_> {
    /// The token's kind.
    pub fn kind(&self) -> TokKind {
        match self {
            Tok::Ident(_) => TokKind::Ident,
            Tok::Number(_) => TokKind::Number,
            Tok::True => TokKind::True,
            Tok::False => TokKind::False,
            Tok::LBrace => TokKind::LBrace,
            Tok::RBrace => TokKind::RBrace,
            Tok::LBracket => TokKind::LBracket,
            Tok::RBracket => TokKind::RBracket,
            Tok::LParen => TokKind::LParen,
            Tok::RParen => TokKind::RParen,
            Tok::Eq => TokKind::Eq,
            Tok::Comma => TokKind::Comma,
            Tok::Dot => TokKind::Dot,
            Tok::Minus => TokKind::Minus,
            Tok::Colon => TokKind::Colon,
            Tok::Newline => TokKind::Newline,
            Tok::StrStart => TokKind::StrStart,
            Tok::StrEnd => TokKind::StrEnd,
            Tok::Lit(_) => TokKind::Lit,
            Tok::InterpStart => TokKind::InterpStart,
            Tok::InterpEnd => TokKind::InterpEnd,
            Tok::HeredocStart(_) => TokKind::HeredocStart,
            Tok::HeredocEnd => TokKind::HeredocEnd,
        }
    }
}
