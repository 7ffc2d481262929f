//! Policy conditions: `failed_count >= 3 AND age > 1h`.
//!
//! ```text
//! condition  = or
//! or         = and { ("OR" | "||") and }
//! and        = not { ("AND" | "&&") not }
//! not        = ("NOT" | "!") not | "(" or ")" | comparison
//! comparison = operand op operand          op = == != < <= > >=
//! operand    = metric | number | duration | 'string'
//! ```
//!
//! Keywords are case-insensitive. One side of a comparison is a metric, the other a constant
//! of the metric's type: counts and percentages take numbers, durations take durations
//! (`30m`, `1h30m`), `state` takes a quoted runner state or pool with `==` or `!=`.
//! Errors carry byte ranges inside the condition text.

use crate::duration::parse_duration;
use fly_ir::{CmpOp, Condition, Metric, MetricType, Operand, RunnerStateOrPool};

/// A problem in a condition, located inside its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionError {
    /// Which kind of problem (syntax, type, unknown metric, unknown state).
    pub code: fly_syntax::Code,
    /// Start offset in the condition text.
    pub start: usize,
    /// End offset in the condition text.
    pub end: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Number(f64),
    Duration(u64),
    Str(String),
    Op(CmpOp),
    And,
    Or,
    Not,
    LParen,
    RParen,
    End,
}

fn err(
    code: fly_syntax::Code,
    start: usize,
    end: usize,
    message: impl Into<String>,
) -> ConditionError {
    ConditionError {
        code,
        start,
        end,
        message: message.into(),
        help: None,
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok, usize)>, ConditionError> {
    use crate::codes::CONDITION_SYNTAX as SYNTAX;
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = text.get(i..i + 2).unwrap_or("");
        let tok = match (c, two) {
            (_, "==") => Some((Tok::Op(CmpOp::Eq), 2)),
            (_, "!=") => Some((Tok::Op(CmpOp::Ne), 2)),
            (_, "<=") => Some((Tok::Op(CmpOp::Le), 2)),
            (_, ">=") => Some((Tok::Op(CmpOp::Ge), 2)),
            (_, "&&") => Some((Tok::And, 2)),
            (_, "||") => Some((Tok::Or, 2)),
            (b'<', _) => Some((Tok::Op(CmpOp::Lt), 1)),
            (b'>', _) => Some((Tok::Op(CmpOp::Gt), 1)),
            (b'!', _) => Some((Tok::Not, 1)),
            (b'(', _) => Some((Tok::LParen, 1)),
            (b')', _) => Some((Tok::RParen, 1)),
            (b'=', _) => {
                return Err(ConditionError {
                    help: Some("compare with `==`".into()),
                    ..err(SYNTAX, i, i + 1, "`=` is not a comparison")
                })
            }
            _ => None,
        };
        if let Some((tok, len)) = tok {
            out.push((start, tok, start + len));
            i += len;
            continue;
        }
        if c == b'\'' || c == b'"' {
            let close = text[i + 1..].find(c as char).ok_or_else(|| {
                err(
                    SYNTAX,
                    i,
                    text.len(),
                    "unterminated quoted string in the condition",
                )
            })?;
            let s = text[i + 1..i + 1 + close].to_string();
            i += close + 2;
            out.push((start, Tok::Str(s), i));
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            let word = &text[start..i];
            let tok = if word.bytes().any(|c| c.is_ascii_alphabetic()) {
                Tok::Duration(parse_duration(word).map_err(|m| err(SYNTAX, start, i, m))?)
            } else {
                Tok::Number(
                    word.parse()
                        .map_err(|_| err(SYNTAX, start, i, format!("`{word}` is not a number")))?,
                )
            };
            out.push((start, tok, i));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            let tok = match word.to_ascii_uppercase().as_str() {
                "AND" => Tok::And,
                "OR" => Tok::Or,
                "NOT" => Tok::Not,
                _ => Tok::Word(word.to_string()),
            };
            out.push((start, tok, i));
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or('?');
        return Err(err(
            SYNTAX,
            i,
            i + ch.len_utf8(),
            format!("unexpected character `{ch}` in the condition"),
        ));
    }
    out.push((text.len(), Tok::End, text.len()));
    Ok(out)
}

struct Parser<'t> {
    toks: Vec<(usize, Tok, usize)>,
    at: usize,
    text: &'t str,
    depth: usize,
}

/// Parses and type-checks a condition.
pub fn parse_condition(text: &str) -> Result<Condition, ConditionError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        at: 0,
        text,
        depth: 0,
    };
    if matches!(p.peek(), Tok::End) {
        return Err(err(
            crate::codes::CONDITION_SYNTAX,
            0,
            text.len(),
            "the condition is empty",
        ));
    }
    let c = p.or()?;
    match p.peek() {
        Tok::End => Ok(c),
        _ => {
            let (s, _, e) = p.toks[p.at].clone();
            Err(err(
                crate::codes::CONDITION_SYNTAX,
                s,
                e,
                format!(
                    "expected `AND`, `OR` or the end of the condition, found `{}`",
                    &text[s..e]
                ),
            ))
        }
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].1
    }

    fn bump(&mut self) -> (usize, Tok, usize) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut items = vec![self.and()?];
        while matches!(self.peek(), Tok::Or) {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Condition::Or(items)
        })
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut items = vec![self.not()?];
        while matches!(self.peek(), Tok::And) {
            self.bump();
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Condition::And(items)
        })
    }

    fn not(&mut self) -> Result<Condition, ConditionError> {
        self.depth += 1;
        if self.depth > 64 {
            let (s, _, e) = self.toks[self.at].clone();
            return Err(err(
                crate::codes::CONDITION_SYNTAX,
                s,
                e,
                "the condition nests too deeply",
            ));
        }
        let result = match self.peek() {
            Tok::Not => {
                self.bump();
                self.not().map(|c| Condition::Not(Box::new(c)))
            }
            Tok::LParen => {
                let (open, _, _) = self.bump();
                let inner = self.or()?;
                match self.bump() {
                    (_, Tok::RParen, _) => Ok(inner),
                    (s, _, e) => Err(ConditionError {
                        help: Some(format!("the `(` at column {} needs a `)`", open + 1)),
                        ..err(crate::codes::CONDITION_SYNTAX, s, e, "expected `)`")
                    }),
                }
            }
            _ => self.comparison(),
        };
        self.depth -= 1;
        result
    }

    fn comparison(&mut self) -> Result<Condition, ConditionError> {
        use crate::codes::{CONDITION_SYNTAX as SYNTAX, CONDITION_TYPE as TYPE};
        let (ls, left, le) = self.bump();
        if !matches!(
            left,
            Tok::Word(_) | Tok::Number(_) | Tok::Duration(_) | Tok::Str(_)
        ) {
            let found = if le > ls {
                format!("`{}`", &self.text[ls..le])
            } else {
                "the end of the condition".into()
            };
            return Err(ConditionError {
                help: Some(
                    "a comparison looks like `failed_count >= 3` or `idle_time > 30m`".into(),
                ),
                ..err(
                    SYNTAX,
                    ls,
                    le.max(ls),
                    format!("expected a metric such as `failed_count`, found {found}"),
                )
            });
        }
        let (os, op, oe) = self.bump();
        let op = match op {
            Tok::Op(op) => op,
            _ => {
                let found = if oe > os {
                    format!("`{}`", &self.text[os..oe])
                } else {
                    "the end".into()
                };
                return Err(ConditionError {
                    help: Some("a comparison looks like `failed_count >= 3` or `idle_time > 30m`".into()),
                    ..err(SYNTAX, os, oe.max(os), format!("expected a comparison operator (==, !=, <, <=, >, >=) after `{}`, found {found}", &self.text[ls..le]))
                });
            }
        };
        let (rs, right, re) = self.bump();
        // Put the metric on the left: `3 <= failed_count` is `failed_count >= 3`.
        let (metric_side, value_side, op) = match (&left, &right) {
            (Tok::Word(_), _) => ((ls, left, le), (rs, right, re), op),
            (_, Tok::Word(_)) => ((rs, right, re), (ls, left, le), flip(op)),
            _ => {
                return Err(ConditionError {
                    help: Some(format!("metrics: {}", metric_names().join(", "))),
                    ..err(TYPE, ls, re, "a comparison needs a metric on one side")
                })
            }
        };
        let (ms, Tok::Word(name), me) = metric_side else {
            unreachable!("checked above")
        };
        let metric = Metric::from_name(&name).ok_or_else(|| {
            let names = metric_names();
            ConditionError {
                help: Some(match crate::suggest(&name, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("metrics: {}", names.join(", ")),
                }),
                ..err(
                    crate::codes::UNKNOWN_METRIC,
                    ms,
                    me,
                    format!("unknown metric `{name}`"),
                )
            }
        })?;
        let (vs, value, ve) = value_side;
        let operand = match (metric.ty(), value) {
            (MetricType::Count | MetricType::Percent, Tok::Number(n)) => Operand::Number(n),
            (MetricType::Duration, Tok::Duration(s)) => Operand::Seconds(s),
            (MetricType::State, Tok::Str(s)) => {
                if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    return Err(err(
                        TYPE,
                        os,
                        oe,
                        format!("`{}` only compares with `==` or `!=`", metric.name()),
                    ));
                }
                let names: Vec<&str> = RunnerStateOrPool::ALL.iter().map(|s| s.1).collect();
                match RunnerStateOrPool::from_name(&s) {
                    Some(state) => Operand::State(state),
                    None => {
                        return Err(ConditionError {
                            help: Some(match crate::suggest(&s, names.iter().copied()) {
                                Some(near) => format!("did you mean '{near}'?"),
                                None => format!("states and pools: {}", names.join(", ")),
                            }),
                            ..err(
                                crate::codes::UNKNOWN_STATE,
                                vs,
                                ve,
                                format!("'{s}' is not a runner state or pool"),
                            )
                        })
                    }
                }
            }
            (MetricType::Duration, Tok::Number(n)) => {
                return Err(ConditionError {
                    help: Some(format!(
                        "write a duration such as `{}m` or `1h`",
                        n.max(1.0) as u64
                    )),
                    ..err(
                        TYPE,
                        vs,
                        ve,
                        format!(
                            "cannot compare the duration `{}` with a plain number",
                            metric.name()
                        ),
                    )
                })
            }
            (ty, other) => {
                let what = match ty {
                    MetricType::Count => "a count",
                    MetricType::Percent => "a percentage",
                    MetricType::Duration => "a duration",
                    MetricType::State => "a state",
                };
                let found = match other {
                    Tok::Number(_) => "a number",
                    Tok::Duration(_) => "a duration",
                    Tok::Str(_) => "a string",
                    Tok::Word(_) => "another metric",
                    _ => "nothing",
                };
                let help = match ty {
                    MetricType::Count | MetricType::Percent => format!(
                        "compare `{}` with a number, e.g. `{} >= 3`",
                        metric.name(),
                        metric.name()
                    ),
                    MetricType::Duration => format!(
                        "compare `{}` with a duration, e.g. `{} > 30m`",
                        metric.name(),
                        metric.name()
                    ),
                    MetricType::State => format!(
                        "compare `{}` with a quoted state, e.g. `{} == 'apex'`",
                        metric.name(),
                        metric.name()
                    ),
                };
                let (s, e) = if ve > vs { (vs, ve) } else { (os, oe) };
                return Err(ConditionError {
                    help: Some(help),
                    ..err(
                        TYPE,
                        s,
                        e,
                        format!("cannot compare {what} (`{}`) with {found}", metric.name()),
                    )
                });
            }
        };
        Ok(Condition::Compare {
            metric,
            op,
            value: operand,
        })
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

fn metric_names() -> Vec<&'static str> {
    Metric::ALL.iter().map(|m| m.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_document_conditions() {
        let c = parse_condition("failed_count >= 3 AND age > 1h").unwrap();
        assert_eq!(
            c,
            Condition::And(vec![
                Condition::Compare {
                    metric: Metric::FailedCount,
                    op: CmpOp::Ge,
                    value: Operand::Number(3.0)
                },
                Condition::Compare {
                    metric: Metric::Age,
                    op: CmpOp::Gt,
                    value: Operand::Seconds(3600)
                },
            ])
        );
        let c = parse_condition("state == 'apex' AND idle_time > 30m").unwrap();
        assert!(matches!(c, Condition::And(ref v) if v.len() == 2));
    }

    #[test]
    fn precedence_parentheses_and_flipping() {
        let c = parse_condition("NOT (a_x == 1) OR b").unwrap_err();
        assert_eq!(c.code, crate::codes::UNKNOWN_METRIC);
        let c = parse_condition("3 <= failed_count or not (cpu_usage > 90 && disk_usage > 80)")
            .unwrap();
        let Condition::Or(items) = c else {
            panic!("or at the top")
        };
        assert_eq!(
            items[0],
            Condition::Compare {
                metric: Metric::FailedCount,
                op: CmpOp::Ge,
                value: Operand::Number(3.0)
            }
        );
        assert!(matches!(items[1], Condition::Not(_)));
    }

    #[test]
    fn errors_are_located_and_worded() {
        let e = parse_condition("state > 3").unwrap_err();
        assert_eq!(
            (e.start, e.end, e.code),
            (8, 9, crate::codes::CONDITION_TYPE)
        );
        let e = parse_condition("state == 3").unwrap_err();
        assert!(
            e.message
                .contains("cannot compare a state (`state`) with a number"),
            "{}",
            e.message
        );
        assert_eq!((e.start, e.end), (9, 10));
        let e = parse_condition("state == 'apx'").unwrap_err();
        assert_eq!((e.start, e.end), (9, 14));
        assert_eq!(e.help.as_deref(), Some("did you mean 'apex'?"));
        let e = parse_condition("failed_cnt >= 3").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `failed_count`?"));
        let e = parse_condition("age > 3600").unwrap_err();
        assert!(e.message.contains("duration"), "{}", e.message);
        let e = parse_condition("failed_count >= 3 AND").unwrap_err();
        assert_eq!(e.code, crate::codes::CONDITION_SYNTAX);
        let e = parse_condition("age = 1h").unwrap_err();
        assert_eq!((e.start, e.end), (4, 5));
        assert!(parse_condition("").is_err());
        assert!(parse_condition("(age > 1h").is_err());
        assert!(parse_condition(&"(".repeat(1000)).is_err());
    }
}
