//! HCL literals: every value a template interpolates is written as an HCL literal by the
//! template engine's formatter ([`write_value`]), so no egg name, label or id can break out
//! of its string, start an interpolation (`${`) or a directive (`%{`), or end a line.

use minijinja::value::{Value, ValueKind};
use std::fmt::Write as _;

/// `s` as a quoted HCL string: `\` `"` escaped, line breaks and tabs as `\n` `\r` `\t`,
/// other control characters as `\uXXXX`, and `${` / `%{` doubled (`$${`, `%%{`) so they
/// stay literal text.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `value` as an HCL literal: strings quoted ([`quote`]), numbers and booleans as
/// they are, sequences as `[a, b]`, maps as `{ "k" = v, … }` (keys quoted, sorted as given).
/// A *safe* string (marked by the `raw` filter, for fixed expressions the template
/// itself writes) is written unchanged. `none` and undefined values are errors: a
/// template never writes `null` by accident.
pub fn write_value(out: &mut String, value: &Value) -> Result<(), minijinja::Error> {
    if value.is_safe() {
        out.push_str(value.as_str().unwrap_or_default());
        return Ok(());
    }
    match value.kind() {
        ValueKind::String => out.push_str(&quote(value.as_str().unwrap_or_default())),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let _ = write!(out, "{value}");
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, &item)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<Value> = value.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push_str("{ ");
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quote(&key.to_string()));
                out.push_str(" = ");
                write_value(out, &value.get_item(key)?)?;
            }
            out.push_str(" }");
        }
        kind => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("a {kind} value cannot be written as HCL"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_what_hcl_would_read() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(quote("${var.x} %{if}"), r#""$${var.x} %%{if}""#);
        assert_eq!(quote("$x %d"), r#""$x %d""#);
        assert_eq!(quote("\u{1}\u{7f}"), r#""\u0001\u007f""#);
    }
}
