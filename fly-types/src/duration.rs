//! Durations: `"90s"`, `"10m"`, `"24h"`, `"1h30m"`, `"2d"`.

/// Parses a duration into seconds, or says what is wrong.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("a duration cannot be empty".into());
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("`{text}` is not a duration: durations are written without spaces, like `10m` or `1h30m`"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration: expected a number before `{rest}`"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` is too long a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "" => {
                return Err(format!(
                    "`{text}` needs a unit: write `{n}s`, `{n}m` or `{n}h`"
                ))
            }
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}`; use s, m, h or d"
                ))
            }
        };
        if unit >= last_unit {
            return Err(format!(
                "units in `{text}` must go from largest to smallest, each once (like `1h30m`)"
            ));
        }
        last_unit = unit;
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
    }
    Ok(total)
}

/// Seconds written back as the shortest duration text (`5400` → `1h30m`).
pub fn format_duration(mut s: u64) -> String {
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if s >= unit {
            out.push_str(&format!("{}{name}", s / unit));
            s %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        for (text, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("24h", 86_400),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(90), "1m30s");
        for bad in [
            "",
            "10",
            "m",
            "1x",
            "30m1h",
            "1h1h",
            "-5m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
