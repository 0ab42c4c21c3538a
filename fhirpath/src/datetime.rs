//! Partial-precision Date / DateTime / Time values.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use std::cmp::Ordering;
use std::fmt;

/// Precision of a date/time value. Seconds and milliseconds compare as one precision
/// (a decimal number of seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

/// A FHIRPath Date (`@2014`, `@2014-01`, `@2014-01-25`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub precision: Precision,
}

/// A FHIRPath Time (`@T14`, `@T14:30`, `@T14:30:15.123`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Fraction of a second in nanoseconds.
    pub nanos: u32,
    /// Number of fraction digits written (for output).
    pub frac_digits: u8,
    pub precision: Precision,
}

/// A FHIRPath DateTime: a date, optional time and optional timezone offset (minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub time: Option<Time>,
    pub tz_minutes: Option<i16>,
    pub precision: Precision,
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

impl Date {
    /// Parse `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        if !s.is_ascii() {
            return None;
        }
        let b = s.as_bytes();
        if b.len() < 4 {
            return None;
        }
        let year = num(&s[..4])? as i32;
        if b.len() == 4 {
            return Some(Date { year, month: 1, day: 1, precision: Precision::Year });
        }
        if b.len() != 7 && b.len() != 10 || b[4] != b'-' {
            return None;
        }
        let month = num(&s[5..7])?;
        if !(1..=12).contains(&month) {
            return None;
        }
        if b.len() == 7 {
            return Some(Date { year, month: month as u8, day: 1, precision: Precision::Month });
        }
        if b[7] != b'-' {
            return None;
        }
        let day = num(&s[8..10])?;
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month: month as u8, day: day as u8, precision: Precision::Day })
    }

    pub(crate) fn naive(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month as u32, self.day as u32).unwrap_or_default()
    }

    pub(crate) fn components(&self) -> [i64; 3] {
        [self.year as i64, self.month as i64, self.day as i64]
    }

    /// Add `n` units (Year..Day; finer units are truncated to whole days by the caller).
    pub(crate) fn add(&self, unit: Precision, n: i64) -> Option<Date> {
        let mut d = *self;
        match unit {
            Precision::Year => {
                d.year = i32::try_from(d.year as i64 + n).ok()?;
                let dim = days_in_month(d.year, d.month as u32);
                d.day = d.day.min(dim as u8);
            }
            Precision::Month => {
                let total = d.year as i64 * 12 + (d.month as i64 - 1) + n;
                d.year = i32::try_from(total.div_euclid(12)).ok()?;
                d.month = (total.rem_euclid(12) + 1) as u8;
                let dim = days_in_month(d.year, d.month as u32);
                d.day = d.day.min(dim as u8);
            }
            _ => {
                let nd = self.naive().checked_add_signed(chrono::Duration::try_days(n)?)?;
                d.year = nd.year();
                d.month = nd.month() as u8;
                d.day = nd.day() as u8;
            }
        }
        if !(1..=9999).contains(&d.year) {
            return None;
        }
        Some(d)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if self.precision >= Precision::Month {
            write!(f, "-{:02}", self.month)?;
        }
        if self.precision >= Precision::Day {
            write!(f, "-{:02}", self.day)?;
        }
        Ok(())
    }
}

impl Time {
    /// Parse `hh`, `hh:mm`, `hh:mm:ss`, `hh:mm:ss.fff` (no timezone).
    pub fn parse(s: &str) -> Option<Time> {
        if !s.is_ascii() {
            return None;
        }
        let b = s.as_bytes();
        if b.len() < 2 {
            return None;
        }
        let hour = num(&s[..2])?;
        if hour > 23 {
            return None;
        }
        let mut t = Time { hour: hour as u8, minute: 0, second: 0, nanos: 0, frac_digits: 0, precision: Precision::Hour };
        if b.len() == 2 {
            return Some(t);
        }
        if b[2] != b':' || b.len() < 5 {
            return None;
        }
        let minute = num(&s[3..5])?;
        if minute > 59 {
            return None;
        }
        t.minute = minute as u8;
        t.precision = Precision::Minute;
        if b.len() == 5 {
            return Some(t);
        }
        if b[5] != b':' || b.len() < 8 {
            return None;
        }
        let second = num(&s[6..8])?;
        if second > 59 {
            return None;
        }
        t.second = second as u8;
        t.precision = Precision::Second;
        if b.len() == 8 {
            return Some(t);
        }
        if b[8] != b'.' || b.len() < 10 {
            return None;
        }
        let frac = &s[9..];
        num(frac)?;
        let digits = frac.len().min(9);
        let mut nanos: u32 = frac[..digits].parse().ok()?;
        for _ in digits..9 {
            nanos *= 10;
        }
        t.nanos = nanos;
        t.frac_digits = frac.len().min(9) as u8;
        t.precision = Precision::Millisecond;
        Some(t)
    }

    pub(crate) fn naive(&self) -> NaiveTime {
        NaiveTime::from_hms_nano_opt(self.hour as u32, self.minute as u32, self.second as u32, self.nanos)
            .unwrap_or_default()
    }

    fn from_naive(n: NaiveTime, like: &Time) -> Time {
        Time {
            hour: n.hour() as u8,
            minute: n.minute() as u8,
            second: n.second() as u8,
            nanos: n.nanosecond(),
            frac_digits: like.frac_digits,
            precision: like.precision,
        }
    }

    /// Milliseconds-level comparable components: [hour, minute, second*1e9+nanos].
    pub(crate) fn components(&self) -> [i64; 3] {
        [self.hour as i64, self.minute as i64, self.second as i64 * 1_000_000_000 + self.nanos as i64]
    }

    /// Add a duration in nanoseconds (wrapping around midnight).
    pub(crate) fn add_nanos(&self, n: i128) -> Time {
        let day: i128 = 86_400 * 1_000_000_000;
        let cur = (self.hour as i128 * 3600 + self.minute as i128 * 60 + self.second as i128) * 1_000_000_000
            + self.nanos as i128;
        let v = (cur + n).rem_euclid(day);
        let secs = (v / 1_000_000_000) as u32;
        let nt = NaiveTime::from_num_seconds_from_midnight_opt(secs, (v % 1_000_000_000) as u32).unwrap_or_default();
        Time::from_naive(nt, self)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.hour)?;
        if self.precision >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if self.precision >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if self.precision >= Precision::Millisecond {
            let digits = if self.frac_digits == 0 { 3 } else { self.frac_digits as usize };
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", &frac[..digits])?;
        }
        Ok(())
    }
}

fn parse_tz(s: &str) -> Option<i16> {
    if s == "Z" {
        return Some(0);
    }
    let b = s.as_bytes();
    if b.len() != 6 || (b[0] != b'+' && b[0] != b'-') || b[3] != b':' {
        return None;
    }
    let h = num(&s[1..3])? as i16;
    let m = num(&s[4..6])? as i16;
    if h > 14 || m > 59 {
        return None;
    }
    let v = h * 60 + m;
    Some(if b[0] == b'-' { -v } else { v })
}

impl DateTime {
    /// Parse an ISO 8601 / FHIR dateTime of any precision: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`,
    /// `YYYY-MM-DDThh`, `YYYY-MM-DDThh:mm(:ss(.fff))(Z|+hh:mm)`; a trailing `T` is accepted.
    pub fn parse(s: &str) -> Option<DateTime> {
        if !s.is_ascii() {
            return None;
        }
        let (dpart, rest) = match s.find('T') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let date = Date::parse(dpart)?;
        let mut dt = DateTime { date, time: None, tz_minutes: None, precision: date.precision };
        let Some(rest) = rest else { return Some(dt) };
        if rest.is_empty() {
            return Some(dt);
        }
        if date.precision != Precision::Day {
            return None;
        }
        let tz_start = rest.find(['Z', '+', '-']);
        let (tpart, tz) = match tz_start {
            Some(i) => (&rest[..i], Some(&rest[i..])),
            None => (rest, None),
        };
        let t = Time::parse(tpart)?;
        dt.time = Some(t);
        dt.precision = t.precision;
        if let Some(tz) = tz {
            dt.tz_minutes = Some(parse_tz(tz)?);
        }
        Some(dt)
    }

    /// A DateTime from a Date (same precision).
    pub fn from_date(d: Date) -> DateTime {
        DateTime { date: d, time: None, tz_minutes: None, precision: d.precision }
    }

    /// The current time (local offset), millisecond precision.
    pub fn now() -> DateTime {
        let now = chrono::Local::now();
        let off = now.offset().local_minus_utc() / 60;
        let n = now.naive_local();
        let mut dt = DateTime::from_naive(n, Precision::Millisecond, Some(off as i16));
        if let Some(t) = dt.time.as_mut() {
            t.nanos = (t.nanos / 1_000_000) * 1_000_000;
            t.frac_digits = 3;
        }
        dt
    }

    pub(crate) fn from_naive(n: NaiveDateTime, precision: Precision, tz: Option<i16>) -> DateTime {
        let date = Date {
            year: n.year(),
            month: n.month() as u8,
            day: n.day() as u8,
            precision: precision.min(Precision::Day),
        };
        let time = if precision > Precision::Day {
            Some(Time {
                hour: n.hour() as u8,
                minute: n.minute() as u8,
                second: n.second() as u8,
                nanos: n.nanosecond(),
                frac_digits: if precision == Precision::Millisecond { 3 } else { 0 },
                precision,
            })
        } else {
            None
        };
        DateTime { date, time, tz_minutes: tz, precision }
    }

    pub(crate) fn naive(&self) -> NaiveDateTime {
        let t = self.time.map(|t| t.naive()).unwrap_or_default();
        self.date.naive().and_time(t)
    }

    /// Components normalized to UTC if a timezone is present (only meaningful when the precision
    /// includes time): [year, month, day, hour, minute, second*1e9+nanos].
    pub(crate) fn components(&self, normalize: bool) -> [i64; 6] {
        if normalize && self.time.is_some()
            && let Some(tz) = self.tz_minutes {
                let n = self.naive() - chrono::Duration::minutes(tz as i64);
                return [
                    n.year() as i64,
                    n.month() as i64,
                    n.day() as i64,
                    n.hour() as i64,
                    n.minute() as i64,
                    n.second() as i64 * 1_000_000_000 + n.nanosecond() as i64,
                ];
            }
        let d = self.date.components();
        let t = self.time.map(|t| t.components()).unwrap_or([0, 0, 0]);
        [d[0], d[1], d[2], t[0], t[1], t[2]]
    }

    /// Add `n` of calendar unit `unit`.
    pub(crate) fn add(&self, unit: Precision, n: i64, nanos_total: i128) -> Option<DateTime> {
        match unit {
            Precision::Year | Precision::Month => {
                let d = self.date.add(unit, n)?;
                let mut r = *self;
                r.date = Date { precision: self.date.precision, ..d };
                Some(r)
            }
            _ => {
                if self.time.is_none() {
                    // Only date precision: whole days.
                    let days = (nanos_total / (86_400 * 1_000_000_000)) as i64;
                    let d = self.date.add(Precision::Day, days)?;
                    let mut r = *self;
                    r.date = Date { precision: self.date.precision, ..d };
                    return Some(r);
                }
                let n2 = self.naive().checked_add_signed(chrono::Duration::nanoseconds(i64::try_from(nanos_total).ok()?))?;
                if !(1..=9999).contains(&n2.year()) {
                    return None;
                }
                let mut r = DateTime::from_naive(n2, self.precision, self.tz_minutes);
                if let (Some(t), Some(ot)) = (r.time.as_mut(), self.time) {
                    t.frac_digits = ot.frac_digits;
                }
                Some(r)
            }
        }
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date)?;
        if let Some(t) = &self.time {
            write!(f, "T{}", t)?;
            if let Some(tz) = self.tz_minutes {
                if tz == 0 {
                    write!(f, "Z")?;
                } else {
                    let sign = if tz < 0 { '-' } else { '+' };
                    let a = tz.abs();
                    write!(f, "{}{:02}:{:02}", sign, a / 60, a % 60)?;
                }
            }
        }
        Ok(())
    }
}

/// Compare two component arrays up to the given precisions: Some(ordering) when decidable,
/// None when equal up to the common precision but precisions differ.
pub(crate) fn compare_components(a: &[i64], pa: usize, b: &[i64], pb: usize) -> Option<Ordering> {
    let common = pa.min(pb);
    for i in 0..common {
        match a[i].cmp(&b[i]) {
            Ordering::Equal => {}
            o => return Some(o),
        }
    }
    if pa == pb { Some(Ordering::Equal) } else { None }
}

/// Number of components for a precision (seconds and milliseconds share one).
pub(crate) fn prec_len(p: Precision) -> usize {
    match p {
        Precision::Year => 1,
        Precision::Month => 2,
        Precision::Day => 3,
        Precision::Hour => 4,
        Precision::Minute => 5,
        Precision::Second | Precision::Millisecond => 6,
    }
}

pub(crate) fn time_prec_len(p: Precision) -> usize {
    match p {
        Precision::Hour => 1,
        Precision::Minute => 2,
        _ => 3,
    }
}
