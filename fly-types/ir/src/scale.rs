//! Scale windows: periods, such as working hours, during which a pool keeps its own
//! `min_count`.

use crate::Schedule;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A recurring period with its own pool `min_count`: it starts whenever `from` fires and
/// ends whenever `to` fires, both read as wall-clock times in `timezone`.
///
/// Daylight saving time is handled as [`Schedule::next_after_in`] says: a start or end that
/// the clocks skip when they spring forward happens at the moment they jump, one that they
/// pass twice when they fall back happens the first time. So a window `from = "0 8 * * 1-5"`,
/// `to = "0 19 * * 1-5"` covers 08:00–19:00 on the local clock in winter and in summer (its
/// UTC hours move by one), and a window ending at 02:30 in Europe/Berlin ends at 02:30 CEST
/// on the night the clocks go back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleWindow {
    /// The window's name (its label in the Nest).
    pub name: String,
    /// When the period starts (wall-clock times in `timezone`).
    pub from: Schedule,
    /// When it ends (wall-clock times in `timezone`).
    pub to: Schedule,
    /// An IANA time zone name, such as `Europe/Moscow` or `UTC`.
    pub timezone: String,
    /// The pool's `min_count` while the period is on.
    pub min_count: u32,
}

impl ScaleWindow {
    /// The time zone, `None` for a name the IANA database does not know (the compiler
    /// never writes one; such a window is never on).
    pub fn time_zone(&self) -> Option<Tz> {
        self.timezone.parse().ok()
    }

    /// Whether the period is on at `at`: the next end after `at` comes before the next
    /// start after `at` (both strictly after `at`, to the minute). So the period includes
    /// its start minute and excludes its end minute; a window whose start and end fall on
    /// the same minute is never on, and so is one whose `from` or `to` never fires.
    pub fn is_on(&self, at: DateTime<Utc>) -> bool {
        match (self.next_end_after(at), self.next_start_after(at)) {
            (Some(end), Some(start)) => end < start,
            _ => false,
        }
    }

    /// The first start of the period strictly after `at` (within eight years).
    pub fn next_start_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.from.next_after_in(&self.time_zone()?, at)
    }

    /// The first end of the period strictly after `at` (within eight years).
    pub fn next_end_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.to.next_after_in(&self.time_zone()?, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pool;
    use chrono::{Datelike, Duration, TimeZone, Timelike, Weekday};
    use proptest::prelude::Strategy;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(name: &str, from: &str, to: &str, tz: &str, min_count: u32) -> ScaleWindow {
        ScaleWindow {
            name: name.into(),
            from: Schedule::parse(from).unwrap(),
            to: Schedule::parse(to).unwrap(),
            timezone: tz.into(),
            min_count,
        }
    }

    fn working_hours(tz: &str) -> ScaleWindow {
        window("working-hours", "0 8 * * 1-5", "0 19 * * 1-5", tz, 6)
    }

    /// Every quarter of an hour from `start` for `days` days: whether the window is on
    /// agrees with `expected` (given the local time).
    fn walk(w: &ScaleWindow, start: DateTime<Utc>, days: i64, expected: impl Fn(Local) -> bool) {
        let tz = w.time_zone().unwrap();
        let mut t = start;
        let mut on = 0;
        while t < start + Duration::days(days) {
            let local = t.with_timezone(&tz);
            let l = Local {
                weekday: local.weekday(),
                minutes: local.hour() * 60 + local.minute(),
            };
            assert_eq!(w.is_on(t), expected(l), "{} at {t} ({local})", w.name);
            on += usize::from(w.is_on(t));
            t += Duration::minutes(15);
        }
        assert!(on > 0, "{} was never on", w.name);
    }

    #[derive(Clone, Copy)]
    struct Local {
        weekday: Weekday,
        minutes: u32,
    }

    fn office(l: Local) -> bool {
        !matches!(l.weekday, Weekday::Sat | Weekday::Sun) && (8 * 60..19 * 60).contains(&l.minutes)
    }

    #[test]
    fn working_hours_across_a_week_in_moscow() {
        // Moscow is UTC+3 all year: on from 05:00 to 16:00 UTC on weekdays.
        let w = working_hours("Europe/Moscow");
        walk(&w, at("2026-06-05T00:00:00Z"), 8, office);
        assert!(w.is_on(at("2026-06-08T05:00:00Z"))); // Monday 08:00 MSK
        assert!(!w.is_on(at("2026-06-08T04:59:00Z")));
        assert!(w.is_on(at("2026-06-08T15:59:59Z")));
        assert!(!w.is_on(at("2026-06-08T16:00:00Z"))); // 19:00 MSK: over
        assert!(!w.is_on(at("2026-06-06T10:00:00Z"))); // Saturday
    }

    #[test]
    fn working_hours_across_weeks_with_a_dst_change_in_berlin() {
        let w = working_hours("Europe/Berlin");
        // Clocks go forward on Sunday 29 March 2026 and back on Sunday 25 October 2026.
        walk(&w, at("2026-03-25T00:00:00Z"), 8, office);
        walk(&w, at("2026-10-21T00:00:00Z"), 8, office);
        // Friday before the change (CET, UTC+1) and Monday after it (CEST, UTC+2).
        assert!(w.is_on(at("2026-03-27T07:00:00Z")));
        assert!(!w.is_on(at("2026-03-27T06:59:00Z")));
        assert!(w.is_on(at("2026-03-30T06:00:00Z")));
        assert!(!w.is_on(at("2026-03-30T05:59:00Z")));
        assert!(!w.is_on(at("2026-03-30T17:00:00Z")));
        assert!(w.is_on(at("2026-03-30T16:59:00Z")));
        // Back to CET in October.
        assert!(w.is_on(at("2026-10-23T06:00:00Z")));
        assert!(w.is_on(at("2026-10-26T07:00:00Z")));
        assert!(!w.is_on(at("2026-10-26T06:59:00Z")));
    }

    #[test]
    fn boundaries_in_the_hours_the_clocks_skip_or_repeat() {
        // A night window from 02:30 to 04:00, Europe/Berlin.
        let w = window("night", "30 2 * * *", "0 4 * * *", "Europe/Berlin", 1);
        // 29 March: 02:30 does not exist; the window starts when the clocks jump from
        // 02:00 CET to 03:00 CEST (01:00 UTC) and ends at 04:00 CEST (02:00 UTC).
        assert_eq!(
            w.next_start_after(at("2026-03-29T00:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        assert!(!w.is_on(at("2026-03-29T00:59:00Z")));
        assert!(w.is_on(at("2026-03-29T01:00:00Z")));
        assert!(w.is_on(at("2026-03-29T01:59:00Z")));
        assert!(!w.is_on(at("2026-03-29T02:00:00Z")));
        // 25 October: 02:30 happens twice (CEST, then CET); the window starts the first
        // time (00:30 UTC), does not start again an hour later, and ends at 04:00 CET.
        assert_eq!(
            w.next_start_after(at("2026-10-25T00:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            w.next_start_after(at("2026-10-25T00:30:00Z")),
            Some(at("2026-10-26T01:30:00Z"))
        );
        assert!(w.is_on(at("2026-10-25T00:30:00Z")));
        assert!(w.is_on(at("2026-10-25T01:45:00Z"))); // 02:45 CET, the second pass
        assert!(w.is_on(at("2026-10-25T02:59:00Z")));
        assert!(!w.is_on(at("2026-10-25T03:00:00Z"))); // 04:00 CET
    }

    #[test]
    fn windows_across_midnight_utc_by_default_and_unknown_zones() {
        let w = window("nightly", "0 22 * * *", "0 6 * * *", "UTC", 3);
        assert!(w.is_on(at("2026-01-01T23:00:00Z")));
        assert!(w.is_on(at("2026-01-02T05:59:00Z")));
        assert!(!w.is_on(at("2026-01-02T06:00:00Z")));
        assert!(!w.is_on(at("2026-01-02T12:00:00Z")));
        let bad = window("bad", "0 22 * * *", "0 6 * * *", "Mars/Olympus", 3);
        assert!(bad.time_zone().is_none());
        assert!(!bad.is_on(at("2026-01-01T23:00:00Z")));
        let never = window("never", "0 0 30 2 *", "0 6 * * *", "UTC", 3);
        assert!(!never.is_on(at("2026-01-01T23:00:00Z")));
        let empty = window("empty", "0 8 * * *", "0 8 * * *", "UTC", 3);
        assert!(!empty.is_on(at("2026-01-01T08:00:00Z")));
    }

    #[test]
    fn min_count_at_takes_the_largest_window_that_is_on() {
        let pool = Pool {
            max_count: 10,
            min_count: 2,
            idle_timeout_s: None,
            scale: vec![
                working_hours("Europe/Moscow"),
                window(
                    "friday-peak",
                    "0 12 * * fri",
                    "0 16 * * fri",
                    "Europe/Moscow",
                    8,
                ),
                window("weekend", "0 0 * * sat", "0 0 * * mon", "Europe/Moscow", 0),
            ],
        };
        // Wednesday 3 June 2026, 03:00 MSK: nothing on.
        assert_eq!(pool.min_count_at(at("2026-06-03T00:00:00Z")), 2);
        // Wednesday noon MSK: working hours.
        assert_eq!(pool.min_count_at(at("2026-06-03T09:00:00Z")), 6);
        // Friday 13:00 MSK: working hours and the Friday peak; the larger wins.
        assert_eq!(pool.min_count_at(at("2026-06-05T10:00:00Z")), 8);
        // Friday 17:00 MSK: the peak is over.
        assert_eq!(pool.min_count_at(at("2026-06-05T14:00:00Z")), 6);
        // Saturday: the weekend window lowers the pool below its own min_count.
        assert_eq!(pool.min_count_at(at("2026-06-06T12:00:00Z")), 0);
        // Monday 01:00 MSK: the weekend is over, working hours not yet on.
        assert_eq!(pool.min_count_at(at("2026-06-07T22:00:00Z")), 2);
        let plain = Pool {
            scale: Vec::new(),
            ..pool
        };
        assert_eq!(plain.min_count_at(at("2026-06-03T09:00:00Z")), 2);
    }

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Berlin",
        "Europe/Moscow",
        "America/New_York",
        "America/Sao_Paulo",
        "Australia/Sydney",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        // A daily window between two whole hours away from the night hours in which clocks
        // change is on exactly while the local clock is between them, in any zone, at any
        // time of any season; a window across midnight the other way round.
        #[test]
        fn daily_windows_follow_the_local_clock(
            zone in proptest::sample::select(ZONES),
            (a, b) in (5u32..24, 5u32..24).prop_filter("distinct", |(a, b)| a != b),
            minute in 0u32..60,
            secs in 1_577_836_800i64..2_082_758_400, // 2020–2036
        ) {
            let w = window("w", &format!("{minute} {a} * * *"), &format!("{minute} {b} * * *"), zone, 1);
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            let local = t.with_timezone(&w.time_zone().unwrap());
            let now = local.hour() * 60 + local.minute();
            let (start, end) = (a * 60 + minute, b * 60 + minute);
            let expected = if start < end {
                (start..end).contains(&now)
            } else {
                now >= start || now < end
            };
            proptest::prop_assert_eq!(w.is_on(t), expected, "{} {}", local, zone);
        }

        // Whatever the schedules and the zone, the next start and end come after the given
        // time, and asking never panics.
        #[test]
        fn next_times_come_after(
            zone in proptest::sample::select(chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect::<Vec<_>>()),
            m in 0u32..60, h in 0u32..24, dow in 0u32..7,
            secs in 0i64..4_102_444_800, // 1970–2100
        ) {
            let w = window("w", &format!("{m} {h} * * *"), &format!("{m} * * * {dow}"), zone, 1);
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            for next in [w.next_start_after(t), w.next_end_after(t)] {
                let next = next.expect("a daily or weekly schedule fires");
                proptest::prop_assert!(next > t && next - t <= Duration::days(8), "{t} -> {next} in {zone}");
            }
            let _ = w.is_on(t);
        }
    }

    #[test]
    fn next_after_in_utc_is_next_after() {
        let s = Schedule::parse("*/7 3-5 * * *").unwrap();
        let mut t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap();
        for _ in 0..50 {
            let n = s.next_after(t);
            assert_eq!(s.next_after_in(&Utc, t), n);
            t = n.unwrap();
        }
    }
}
