//! Parsing of human-friendly sizes (`5GiB`, `512M`) and durations (`90s`, `15m`, `7d`).

use std::time::Duration;

/// An error from [`parse_size`] or [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

fn split_number(s: &str) -> (&str, &str) {
    let idx = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    (&s[..idx], s[idx..].trim())
}

/// Parses a byte size such as `4096`, `64KiB`, `512M`, `5GiB` or `1T`.
///
/// Decimal (`K`, `KB`, `M`, `MB`, ...) and binary (`KiB`, `MiB`, ...) suffixes are accepted;
/// a bare `K`/`M`/`G`/`T` is binary, as is common for cache sizes.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = |reason| UnitError {
        what: "size",
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let (num, unit) = split_number(s);
    if num.is_empty() {
        return Err(err("expected a number"));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(err(
                "unknown unit (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
            ))
        }
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(|| err("too large"));
    }
    let f: f64 = num.parse().map_err(|_| err("expected a number"))?;
    let v = f * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(err("out of range"));
    }
    Ok(v as u64)
}

/// Parses a duration such as `30s`, `15m`, `12h`, `7d`, `250ms` or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = |reason| UnitError {
        what: "duration",
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let (num, unit) = split_number(s);
    let n: u64 = num.parse().map_err(|_| err("expected a whole number"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(|| err("too large"))?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(|| err("too large"))?),
        "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(|| err("too large"))?),
        _ => return Err(err("unknown unit (use ms, s, m, h, d)")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("5GiB").unwrap(), 5 << 30);
        assert_eq!(parse_size("5G").unwrap(), 5 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 1_572_864);
        assert_eq!(parse_size("2 MB").unwrap(), 2_000_000);
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
