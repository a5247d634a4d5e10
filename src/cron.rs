//! Cron expressions, evaluated in a time zone.
//!
//! Five fields as in crontab(5) (`minute hour day-of-month month day-of-week`), or six with a
//! leading seconds field (`second minute hour day-of-month month day-of-week`), or one of the
//! aliases `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`.
//! Each field takes `*`, a value, a range `a-b`, a step `*/n` or `a-b/n` and comma lists;
//! months and weekdays also take names (`jan`, `mon`); weekday 0 and 7 are both Sunday. As in
//! Vixie cron, when both day-of-month and day-of-week are restricted, a day matching either
//! one fires.
//!
//! Daylight-saving time: a wall-clock time that does not exist (skipped by a spring-forward
//! change) fires at the same offset after the change, as `compatible` disambiguation does; a
//! wall-clock time that occurs twice (fall back) fires once, at its first occurrence.
//!
//! Layer: foundation. Uses: nothing of the crate. Used by: config, schedule.

use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A parsed cron expression.
#[derive(Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    seconds: u64, // bits 0..59
    minutes: u64, // bits 0..59
    hours: u32,   // bits 0..23
    days: u32,    // bits 1..31
    months: u16,  // bits 1..12
    weekdays: u8, // bits 0..6, 0 = Sunday
    dom_star: bool,
    dow_star: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// A cron expression that does not parse; says which field and how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "unknown cron alias {0:?}; use @yearly, @monthly, @weekly, @daily or @hourly, or five fields (minute hour day month weekday)"
    )]
    UnknownAlias(String),
    #[error(
        "cron expression {text:?} has {fields} fields; it needs five (minute hour day month weekday), or six with seconds first"
    )]
    FieldCount { text: String, fields: usize },
    #[error("{what} field: {value:?} is not a number{hint}")]
    NotANumber {
        what: &'static str,
        value: String,
        hint: String,
    },
    #[error("{what} field: {n} is outside {min}-{max}")]
    OutOfRange {
        what: &'static str,
        n: u32,
        min: u32,
        max: u32,
    },
    #[error("{what} field {text:?}: empty list item")]
    EmptyItem { what: &'static str, text: String },
    #[error("{what} field: step {step:?} is not a number")]
    BadStep { what: &'static str, step: String },
    #[error("{what} field: a step of 0 never fires")]
    ZeroStep { what: &'static str },
    #[error("{what} field: range {range:?} runs backwards; write it low-high")]
    Backwards { what: &'static str, range: String },
}

/// A time zone name that is not known here.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown time zone {name:?} ({source}); use an IANA name such as Europe/Paris, UTC, or local"
)]
pub struct TimeZoneError {
    pub name: String,
    pub source: jiff::Error,
}

impl std::str::FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            other if other.starts_with('@') => {
                return Err(CronError::UnknownAlias(text.to_string()));
            }
            _ => text.to_string(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(CronError::FieldCount {
                    text: text.to_string(),
                    fields: n,
                });
            }
        };
        let seconds = field(sec, "second", 0, 59, &[])?;
        let minutes = field(rest[0], "minute", 0, 59, &[])?;
        let hours = field(rest[1], "hour", 0, 23, &[])?;
        let days = field(rest[2], "day-of-month", 1, 31, &[])?;
        let months = field(rest[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(rest[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            text: text.to_string(),
            seconds,
            minutes,
            hours: u32::try_from(hours).unwrap_or(0),
            days: u32::try_from(days).unwrap_or(0),
            months: u16::try_from(months).unwrap_or(0),
            weekdays: u8::try_from(weekdays).unwrap_or(0),
            dom_star: rest[2] == "*" || rest[2] == "?",
            dow_star: rest[4] == "*" || rest[4] == "?",
        })
    }
}

/// Parses one field into a bit set of the values it allows.
fn field(
    text: &str,
    what: &'static str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<u64, CronError> {
    let value = |v: &str| -> Result<u32, CronError> {
        let lower = v.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names start at 1, weekday names at 0.
            return Ok(u32::try_from(i).unwrap_or(0) + min);
        }
        let n: u32 = v.parse().map_err(|_| CronError::NotANumber {
            what,
            value: v.to_string(),
            hint: name_hint(names),
        })?;
        if n < min || n > max {
            return Err(CronError::OutOfRange { what, n, min, max });
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        if part.is_empty() {
            return Err(CronError::EmptyItem {
                what,
                text: text.to_string(),
            });
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| CronError::BadStep {
                    what,
                    step: s.to_string(),
                })?;
                if step == 0 {
                    return Err(CronError::ZeroStep { what });
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(CronError::Backwards {
                    what,
                    range: range.to_string(),
                });
            }
            (a, b)
        } else {
            let v = value(range)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if part.contains('/') { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn name_hint(names: &[&str]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" or a name ({})", names.join(", "))
    }
}

impl Cron {
    fn day_matches(&self, date: Date) -> bool {
        let month = u32::try_from(date.month()).unwrap_or(0);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let dom = self.days & (1 << u32::try_from(date.day()).unwrap_or(0)) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.dom_star, self.dow_star) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first time strictly after `after` at which this expression fires in `tz`, or `None`
    /// when it never fires within the next five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone());
        let mut date = start.date();
        for _ in 0..(366 * 5) {
            if self.day_matches(date)
                && let Some(t) = self.first_in_day(date, &start, tz)
            {
                return Some(t);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    fn first_in_day(&self, date: Date, after: &Zoned, tz: &TimeZone) -> Option<Timestamp> {
        for h in 0..24i8 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            for m in 0..60i8 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                for s in 0..60i8 {
                    if self.seconds & (1 << s) == 0 {
                        continue;
                    }
                    let Ok(time) = Time::new(h, m, s, 0) else {
                        continue;
                    };
                    let civil = DateTime::from_parts(date, time);
                    // `compatible`: a skipped time moves forward by the gap, a repeated time
                    // takes its first occurrence.
                    let Ok(z) = tz.to_ambiguous_zoned(civil).compatible() else {
                        continue;
                    };
                    if z.timestamp() > after.timestamp() {
                        return Some(z.timestamp());
                    }
                }
            }
        }
        None
    }

    /// The fire times in `(after, until]`, at most `limit` of them.
    pub fn fires_between(
        &self,
        after: Timestamp,
        until: Timestamp,
        tz: &TimeZone,
        limit: usize,
    ) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t, tz) {
                Some(n) if n <= until => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}

/// Parses a time zone name: an IANA name (`Europe/Paris`), `UTC`, or `local` (the system's).
pub fn parse_time_zone(name: &str) -> Result<TimeZone, TimeZoneError> {
    match name {
        "local" | "" => Ok(TimeZone::system()),
        "UTC" | "utc" | "Z" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|source| TimeZoneError {
            name: name.to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let c: Cron = expr.parse().unwrap();
        let tz = parse_time_zone(tz).unwrap();
        c.next_after(ts(after), &tz)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn five_fields() {
        assert_eq!(
            next("30 2 * * *", "2026-01-01T00:00:00Z", "UTC"),
            "2026-01-01T02:30:00Z"
        );
        assert_eq!(
            next("30 2 * * *", "2026-01-01T02:30:00Z", "UTC"),
            "2026-01-02T02:30:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T00:07:00Z", "UTC"),
            "2026-01-01T00:15:00Z"
        );
    }

    #[test]
    fn six_fields_with_seconds() {
        assert_eq!(
            next("*/5 * * * * *", "2026-01-01T00:00:07Z", "UTC"),
            "2026-01-01T00:00:10Z"
        );
    }

    #[test]
    fn names_aliases_and_sunday_7() {
        // 2026-01-01 is a Thursday.
        assert_eq!(
            next("0 3 * * sun", "2026-01-01T00:00:00Z", "UTC"),
            "2026-01-04T03:00:00Z"
        );
        assert_eq!(
            next("0 3 * * 7", "2026-01-01T00:00:00Z", "UTC"),
            "2026-01-04T03:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2026-01-01T00:00:00Z", "UTC"),
            "2026-01-04T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 feb-mar *", "2026-01-05T00:00:00Z", "UTC"),
            "2026-02-01T00:00:00Z"
        );
    }

    #[test]
    fn dom_or_dow_when_both_restricted() {
        // The 15th, or any Monday: the first after Thu 1 Jan is Mon 5 Jan.
        assert_eq!(
            next("0 0 15 * mon", "2026-01-01T00:00:00Z", "UTC"),
            "2026-01-05T00:00:00Z"
        );
    }

    #[test]
    fn time_zone_and_dst() {
        // 02:00 local in Paris is 01:00 UTC in winter.
        assert_eq!(
            next("0 2 * * *", "2026-01-10T00:00:00Z", "Europe/Paris"),
            "2026-01-10T01:00:00Z"
        );
        // 29 March 2026: 02:30 does not exist in Paris; it fires at 03:30 CEST = 01:30 UTC.
        assert_eq!(
            next("30 2 * * *", "2026-03-28T23:00:00Z", "Europe/Paris"),
            "2026-03-29T01:30:00Z"
        );
        // 25 October 2026: 02:30 happens twice; it fires once, at the first (00:30 UTC).
        let c: Cron = "30 2 * * *".parse().unwrap();
        let tz = parse_time_zone("Europe/Paris").unwrap();
        let fires = c.fires_between(
            ts("2026-10-24T22:00:00Z"),
            ts("2026-10-25T22:00:00Z"),
            &tz,
            10,
        );
        assert_eq!(fires, vec![ts("2026-10-25T00:30:00Z")]);
    }

    #[test]
    fn impossible_date_never_fires() {
        let c: Cron = "0 0 30 2 *".parse().unwrap();
        assert_eq!(
            c.next_after(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = "61 * * * *".parse::<Cron>().unwrap_err().to_string();
        assert!(e.contains("minute field: 61 is outside 0-59"), "{e}");
        let e = "* * *".parse::<Cron>().unwrap_err().to_string();
        assert!(e.contains("has 3 fields"), "{e}");
        let e = "0 0 * * funday".parse::<Cron>().unwrap_err().to_string();
        assert!(e.contains("day-of-week") && e.contains("mon"), "{e}");
        let e = "*/0 * * * *".parse::<Cron>().unwrap_err().to_string();
        assert!(e.contains("step of 0"), "{e}");
        let e = "5-1 * * * *".parse::<Cron>().unwrap_err().to_string();
        assert!(e.contains("backwards"), "{e}");
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn fires_between_is_bounded() {
        let c: Cron = "* * * * * *".parse().unwrap();
        let v = c.fires_between(
            ts("2026-01-01T00:00:00Z"),
            ts("2026-01-02T00:00:00Z"),
            &TimeZone::UTC,
            3,
        );
        assert_eq!(v.len(), 3);
    }
}
