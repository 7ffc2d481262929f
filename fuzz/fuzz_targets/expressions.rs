//! Fuzz target `expressions`: arbitrary text through the two small languages inside Fly
//! strings — UglyFox policy conditions (`fly_types::condition`) and cron schedules
//! (`fly_ir::Schedule`).
//!
//! * neither parser panics, and every error range lies within the text on char boundaries;
//! * a condition that parses evaluates without panicking;
//! * a schedule that parses gives a next run strictly after the given time (or none), also
//!   read in a time zone (as scale windows read it) around both daylight saving changes.
#![no_main]

use chrono::{TimeZone, Utc};
use fly_types::ir::{Metric, Metrics, RunnerStateOrPool};
use libfuzzer_sys::fuzz_target;

/// A runner with every numeric metric set to the same value and no state.
struct Flat(f64);

impl Metrics for Flat {
    fn number(&self, _metric: Metric) -> Option<f64> {
        Some(self.0)
    }

    fn states(&self) -> &[RunnerStateOrPool] {
        &[]
    }
}

fn check_range(text: &str, start: usize, end: usize, what: &str) {
    assert!(
        start <= end && end <= text.len(),
        "{what} error {start}..{end} outside the text (len {})",
        text.len()
    );
    assert!(
        text.is_char_boundary(start) && text.is_char_boundary(end),
        "{what} error {start}..{end} not on char boundaries"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fly_types::condition::parse_condition(text) {
        Ok(condition) => {
            for v in [0.0, -1.0, 1e300, f64::NAN] {
                let _ = condition.evaluate(&Flat(v));
            }
        }
        Err(e) => check_range(text, e.start, e.end, "condition"),
    }
    match fly_types::ir::Schedule::parse(text) {
        Ok(schedule) => {
            let t = Utc.with_ymd_and_hms(2026, 12, 2, 23, 59, 30).unwrap();
            if let Some(next) = schedule.next_after(t) {
                assert!(next > t, "next run {next} not after {t}");
            }
            // Europe/Berlin, just before the clocks go forward and back in 2026.
            let berlin = fly_types::ir::chrono_tz::Europe::Berlin;
            for t in [
                Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap(),
            ] {
                if let Some(next) = schedule.next_after_in(&berlin, t) {
                    assert!(next > t, "next run {next} in Berlin not after {t}");
                }
            }
        }
        Err(e) => check_range(text, e.start, e.end, "schedule"),
    }
});
