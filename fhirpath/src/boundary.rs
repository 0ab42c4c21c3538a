//! lowBoundary() / highBoundary() / precision().

use crate::datetime::{Date, DateTime, Precision, Time};
use crate::value::{Item, Prim, Quantity};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use std::sync::Arc;

fn dec_boundary(d: Decimal, scale_in: u32, p: Option<i64>, high: bool) -> Option<Decimal> {
    let p = p.unwrap_or(8);
    if !(0..=28).contains(&p) {
        return None;
    }
    let half = Decimal::new(5, scale_in + 1);
    let v = if high { d + half } else { d - half };
    let p = p as u32;
    if d.abs() < Decimal::new(1, p) && d.scale() > p {
        // Below the requested resolution: zero (keeping the sign for the low boundary of negatives).
        let mut z = Decimal::new(0, p);
        if !high && d.is_sign_negative() {
            z.set_sign_negative(true);
        }
        return Some(z);
    }
    let r = if high {
        v.round_dp_with_strategy(p, RoundingStrategy::ToPositiveInfinity)
    } else {
        v.round_dp_with_strategy(p, RoundingStrategy::ToNegativeInfinity)
    };
    let mut r = r;
    r.rescale(p);
    Some(r)
}

fn date_prec_digits(p: Precision) -> i64 {
    match p {
        Precision::Year => 4,
        Precision::Month => 6,
        Precision::Day => 8,
        Precision::Hour => 10,
        Precision::Minute => 12,
        Precision::Second => 14,
        Precision::Millisecond => 17,
    }
}

fn digits_to_prec(d: i64) -> Option<Precision> {
    Some(match d {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 => Precision::Hour,
        12 => Precision::Minute,
        14 => Precision::Second,
        17 => Precision::Millisecond,
        _ => return None,
    })
}

fn days_in_month(y: i32, m: u8) -> u8 {
    let d = Date { year: y, month: m, day: 1, precision: Precision::Day };
    let n = d.add(Precision::Month, 1).map(|x| x.naive()).unwrap_or_default();
    (n - d.naive()).num_days() as u8
}

fn dt_boundary(dt: &DateTime, p: Option<i64>, high: bool) -> Option<DateTime> {
    let target = digits_to_prec(p.unwrap_or(17))?;
    let mut d = dt.date;
    if dt.precision < Precision::Month {
        d.month = if high { 12 } else { 1 };
    }
    if dt.precision < Precision::Day {
        d.day = if high { days_in_month(d.year, d.month) } else { 1 };
    }
    d.precision = target.min(Precision::Day);
    let mut t = dt.time.unwrap_or(Time { hour: 0, minute: 0, second: 0, nanos: 0, frac_digits: 0, precision: Precision::Hour });
    // An hour-only time is not legal FHIR: treat it as hh:00.
    let dtp = if dt.precision == Precision::Hour { Precision::Minute } else { dt.precision };
    let dt = &DateTime { precision: dtp, ..*dt };
    if dt.precision < Precision::Hour {
        t.hour = if high { 23 } else { 0 };
    }
    if dt.precision < Precision::Minute {
        t.minute = if high { 59 } else { 0 };
    }
    if dt.precision < Precision::Second {
        t.second = if high { 59 } else { 0 };
    }
    if dt.precision < Precision::Millisecond {
        t.nanos = if high { 999_000_000 } else { 0 };
    }
    t.precision = target;
    t.frac_digits = 3;
    let tz = if target > Precision::Day {
        Some(dt.tz_minutes.unwrap_or(if high { -12 * 60 } else { 14 * 60 }))
    } else {
        None
    };
    Some(DateTime { date: d, time: if target > Precision::Day { Some(t) } else { None }, tz_minutes: tz, precision: target })
}

fn time_boundary(t: &Time, p: Option<i64>, high: bool) -> Option<Time> {
    let target = match p.unwrap_or(9) {
        2 => Precision::Hour,
        4 => Precision::Minute,
        6 => Precision::Second,
        9 => Precision::Millisecond,
        _ => return None,
    };
    let mut r = *t;
    if t.precision < Precision::Minute {
        r.minute = if high { 59 } else { 0 };
    }
    if t.precision < Precision::Second {
        r.second = if high { 59 } else { 0 };
    }
    if t.precision < Precision::Millisecond {
        r.nanos = if high { 999_000_000 } else { 0 };
    }
    r.precision = target;
    r.frac_digits = 3;
    Some(r)
}

pub(crate) fn boundary<'a>(it: &Item<'a>, p: Option<i64>, high: bool) -> Option<Item<'a>> {
    match it.prim() {
        Prim::Int(i) => dec_boundary(Decimal::from(i), 0, p, high).map(Item::Decimal),
        Prim::Dec(d) => dec_boundary(d, d.scale(), p, high).map(Item::Decimal),
        Prim::Qty(v, u) => {
            dec_boundary(v, v.scale(), p, high).map(|x| Item::Quantity(Quantity { value: x, unit: Arc::from(u) }))
        }
        Prim::Date(d) => {
            let r = dt_boundary(&DateTime::from_date(d), Some(p.unwrap_or(8)), high)?;
            if r.precision > Precision::Day {
                return None;
            }
            Some(Item::Date(r.date))
        }
        Prim::DateTime(d) => dt_boundary(&d, p, high).map(Item::DateTime),
        Prim::Time(t) => time_boundary(&t, p, high).map(Item::Time),
        _ => None,
    }
}

pub(crate) fn precision(it: &Item<'_>) -> Option<i64> {
    match it.prim() {
        Prim::Int(_) => Some(0),
        Prim::Dec(d) => Some(d.scale() as i64),
        Prim::Qty(v, _) => Some(v.scale() as i64),
        Prim::Date(d) => Some(date_prec_digits(d.precision)),
        Prim::DateTime(d) => Some(date_prec_digits(d.precision)),
        Prim::Time(t) => Some(match t.precision {
            Precision::Hour => 2,
            Precision::Minute => 4,
            Precision::Second => 6,
            _ => 9,
        }),
        _ => None,
    }
}
