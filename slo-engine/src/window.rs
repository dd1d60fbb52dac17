//! SLO time windows: rolling (the last 30 days) or calendar-aligned (this
//! month, this week, in a time zone), and the budgeting method.

use std::time::Duration;

use chrono::{Datelike, Days, Months, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

const DAY: u64 = 86_400;

/// The unit of a calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    /// `d`
    Day,
    /// `w`
    Week,
    /// `M`
    Month,
    /// `Q`
    Quarter,
    /// `Y`
    Year,
}

/// A calendar window: periods of `count` units from `start` in `tz`.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// Unit.
    pub unit: CalendarUnit,
    /// Units per period.
    pub count: u32,
    /// Local start of the first period (periods repeat forwards and backwards).
    pub start: NaiveDateTime,
    /// Time zone of `start` and of the period boundaries.
    pub tz: Tz,
}

/// An SLO's window.
#[derive(Debug, Clone, PartialEq)]
pub enum SloWindow {
    /// The last `Duration` before the evaluation time.
    Rolling(Duration),
    /// The calendar period containing the evaluation time, up to that time.
    Calendar(Calendar),
}

/// How the error budget is counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budgeting {
    /// Every event counts.
    Occurrences,
    /// The window is cut into slices; a slice with events is good when its
    /// share of good events is at least `slice_target`; the objective is a
    /// share of good slices. Slices without events do not count.
    Timeslices {
        /// Slice length (whole minutes).
        slice: Duration,
        /// Share of good events that makes a slice good.
        slice_target: f64,
    },
}

impl Budgeting {
    /// `Occurrences` or `Timeslices`.
    pub fn name(&self) -> &'static str {
        match self {
            Budgeting::Occurrences => "Occurrences",
            Budgeting::Timeslices { .. } => "Timeslices",
        }
    }
}

/// Parses an OpenSLO calendar duration (`1M`, `1w`, `1d`, `1Q`, `1Y`).
pub fn parse_calendar_duration(text: &str) -> Result<(CalendarUnit, u32), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: use d, w, M, Q or Y (e.g. 1M)"))?;
    let (n, unit) = t.split_at(split);
    let count: u32 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: the count must be a whole number above zero"))?;
    let unit = match unit {
        "d" => CalendarUnit::Day,
        "w" => CalendarUnit::Week,
        "M" => CalendarUnit::Month,
        "Q" => CalendarUnit::Quarter,
        "Y" => CalendarUnit::Year,
        other => {
            return Err(format!(
                "{other:?} is not a calendar unit: use d, w, M, Q or Y (e.g. 1M)"
            ));
        }
    };
    Ok((unit, count))
}

impl Calendar {
    /// The nominal period length (a month is 30 days, a quarter 91, a year 365):
    /// used to rescale alert tiers.
    pub fn nominal(&self) -> Duration {
        let days = match self.unit {
            CalendarUnit::Day => 1,
            CalendarUnit::Week => 7,
            CalendarUnit::Month => 30,
            CalendarUnit::Quarter => 91,
            CalendarUnit::Year => 365,
        };
        Duration::from_secs(days * DAY * self.count as u64)
    }

    /// Local start of period `k` (0 is the one starting at `start`).
    fn local_start(&self, k: i64) -> Option<NaiveDateTime> {
        let n = k.checked_mul(self.count as i64)?;
        let months = |m: i64| -> Option<NaiveDateTime> {
            if m >= 0 {
                self.start
                    .checked_add_months(Months::new(u32::try_from(m).ok()?))
            } else {
                self.start
                    .checked_sub_months(Months::new(u32::try_from(-m).ok()?))
            }
        };
        let days = |d: i64| -> Option<NaiveDateTime> {
            if d >= 0 {
                self.start.checked_add_days(Days::new(d as u64))
            } else {
                self.start.checked_sub_days(Days::new((-d) as u64))
            }
        };
        match self.unit {
            CalendarUnit::Day => days(n),
            CalendarUnit::Week => days(n.checked_mul(7)?),
            CalendarUnit::Month => months(n),
            CalendarUnit::Quarter => months(n.checked_mul(3)?),
            CalendarUnit::Year => months(n.checked_mul(12)?),
        }
    }

    /// Start of period `k`, ns since the epoch. A local time that does not
    /// exist (a daylight-saving gap) moves to the first instant after it.
    fn start_ns(&self, k: i64) -> Option<i64> {
        let mut local = self.local_start(k)?;
        for _ in 0..4 {
            if let Some(t) = self.tz.from_local_datetime(&local).earliest() {
                return t.timestamp_nanos_opt();
            }
            local += chrono::Duration::minutes(30);
        }
        None
    }

    /// The period containing `at_ns`: `[start, end)`, ns since the epoch.
    pub fn period(&self, at_ns: i64) -> (i64, i64) {
        let origin = self.start_ns(0).unwrap_or(0);
        let nominal = self.nominal().as_nanos() as i64;
        let mut k = (at_ns - origin).div_euclid(nominal.max(1));
        // The estimate is off by at most a period or two (months differ in length).
        for _ in 0..8 {
            match (self.start_ns(k), self.start_ns(k + 1)) {
                (Some(s), _) if s > at_ns => k -= 1,
                (_, Some(e)) if e <= at_ns => k += 1,
                (Some(s), Some(e)) => return (s, e),
                _ => break,
            }
        }
        // Out of chrono's range: fall back to fixed-length periods.
        let s = origin + (at_ns - origin).div_euclid(nominal.max(1)) * nominal;
        (s, s + nominal)
    }

    /// `calendar 1M (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        let unit = match self.unit {
            CalendarUnit::Day => "d",
            CalendarUnit::Week => "w",
            CalendarUnit::Month => "M",
            CalendarUnit::Quarter => "Q",
            CalendarUnit::Year => "Y",
        };
        format!("calendar {}{unit} ({})", self.count, self.tz.name())
    }
}

/// Parses an OpenSLO `startTime` (`2022-01-01 00:00:00`, or with `T`).
pub fn parse_start_time(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(d);
        }
        if f == "%Y-%m-%d"
            && let Ok(d) = chrono::NaiveDate::parse_from_str(t, f)
        {
            return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
        }
    }
    Err(format!(
        "{text:?} is not a start time: use YYYY-MM-DD HH:MM:SS (local to timeZone)"
    ))
}

impl SloWindow {
    /// `[from, at)`: the part of the window that counts at `at_ns`.
    pub fn range_at(&self, at_ns: i64) -> (i64, i64) {
        match self {
            SloWindow::Rolling(d) => (at_ns - d.as_nanos() as i64, at_ns),
            SloWindow::Calendar(c) => (c.period(at_ns).0, at_ns),
        }
    }

    /// The length the budget is spread over at `at_ns`: the rolling length,
    /// or the whole calendar period containing `at_ns`.
    pub fn period_at(&self, at_ns: i64) -> Duration {
        match self {
            SloWindow::Rolling(d) => *d,
            SloWindow::Calendar(c) => {
                let (s, e) = c.period(at_ns);
                Duration::from_nanos((e - s).max(0) as u64)
            }
        }
    }

    /// `rolling 30d` or `calendar 1M (UTC)`.
    pub fn describe(&self) -> String {
        match self {
            SloWindow::Rolling(d) => format!("rolling {}", humantime::format_duration(*d)),
            SloWindow::Calendar(c) => c.describe(),
        }
    }

    /// Day of the week a weekly calendar starts on, for display.
    pub fn weekday(&self) -> Option<chrono::Weekday> {
        match self {
            SloWindow::Calendar(c) if c.unit == CalendarUnit::Week => Some(c.start.weekday()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(tz: Tz, y: i32, m: u32, d: u32, h: u32) -> i64 {
        tz.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn cal(unit: CalendarUnit, start: &str, tz: Tz) -> Calendar {
        Calendar {
            unit,
            count: 1,
            start: parse_start_time(start).unwrap(),
            tz,
        }
    }

    #[test]
    fn months_follow_the_calendar_in_the_time_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let c = cal(CalendarUnit::Month, "2024-01-01 00:00:00", berlin);
        // 15 March 2026, noon in Berlin: March, from local midnight on the 1st.
        let at = ns(berlin, 2026, 3, 15, 12);
        let (s, e) = c.period(at);
        assert_eq!(s, ns(berlin, 2026, 3, 1, 0));
        assert_eq!(e, ns(berlin, 2026, 4, 1, 0));
        // March has 31 days less the hour lost to daylight saving time.
        assert_eq!((e - s) / 3_600_000_000_000, 31 * 24 - 1);
        // Before the start time, periods repeat backwards.
        let (s, _) = c.period(ns(berlin, 2023, 7, 4, 0));
        assert_eq!(s, ns(berlin, 2023, 7, 1, 0));
        // The first instant of a period belongs to it.
        let (s, _) = c.period(ns(berlin, 2026, 4, 1, 0));
        assert_eq!(s, ns(berlin, 2026, 4, 1, 0));
    }

    #[test]
    fn weeks_start_on_the_start_times_weekday() {
        let utc: Tz = "UTC".parse().unwrap();
        // 2024-01-01 was a Monday.
        let c = cal(CalendarUnit::Week, "2024-01-01", utc);
        let (s, e) = c.period(ns(utc, 2026, 12, 2, 1)); // a Wednesday
        assert_eq!(s, ns(utc, 2026, 11, 30, 0));
        assert_eq!(e, ns(utc, 2026, 12, 7, 0));
        assert_eq!(SloWindow::Calendar(c).weekday(), Some(chrono::Weekday::Mon));
    }

    #[test]
    fn calendar_durations_parse_with_clear_errors() {
        assert_eq!(
            parse_calendar_duration("1M").unwrap(),
            (CalendarUnit::Month, 1)
        );
        assert_eq!(
            parse_calendar_duration("2w").unwrap(),
            (CalendarUnit::Week, 2)
        );
        assert!(parse_calendar_duration("30d").is_ok());
        assert!(
            parse_calendar_duration("1h")
                .unwrap_err()
                .contains("not a calendar unit")
        );
        assert!(
            parse_calendar_duration("M")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(parse_start_time("yesterday").is_err());
    }
}
