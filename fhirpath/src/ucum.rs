//! Minimal UCUM support: enough to compare / convert common units and do unit algebra for
//! multiplication and division. Units are reduced to a factor times base-unit powers.

use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Dimension vector over base units (m, g, s, mol, K, A, cd, plus special non-convertible atoms).
pub(crate) type Dims = BTreeMap<String, i32>;

fn atom(name: &str) -> Option<(Decimal, Vec<(&'static str, i32)>)> {
    let d = |s: &str| Decimal::from_str(s).unwrap();
    Some(match name {
        "m" => (Decimal::ONE, vec![("m", 1)]),
        "g" => (Decimal::ONE, vec![("g", 1)]),
        "s" => (Decimal::ONE, vec![("s", 1)]),
        "mol" => (Decimal::ONE, vec![("mol", 1)]),
        "K" => (Decimal::ONE, vec![("K", 1)]),
        "A" => (Decimal::ONE, vec![("A", 1)]),
        "cd" => (Decimal::ONE, vec![("cd", 1)]),
        "min" => (d("60"), vec![("s", 1)]),
        "h" => (d("3600"), vec![("s", 1)]),
        "d" => (d("86400"), vec![("s", 1)]),
        "wk" => (d("604800"), vec![("s", 1)]),
        "mo" => (d("2629800"), vec![("s", 1)]),
        "a" => (d("31557600"), vec![("s", 1)]),
        "l" | "L" => (d("0.001"), vec![("m", 3)]),
        "[in_i]" => (d("0.0254"), vec![("m", 1)]),
        "[ft_i]" => (d("0.3048"), vec![("m", 1)]),
        "[lb_av]" => (d("453.59237"), vec![("g", 1)]),
        "[oz_av]" => (d("28.349523125"), vec![("g", 1)]),
        "Cel" => (Decimal::ONE, vec![("K", 1)]),
        "%" => (d("0.01"), vec![]),
        "[iU]" | "[IU]" => (Decimal::ONE, vec![("[IU]", 1)]),
        "eq" => (Decimal::ONE, vec![("mol", 1)]),
        "1" => (Decimal::ONE, vec![]),
        _ => return None,
    })
}

fn prefix(p: &str) -> Option<Decimal> {
    let e: i32 = match p {
        "Y" => 24,
        "Z" => 21,
        "E" => 18,
        "P" => 15,
        "T" => 12,
        "G" => 9,
        "M" => 6,
        "k" => 3,
        "h" => 2,
        "da" => 1,
        "d" => -1,
        "c" => -2,
        "m" => -3,
        "u" => -6,
        "n" => -9,
        "p" => -12,
        "f" => -15,
        _ => return None,
    };
    let mut v = Decimal::ONE;
    let ten = Decimal::from(10);
    for _ in 0..e.abs() {
        v = if e > 0 { v * ten } else { v / ten };
    }
    Some(v)
}

fn term(t: &str) -> Option<(Decimal, Dims)> {
    // strip annotations {..}
    let mut t = t.to_string();
    while let (Some(a), Some(b)) = (t.find('{'), t.find('}')) {
        if b < a {
            return None;
        }
        t.replace_range(a..=b, "");
    }
    if t.is_empty() {
        return Some((Decimal::ONE, Dims::new()));
    }
    // exponent suffix
    let digits_start = t.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (mut base, exp_s) = t.split_at(digits_start);
    let mut exp: i32 = if exp_s.is_empty() { 1 } else { exp_s.parse().ok()? };
    if base.ends_with('-') {
        base = &base[..base.len() - 1];
        exp = -exp;
    }
    if base.is_empty() {
        // pure number like "10"
        let v = Decimal::from_str(exp_s).ok()?;
        return Some((v, Dims::new()));
    }
    let (f, atoms) = match atom(base) {
        Some(a) => a,
        None => {
            let mut found = None;
            for plen in [1usize, 2] {
                if base.len() > plen && base.is_char_boundary(plen)
                    && let (Some(p), Some(a)) = (prefix(&base[..plen]), atom(&base[plen..])) {
                        found = Some((p * a.0, a.1));
                        break;
                    }
            }
            found?
        }
    };
    let mut factor = Decimal::ONE;
    for _ in 0..exp.abs() {
        factor = if exp > 0 { factor * f } else { factor / f };
    }
    let mut dims = Dims::new();
    for (a, p) in atoms {
        *dims.entry(a.to_string()).or_insert(0) += p * exp;
    }
    Some((factor, dims))
}

/// Reduce a UCUM unit string to (factor, dimensions).
pub(crate) fn parse(unit: &str) -> Option<(Decimal, Dims)> {
    let mut factor = Decimal::ONE;
    let mut dims = Dims::new();
    let mut sign = 1;
    let mut cur = String::new();
    let apply = |cur: &str, sign: i32, factor: &mut Decimal, dims: &mut Dims| -> Option<()> {
        let (f, d) = term(cur)?;
        if sign > 0 {
            *factor *= f;
        } else {
            *factor /= f;
        }
        for (k, v) in d {
            *dims.entry(k).or_insert(0) += v * sign;
        }
        Some(())
    };
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' | '[' => {
                depth += 1;
                cur.push(c)
            }
            '}' | ']' => {
                depth -= 1;
                cur.push(c)
            }
            '.' | '/' if depth == 0 => {
                apply(&cur, sign, &mut factor, &mut dims)?;
                cur.clear();
                sign = if c == '/' { -1 } else { 1 };
            }
            _ => cur.push(c),
        }
    }
    apply(&cur, sign, &mut factor, &mut dims)?;
    dims.retain(|_, v| *v != 0);
    Some((factor, dims))
}

/// Canonical unit string for dimensions (e.g. `m2`, `g/m`, `1`).
pub(crate) fn format_dims(d: &Dims) -> String {
    let pos: Vec<String> = d
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| if *v == 1 { k.clone() } else { format!("{k}{v}") })
        .collect();
    let neg: Vec<String> = d
        .iter()
        .filter(|(_, v)| **v < 0)
        .map(|(k, v)| if *v == -1 { k.clone() } else { format!("{k}{}", -v) })
        .collect();
    let mut s = if pos.is_empty() { "1".to_string() } else { pos.join(".") };
    for n in neg {
        s.push('/');
        s.push_str(&n);
    }
    s
}

/// Map a calendar duration keyword to its UCUM equivalent when the two are interchangeable
/// (week, day, hour, minute, second, millisecond; not year/month).
pub(crate) fn calendar_to_ucum(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "week" => "wk",
        "day" => "d",
        "hour" => "h",
        "minute" => "min",
        "second" => "s",
        "millisecond" => "ms",
        _ => return None,
    })
}

pub(crate) fn is_calendar(unit: &str) -> bool {
    matches!(unit, "year" | "month" | "week" | "day" | "hour" | "minute" | "second" | "millisecond")
}
