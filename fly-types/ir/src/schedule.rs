//! Five-field cron schedules: parsing with located errors, and the next run time.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A parsed cron schedule: each field expanded to the values it allows, read in UTC (a job's
/// schedule) or in the time zone of the scale window that holds it (`next_after_in`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The expression as written.
    pub expression: String,
    /// Minutes 0–59.
    pub minutes: Vec<u8>,
    /// Hours 0–23.
    pub hours: Vec<u8>,
    /// Days of the month 1–31.
    pub days_of_month: Vec<u8>,
    /// Months 1–12.
    pub months: Vec<u8>,
    /// Days of the week 0–6, Sunday = 0.
    pub days_of_week: Vec<u8>,
    /// Day-of-month and day-of-week were both restricted: a day matches either (as cron does).
    pub either_day: bool,
}

/// A schedule that does not parse, with the byte range inside the expression to blame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    /// Start of the offending text in the expression.
    pub start: usize,
    /// End of the offending text.
    pub end: usize,
    /// What is wrong.
    pub message: String,
}

struct Field {
    name: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    /// Parses `minute hour day-of-month month day-of-week` (ranges `a-b`, steps `*/n` and
    /// `a-b/n`, lists `a,b`, month and weekday names, `@daily`-style macros).
    pub fn parse(expression: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expression.trim();
        let lead = expression.len() - expression.trim_start().len();
        let (text, base) = match MACROS.iter().find(|(m, _)| m.eq_ignore_ascii_case(trimmed)) {
            Some((_, expanded)) => (*expanded, None),
            None if trimmed.starts_with('@') => {
                return Err(ScheduleError {
                    start: lead,
                    end: lead + trimmed.len(),
                    message: format!(
                        "unknown schedule macro `{trimmed}`; known: @yearly, @monthly, @weekly, @daily, @hourly"
                    ),
                })
            }
            None => (expression, Some(0usize)),
        };
        let mut fields: Vec<(usize, &str)> = Vec::new();
        let mut at = 0;
        for part in text.split([' ', '\t']) {
            if !part.is_empty() {
                fields.push((at, part));
            }
            at += part.len() + 1;
        }
        if fields.len() != 5 {
            return Err(ScheduleError {
                start: 0,
                end: expression.len(),
                message: format!(
                    "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), this one has {}",
                    fields.len()
                ),
            });
        }
        let mut sets = [0u64; 5];
        let mut restricted = [false; 5];
        for (i, (off, part)) in fields.iter().enumerate() {
            let locate = |s: usize, e: usize| match base {
                Some(b) => (b + off + s, b + off + e),
                None => (lead, lead + trimmed.len()),
            };
            let (set, star) = parse_field(&FIELDS[i], part).map_err(|(s, e, message)| {
                let (start, end) = locate(s, e);
                ScheduleError {
                    start,
                    end,
                    message,
                }
            })?;
            sets[i] = set;
            restricted[i] = !star;
        }
        // Sunday may be written 7.
        if sets[4] & (1 << 7) != 0 {
            sets[4] = (sets[4] & !(1 << 7)) | 1;
        }
        let list = |bits: u64| {
            (0..64u8)
                .filter(|b| bits & (1u64 << b) != 0)
                .collect::<Vec<u8>>()
        };
        Ok(Schedule {
            expression: expression.trim().to_string(),
            minutes: list(sets[0]),
            hours: list(sets[1]),
            days_of_month: list(sets[2]),
            months: list(sets[3]),
            days_of_week: list(sets[4]),
            either_day: restricted[2] && restricted[4],
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if !self.months.contains(&(date.month() as u8)) {
            return false;
        }
        let dom = self.days_of_month.contains(&(date.day() as u8));
        let dow = self
            .days_of_week
            .contains(&(date.weekday().num_days_from_sunday() as u8));
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time strictly after `after` (to the minute) that the schedule fires, within
    /// the next eight years (`None` for a schedule that never fires, such as 30 February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let mut date = start.date_naive();
        for day in 0..(366 * 8) {
            if self.day_matches(date) {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let t = Utc
                            .with_ymd_and_hms(
                                date.year(),
                                date.month(),
                                date.day(),
                                h.into(),
                                m.into(),
                                0,
                            )
                            .single()?;
                        if day > 0 || t >= start {
                            return Some(t);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// Like [`next_after`](Schedule::next_after), with the fields read as wall-clock times in
    /// the time zone `tz` instead of UTC: the first instant strictly after `after` (to the
    /// minute) at which a clock in `tz` shows a time the schedule allows.
    ///
    /// Daylight saving time: a wall-clock time that does not exist because the clocks spring
    /// forward (02:30 in Europe/Berlin on the last Sunday of March) fires at the moment they
    /// jump (03:00 CEST, 01:00 UTC), so it is late rather than lost; a wall-clock time that
    /// happens twice because the clocks fall back (02:30 on the last Sunday of October) fires
    /// once, the first time (02:30 CEST, 00:30 UTC).
    pub fn next_after_in<Z: TimeZone>(
        &self,
        tz: &Z,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        // Walk the wall clock: local times are handed to `next_after` as if they were UTC,
        // and each candidate is mapped back to an instant.
        let mut wall = Utc.from_utc_datetime(&after.with_timezone(tz).naive_local());
        // After the clocks fall back, the wall clock shows times already passed; skipping
        // them takes at most one step per minute of the repeated stretch.
        for _ in 0..=(24 * 60) {
            let next = self.next_after(wall)?;
            if let Some(t) = instant_of(tz, next.naive_utc()) {
                if t > after {
                    return Some(t);
                }
            }
            wall = next;
        }
        None
    }
}

/// The instant a clock in `tz` shows `wall`: the first of two when the clocks fall back,
/// the moment of the jump when they spring forward over it.
fn instant_of<Z: TimeZone>(tz: &Z, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let first = |r: LocalResult<DateTime<Z>>| match r {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => None,
    };
    first(tz.from_local_datetime(&wall)).or_else(|| {
        // Skipped: the first minute the clocks show after the gap is when they jumped.
        (1..=24 * 60).find_map(|m| first(tz.from_local_datetime(&(wall + Duration::minutes(m)))))
    })
}

type FieldError = (usize, usize, String);

/// One field: returns the allowed values as bits and whether it was a bare `*`.
fn parse_field(f: &Field, text: &str) -> Result<(u64, bool), FieldError> {
    let mut bits = 0u64;
    let mut at = 0;
    for item in text.split(',') {
        let (s, e) = (at, at + item.len());
        at = e + 1;
        if item.is_empty() {
            return Err((
                s,
                e.max(s + 1).min(text.len()),
                format!("empty item in the {} field", f.name),
            ));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => {
                let step: u8 = st.parse().ok().filter(|&n| n > 0).ok_or((
                    s + r.len() + 1,
                    e,
                    format!(
                        "the step `{st}` in the {} field must be a positive number",
                        f.name
                    ),
                ))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (f.min, if f.max == 7 { 6 } else { f.max })
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = value(f, a, s)?;
            let hi = value(f, b, s + a.len() + 1)?;
            if lo > hi {
                return Err((
                    s,
                    s + range.len(),
                    format!("the range `{range}` in the {} field runs backwards", f.name),
                ));
            }
            (lo, hi)
        } else {
            let v = value(f, range, s)?;
            (v, if step > 1 { f.max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1u64 << v;
            v = match v.checked_add(step) {
                Some(n) => n,
                None => break,
            };
        }
    }
    Ok((bits, text == "*"))
}

fn value(f: &Field, text: &str, at: usize) -> Result<u8, FieldError> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u8 + if f.min == 1 { 1 } else { 0 });
    }
    match text.parse::<u8>() {
        Ok(v) if (f.min..=f.max).contains(&v) => Ok(v),
        Ok(_) | Err(_) if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() => Err((
            at,
            at + text.len(),
            format!("{} `{text}` is out of range {}–{}", f.name, f.min, f.max),
        )),
        _ => Err((
            at,
            at + text.len(),
            if f.names.is_empty() {
                format!(
                    "`{text}` is not a valid {} (expected a number {}–{})",
                    f.name, f.min, f.max
                )
            } else {
                format!(
                    "`{text}` is not a valid {} (expected {}–{} or a name such as `{}`)",
                    f.name, f.min, f.max, f.names[0]
                )
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_fields_ranges_steps_and_names() {
        let s = Schedule::parse("*/15 9-17 * JAN,jul mon-fri").unwrap();
        assert_eq!(s.minutes, [0, 15, 30, 45]);
        assert_eq!(s.hours, (9..=17).collect::<Vec<u8>>());
        assert_eq!(s.months, [1, 7]);
        assert_eq!(s.days_of_week, [1, 2, 3, 4, 5]);
        assert!(!s.either_day);
        assert_eq!(Schedule::parse("0 0 * * 7").unwrap().days_of_week, [0]);
        assert_eq!(Schedule::parse("@daily").unwrap().hours, [0]);
        assert_eq!(
            Schedule::parse("5/20 * * * *").unwrap().minutes,
            [5, 25, 45]
        );
    }

    #[test]
    fn errors_point_inside_the_expression() {
        let e = Schedule::parse("0 25 * * *").unwrap_err();
        assert_eq!((e.start, e.end), (2, 4));
        assert!(
            e.message.contains("hour `25` is out of range 0–23"),
            "{}",
            e.message
        );
        let e = Schedule::parse("0 2 * foo *").unwrap_err();
        assert_eq!((e.start, e.end), (6, 9));
        let e = Schedule::parse("0 2 * *").unwrap_err();
        assert!(e.message.contains("has 4"));
        let e = Schedule::parse("*/0 * * * *").unwrap_err();
        assert_eq!((e.start, e.end), (2, 3));
        assert!(Schedule::parse("5-1 * * * *")
            .unwrap_err()
            .message
            .contains("backwards"));
        assert!(Schedule::parse("@often").is_err());
    }

    #[test]
    fn next_run() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-02T01:59:30Z")),
            Some(at("2026-12-02T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-02T02:00:00Z")),
            Some(at("2026-12-03T02:00:00Z"))
        );
        // Either day-of-month 13 or a Friday.
        let s = Schedule::parse("0 0 13 * fri").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-04T00:00:00Z"))
        );
        // 29 February.
        let s = Schedule::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            s.next_after(at("2026-03-01T00:00:00Z")),
            Some(at("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(at("2026-01-01T00:00:00Z")),
            None
        );
    }
}
