//! Turning the values a search parameter's expression selects into index rows.

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use super::{ParamKind, SearchParam};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexRows {
    pub tokens: Vec<TokenRow>,
    pub strings: Vec<StringRow>,
    pub dates: Vec<DateRow>,
    pub references: Vec<ReferenceRow>,
    pub numbers: Vec<NumberRow>,
    /// [`IndexRows::keys_json`] rendered ahead of the write, in the requester's task (serializing
    /// it was 4 % of SQLite's single writer's time on submissions).
    pub rendered_keys: Option<String>,
}

/// The exact keys of a resource's rows as `resource_current.index_keys` keeps them, so that
/// they can be removed again without an index by resource (see migration 0006). Numbers are
/// kept as text in their shortest exact form: a JSON number may come back rounded (SQLite's
/// JSON functions print 15 digits), and then would no longer match its row.
#[derive(serde::Serialize, serde::Deserialize)]
struct Keys<S> {
    t: Vec<(S, S, S)>,
    s: Vec<(S, S)>,
    d: Vec<(S, i64, i64)>,
    r: Vec<(S, S)>,
    n: Vec<(S, String, S, S)>,
}

impl IndexRows {
    pub fn render_keys(&mut self) {
        self.rendered_keys = Some(self.keys_json());
    }

    /// [`IndexRows::keys_json`], taking the text rendered ahead instead of copying it.
    pub fn take_keys_json(&mut self) -> String {
        self.rendered_keys.take().unwrap_or_else(|| self.keys_json())
    }

    pub fn keys_json(&self) -> String {
        let keys = Keys::<&str> {
            t: self.tokens.iter().map(|r| (&*r.param, &*r.system, &*r.code)).collect(),
            s: self.strings.iter().map(|r| (&*r.param, &*r.value)).collect(),
            d: self.dates.iter().map(|r| (&*r.param, r.lo, r.hi)).collect(),
            r: self.references.iter().map(|r| (&*r.param, &*r.target)).collect(),
            n: self.numbers.iter().map(|r| (&*r.param, r.value.to_string(), &*r.system, &*r.code)).collect(),
        };
        serde_json::to_string(&keys).expect("keys serialize")
    }

    /// `None` when the text is not what [`IndexRows::keys_json`] writes.
    pub fn from_keys_json(text: &str) -> Option<IndexRows> {
        let keys: Keys<String> = serde_json::from_str(text).ok()?;
        let mut numbers = Vec::with_capacity(keys.n.len());
        for (param, value, system, code) in keys.n {
            numbers.push(NumberRow { param, value: value.parse().ok()?, system, code });
        }
        Some(IndexRows {
            tokens: keys.t.into_iter().map(|(param, system, code)| TokenRow { param, system, code }).collect(),
            strings: keys.s.into_iter().map(|(param, value)| StringRow { param, value }).collect(),
            dates: keys.d.into_iter().map(|(param, lo, hi)| DateRow { param, lo, hi }).collect(),
            references: keys.r.into_iter().map(|(param, target)| ReferenceRow { param, target }).collect(),
            numbers,
            rendered_keys: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub param: String,
    pub system: String,
    pub code: String,
}
#[derive(Debug, Clone, PartialEq)]
pub struct StringRow {
    pub param: String,
    pub value: String,
}
/// `[lo, hi)` in microseconds since the epoch: the whole period a partial date covers.
#[derive(Debug, Clone, PartialEq)]
pub struct DateRow {
    pub param: String,
    pub lo: i64,
    pub hi: i64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRow {
    pub param: String,
    pub target: String,
}
#[derive(Debug, Clone, PartialEq)]
pub struct NumberRow {
    pub param: String,
    pub value: f64,
    pub system: String,
    pub code: String,
}

pub(super) fn add_rows(rows: &mut IndexRows, param: &SearchParam, items: &[fhirpath::Item<'_>]) {
    for item in items {
        let ty = item.type_name();
        let json = item.as_json();
        let text = || item.as_str().map(str::to_string).or_else(|| json.and_then(scalar_text));
        let p = || param.code.clone();
        match param.kind {
            ParamKind::Token | ParamKind::Uri => {
                let mut token = |system: Option<&Value>, code: Option<&Value>| {
                    if let Some(code) = code.and_then(scalar_text) {
                        let system = system.and_then(Value::as_str).unwrap_or_default().to_string();
                        rows.tokens.push(TokenRow { param: p(), system, code });
                    }
                };
                match (ty, json) {
                    ("Coding", Some(v)) => token(v.get("system"), v.get("code")),
                    ("CodeableConcept", Some(v)) => {
                        for coding in v["coding"].as_array().into_iter().flatten() {
                            token(coding.get("system"), coding.get("code"));
                        }
                    }
                    ("Identifier", Some(v)) => token(v.get("system"), v.get("value")),
                    ("ContactPoint", Some(v)) => token(None, v.get("value")),
                    _ => {
                        if let Some(code) = text() {
                            rows.tokens.push(TokenRow { param: p(), system: String::new(), code });
                        }
                    }
                }
            }
            ParamKind::String => {
                let mut add = |v: &Value| {
                    if let Some(s) = v.as_str() {
                        rows.strings.push(StringRow { param: p(), value: normalize_string(s) });
                    }
                };
                match (ty, json) {
                    ("HumanName" | "Address", Some(Value::Object(obj))) => {
                        for (key, v) in obj {
                            if key.starts_with('_') || key == "use" || key == "period" || key == "type" {
                                continue;
                            }
                            match v {
                                Value::Array(vs) => vs.iter().for_each(&mut add),
                                v => add(v),
                            }
                        }
                    }
                    _ => {
                        if let Some(s) = text() {
                            rows.strings.push(StringRow { param: p(), value: normalize_string(&s) });
                        }
                    }
                }
            }
            ParamKind::Date => {
                let mut add = |lo: Option<i64>, hi: Option<i64>| {
                    if lo.is_some() || hi.is_some() {
                        rows.dates.push(DateRow { param: p(), lo: lo.unwrap_or(i64::MIN), hi: hi.unwrap_or(i64::MAX) });
                    }
                };
                match (ty, json) {
                    ("Period", Some(v)) => add(
                        v["start"].as_str().and_then(date_range).map(|r| r.0),
                        v["end"].as_str().and_then(date_range).map(|r| r.1),
                    ),
                    ("Timing", Some(v)) => {
                        for e in v["event"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                            if let Some((lo, hi)) = date_range(e) {
                                add(Some(lo), Some(hi));
                            }
                        }
                    }
                    _ => {
                        if let Some((lo, hi)) = text().as_deref().and_then(date_range) {
                            add(Some(lo), Some(hi));
                        }
                    }
                }
            }
            ParamKind::Reference => {
                let target = match (ty, json) {
                    ("Reference", Some(v)) => v["reference"].as_str().map(normalize_reference),
                    _ => text(),
                };
                if let Some(target) = target {
                    rows.references.push(ReferenceRow { param: p(), target });
                }
            }
            ParamKind::Number | ParamKind::Quantity => match (ty, json) {
                (_, Some(v @ Value::Object(_))) => {
                    if let Some(value) = v.get("value").and_then(number) {
                        let system = v["system"].as_str().unwrap_or_default().to_string();
                        let code = v["code"].as_str().or(v["unit"].as_str()).unwrap_or_default().to_string();
                        rows.numbers.push(NumberRow { param: p(), value, system, code });
                    }
                }
                (_, Some(v)) => {
                    if let Some(value) = number(v) {
                        rows.numbers.push(NumberRow { param: p(), value, system: String::new(), code: String::new() });
                    }
                }
                _ => {
                    if let Some(value) = text().and_then(|t| t.parse().ok()) {
                        rows.numbers.push(NumberRow { param: p(), value, system: String::new(), code: String::new() });
                    }
                }
            },
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// Case-insensitive matching: the FHIR string search ignores case (and, ideally, accents).
pub fn normalize_string(s: &str) -> String {
    s.to_lowercase()
}

/// `http://server/fhir/Patient/1/_history/2` and `Patient/1` both index as `Patient/1`;
/// other absolute references and `urn:` ones are kept as they are.
pub fn normalize_reference(reference: &str) -> String {
    let without_history = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let parts: Vec<&str> = without_history.rsplitn(3, '/').collect();
    if parts.len() >= 2 && parts[1].chars().next().is_some_and(|c| c.is_ascii_uppercase()) && !reference.starts_with("urn:") {
        format!("{}/{}", parts[1], parts[0])
    } else {
        without_history.to_string()
    }
}

/// The period a FHIR date, dateTime or instant covers, as `[lo, hi)` microseconds.
/// A value without a time zone is taken as UTC.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    let text = text.trim();
    if !text.is_ascii() {
        return None;
    }
    let micros = |dt: chrono::DateTime<Utc>| dt.timestamp_micros();
    let day = |y: i32, m: u32, d: u32| NaiveDate::from_ymd_opt(y, m, d);
    let utc = |d: NaiveDate| micros(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight")));
    match text.len() {
        4 => {
            let y: i32 = text.parse().ok()?;
            Some((utc(day(y, 1, 1)?), utc(day(y + 1, 1, 1)?)))
        }
        7 => {
            let y: i32 = text[..4].parse().ok()?;
            let m: u32 = text[5..7].parse().ok()?;
            let start = day(y, m, 1)?;
            let next = if m == 12 { day(y + 1, 1, 1)? } else { day(y, m + 1, 1)? };
            Some((utc(start), utc(next)))
        }
        10 => {
            let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some((utc(d), utc(d.succ_opt()?)))
        }
        _ => {
            let (dt, step) = parse_datetime(text)?;
            let lo = micros(dt);
            Some((lo, lo + step))
        }
    }
}

/// A dateTime with time: the instant and the length of its precision in microseconds.
fn parse_datetime(text: &str) -> Option<(chrono::DateTime<Utc>, i64)> {
    if !text.is_ascii() || text.len() < 16 {
        return None;
    }
    let has_zone = text.ends_with('Z') || text[10..].contains('+') || text[10..].rfind('-').is_some();
    let body_end = if text.ends_with('Z') {
        text.len() - 1
    } else if has_zone {
        text.len().checked_sub(6).filter(|n| *n >= 16)?
    } else {
        text.len()
    };
    let body = &text[..body_end];
    let (format, step) = match body.len() {
        16 => ("%Y-%m-%dT%H:%M", 60_000_000),
        19 => ("%Y-%m-%dT%H:%M:%S", 1_000_000),
        n if n > 20 => {
            let digits = (n - 20) as u32;
            ("%Y-%m-%dT%H:%M:%S%.f", 10i64.pow(6u32.saturating_sub(digits.min(6))))
        }
        _ => return None,
    };
    let naive = NaiveDateTime::parse_from_str(body, format).ok()?;
    let dt = if has_zone && !text.ends_with('Z') {
        let zone = &text[body_end..];
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let hours: i32 = zone[1..3].parse().ok()?;
        let minutes: i32 = zone[4..6].parse().ok()?;
        let offset = chrono::FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))?;
        offset.from_local_datetime(&naive).single()?.with_timezone(&Utc)
    } else {
        Utc.from_utc_datetime(&naive)
    };
    let _ = dt.year();
    Some((dt, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_round_trip_exactly() {
        let rows = IndexRows {
            tokens: vec![TokenRow { param: "code".into(), system: "http://loinc.org".into(), code: "2345-7".into() }],
            strings: vec![StringRow { param: "name".into(), value: "やまだ \"quoted\"".into() }],
            dates: vec![DateRow { param: "date".into(), lo: i64::MIN, hi: 1_704_067_200_000_000 }],
            references: vec![ReferenceRow { param: "subject".into(), target: "Patient/p1".into() }],
            numbers: vec![NumberRow { param: "value-quantity".into(), value: 0.1 + 0.2, system: String::new(), code: "mg".into() }],
            rendered_keys: None,
        };
        assert_eq!(IndexRows::from_keys_json(&rows.keys_json()), Some(rows));
        assert_eq!(IndexRows::from_keys_json("not keys"), None);
    }

    #[test]
    fn partial_dates_cover_their_whole_period() {
        let (lo, hi) = date_range("2024").unwrap();
        assert_eq!(hi - lo, 366 * 86_400_000_000);
        let (lo, hi) = date_range("2024-02").unwrap();
        assert_eq!(hi - lo, 29 * 86_400_000_000);
        let (lo, hi) = date_range("2024-02-03T10:00:00+09:00").unwrap();
        assert_eq!(hi - lo, 1_000_000);
        assert_eq!(lo, date_range("2024-02-03T01:00:00Z").unwrap().0);
        let (lo, hi) = date_range("2024-02-03T10:00:00.5Z").unwrap();
        assert_eq!(hi - lo, 100_000);
        assert!(date_range("2024-13").is_none());
        assert!(date_range("nonsense").is_none());
        for odd in ["２０２４", "2024-0２", "2024-02-03T", "2024-02-03T10:00+0", "２０２４-01-01T00:00:00Z", "2024-02-03T10:00:00+09:0x"] {
            assert!(date_range(odd).is_none(), "{odd}");
        }
    }

    #[test]
    fn references_are_normalized() {
        assert_eq!(normalize_reference("Patient/1"), "Patient/1");
        assert_eq!(normalize_reference("http://x/fhir/Patient/1/_history/3"), "Patient/1");
        assert_eq!(normalize_reference("urn:uuid:abc"), "urn:uuid:abc");
    }
}
