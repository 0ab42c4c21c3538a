//! R4 primitive datatype formats (JSON representation).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

fn re(p: &str) -> Regex {
    Regex::new(&format!("^(?:{p})$")).expect("valid primitive regex")
}

// The date/time formats of the R4 specification, checked by hand (same acceptance as the
// specification's regular expressions, which the tests compare them with):
//   date      ([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?
//   time      ([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?
//   timezone  Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)
//   dateTime  date(Ttime timezone)?      instant  YYYY-MM-DDTtime timezone      id  [A-Za-z0-9\-\.]{1,64}

fn two_digits(b: &[u8], i: usize) -> Option<u8> {
    match (b.get(i), b.get(i + 1)) {
        (Some(x @ b'0'..=b'9'), Some(y @ b'0'..=b'9')) => Some((x - b'0') * 10 + (y - b'0')),
        _ => None,
    }
}

/// Length of the date prefix (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`, taking the longest valid form),
/// or None when there is no valid year.
fn date_prefix(b: &[u8]) -> Option<usize> {
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) || &b[..4] == b"0000" {
        return None;
    }
    if b.get(4) != Some(&b'-') || !matches!(two_digits(b, 5), Some(1..=12)) {
        return Some(4);
    }
    if b.get(7) != Some(&b'-') || !matches!(two_digits(b, 8), Some(1..=31)) {
        return Some(7);
    }
    Some(10)
}

/// Length of a valid time at the start of `b`, with its optional fraction.
fn time_prefix(b: &[u8]) -> Option<usize> {
    if !matches!(two_digits(b, 0), Some(0..=23)) || b.get(2) != Some(&b':') || !matches!(two_digits(b, 3), Some(0..=59)) || b.get(5) != Some(&b':') || !matches!(two_digits(b, 6), Some(0..=60)) {
        return None;
    }
    let mut n = 8;
    if b.get(8) == Some(&b'.') && b.get(9).is_some_and(u8::is_ascii_digit) {
        n = 10;
        while b.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    Some(n)
}

fn is_timezone(b: &[u8]) -> bool {
    match b {
        b"Z" => true,
        [b'+' | b'-', _, _, b':', _, _] => matches!((two_digits(b, 1), two_digits(b, 4)), (Some(0..=13), Some(0..=59)) | (Some(14), Some(0))),
        _ => false,
    }
}

fn is_date(s: &str) -> bool {
    date_prefix(s.as_bytes()) == Some(s.len())
}

fn is_time(s: &str) -> bool {
    time_prefix(s.as_bytes()) == Some(s.len())
}

fn is_instant(s: &str) -> bool {
    let b = s.as_bytes();
    date_prefix(b) == Some(10) && b.get(10) == Some(&b'T') && time_prefix(&b[11..]).is_some_and(|t| is_timezone(&b[11 + t..]))
}

enum DateTimeForm {
    Valid,
    /// A date and a time without a timezone.
    NoTimezone,
    Invalid,
}

fn date_time_form(s: &str) -> DateTimeForm {
    let b = s.as_bytes();
    let Some(d) = date_prefix(b) else { return DateTimeForm::Invalid };
    // a shorter date form followed by `-` cannot be completed into a valid value
    let rest = &b[d..];
    if rest.is_empty() {
        return DateTimeForm::Valid;
    }
    if rest[0] != b'T' {
        return DateTimeForm::Invalid;
    }
    match time_prefix(&rest[1..]) {
        Some(t) if t + 1 == rest.len() => DateTimeForm::NoTimezone,
        Some(t) if is_timezone(&rest[1 + t..]) => DateTimeForm::Valid,
        _ => DateTimeForm::Invalid,
    }
}

fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

/// `char::is_whitespace` for an ASCII byte.
fn ascii_ws(c: u8) -> bool {
    matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn has_whitespace(s: &str) -> bool {
    if s.is_ascii() { s.bytes().any(ascii_ws) } else { s.chars().any(char::is_whitespace) }
}

/// `[^\s]+( [^\s]+)*`: single spaces between non-space runs only.
fn is_code(s: &str) -> bool {
    let edges_ok = !s.starts_with(' ') && !s.ends_with(' ') && !s.contains("  ");
    edges_ok && if s.is_ascii() { !s.bytes().any(|c| c != b' ' && ascii_ws(c)) } else { !s.chars().any(|c| c.is_whitespace() && c != ' ') }
}

static RE_OID: LazyLock<Regex> = LazyLock::new(|| re(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+"));
static RE_UUID: LazyLock<Regex> = LazyLock::new(|| re(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"));
static RE_DECIMAL: LazyLock<Regex> = LazyLock::new(|| re(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"));

/// Is `code` a FHIR primitive type name?
pub fn is_primitive(code: &str) -> bool {
    matches!(
        code,
        "boolean" | "integer" | "integer64" | "string" | "decimal" | "uri" | "url" | "canonical" | "base64Binary" | "instant" | "date" | "dateTime" | "time" | "code" | "oid" | "id" | "markdown" | "unsignedInt" | "positiveInt" | "uuid" | "xhtml"
    )
}

/// Check a primitive JSON value against its FHIR type. Returns an error message.
pub fn check(ty: &str, v: &Value) -> Option<String> {
    match ty {
        "boolean" => (!v.is_boolean()).then(|| format!("Error parsing JSON: the primitive value must be a boolean (found {})", kind(v))),
        "integer" | "unsignedInt" | "positiveInt" | "integer64" => {
            let Value::Number(n) = v else {
                return Some(format!("Error parsing JSON: the primitive value must be a number (found {})", kind(v)));
            };
            let s = n.to_string();
            let Ok(i) = s.parse::<i64>() else {
                return Some(format!("The value '{s}' is not a valid integer"));
            };
            match ty {
                "integer" if i < i32::MIN as i64 || i > i32::MAX as i64 => Some(format!("The value '{s}' is outside the range of integer")),
                "unsignedInt" if !(0..=i32::MAX as i64).contains(&i) => Some(format!("The value '{s}' is not a valid unsignedInt (must be >= 0)")),
                "positiveInt" if !(1..=i32::MAX as i64).contains(&i) => Some(format!("The value '{s}' is not a valid positiveInt (must be >= 1)")),
                _ => None,
            }
        }
        "decimal" => {
            let Value::Number(n) = v else {
                return Some(format!("Error parsing JSON: the primitive value must be a number (found {})", kind(v)));
            };
            let s = n.to_string();
            (!RE_DECIMAL.is_match(&s)).then(|| format!("The value '{s}' is not a valid decimal"))
        }
        _ => {
            let Value::String(s) = v else {
                return Some(format!("Error parsing JSON: the primitive value must be a string (found {})", kind(v)));
            };
            check_str(ty, s)
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_str(ty: &str, s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("@value cannot be empty: a string primitive must have content (omit the element instead)".into());
    }
    match ty {
        "string" | "markdown" => {
            if s.trim().is_empty() {
                return Some("The value is only whitespace".into());
            }
            None
        }
        "code" => (!is_code(s)).then(|| format!("The value '{s}' is not a valid code (no leading/trailing or double whitespace allowed)")),
        "id" => (!is_id(s)).then(|| format!("The value '{s}' is not a valid id (1-64 of A-Z a-z 0-9 - .)")),
        "uri" | "url" | "canonical" => {
            if has_whitespace(s) {
                Some(format!("URI values cannot have whitespace ('{s}')"))
            } else {
                None
            }
        }
        "oid" => (!RE_OID.is_match(s)).then(|| format!("The value '{s}' is not a valid OID")),
        "uuid" => (!RE_UUID.is_match(s)).then(|| format!("The value '{s}' is not a valid UUID (urn:uuid: + lower-case hex)")),
        "date" => (!is_date(s)).then(|| format!("Not a valid date format: '{s}'")),
        "dateTime" => match date_time_form(s) {
            DateTimeForm::Valid => None,
            DateTimeForm::NoTimezone => Some(format!("If a date has a time, it must have a timezone ('{s}')")),
            DateTimeForm::Invalid => Some(format!("Not a valid date/time format: '{s}'")),
        },
        "instant" => (!is_instant(s)).then(|| format!("Not a valid instant (full date, time and timezone required): '{s}'")),
        "time" => (!is_time(s)).then(|| format!("Not a valid time format: '{s}'")),
        "base64Binary" => base64_error(s),
        "xhtml" => xhtml_error(s),
        _ => None,
    }
}

/// Number of decoded bytes if valid base64.
pub fn base64_len(s: &str) -> Option<usize> {
    let mut n = 0usize;
    let mut pad = 0usize;
    for c in s.bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if pad == 0 => n += 1,
            b'=' => pad += 1,
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => return None,
        }
    }
    if (n + pad) % 4 != 0 || pad > 2 {
        return None;
    }
    Some(n * 3 / 4)
}

fn base64_error(s: &str) -> Option<String> {
    if let Some(c) = s.bytes().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b' ' | b'\n' | b'\r' | b'\t'))) {
        return Some(format!("The base64 content is not valid base64: Illegal base64 character {c:x}"));
    }
    base64_len(s).is_none().then(|| "The base64 content is not valid base64 (bad length or padding)".to_string())
}

const XHTML_FORBIDDEN: &[&str] = &["script", "object", "applet", "embed", "iframe", "form", "input", "frame", "frameset", "base", "link", "meta", "style", "button", "select", "textarea"];

fn xhtml_error(s: &str) -> Option<String> {
    let t = s.trim_start();
    if !t.starts_with("<div") {
        return Some("The narrative XHTML must start with a <div> element".into());
    }
    let lower = s.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut i = 0;
    while let Some(p) = lower[i..].find('<') {
        let start = i + p + 1;
        let name: String = lower[start..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if XHTML_FORBIDDEN.contains(&name.as_str()) {
            return Some(format!("Invalid element name in the XHTML ('{name}'): only basic HTML formatting elements are allowed"));
        }
        // attributes: reject on* event handlers
        let end = lower[start..].find('>').map(|e| start + e).unwrap_or(lower.len());
        let tag = &lower[start..end];
        for attr in tag.split_whitespace().skip(1) {
            if attr.starts_with("on") && attr.contains('=') {
                return Some(format!("Invalid attribute in the XHTML ('{}'): event handlers are not allowed", attr.split('=').next().unwrap_or(attr)));
            }
        }
        i = end.min(bytes.len());
        if i >= lower.len() {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?";
    const TIME: &str = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?";
    const TZ: &str = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))";

    /// Random strings close to the formats: pieces of valid values, boundary digits, separators.
    fn candidates() -> Vec<String> {
        let pieces = [
            "0", "1", "2", "3", "4", "5", "6", "9", "00", "01", "09", "10", "12", "13", "14", "19", "20", "23", "24", "29", "30", "31", "32", "59", "60", "61", "99", "0000", "0001",
            "1000", "2024", "9999", "-", ":", ".", "T", "Z", "+", " ", "a", "\u{3000}", "2024-01-31", "T10:00:00", "+09:00", "-14:00", "+14:00", "+14:01", ".5", ".",
        ];
        let mut out = vec![String::new()];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = 1 + (seed % 9) as usize;
            let mut x = seed;
            for _ in 0..n {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                s.push_str(pieces[(x >> 33) as usize % pieces.len()]);
            }
            out.push(s);
        }
        // mutations of valid values: replaced characters, truncations
        let seeds = ["2024-01-31T23:59:60.123+14:00", "1999-12-01T00:00:00Z", "10:59:59.5", "23:00:00", "2024-02-29T12:30:00-13:59", "0001-10-10T19:09:09.000Z"];
        let alphabet = b"0123456789-:.TZ+ 5";
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = seeds[(seed % seeds.len() as u64) as usize].as_bytes().to_vec();
            let mut x = seed;
            for _ in 0..(1 + (seed >> 20) % 2) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pos = (x >> 33) as usize % b.len();
                b[pos] = alphabet[(x >> 13) as usize % alphabet.len()];
            }
            if (seed >> 40) % 4 == 0 {
                b.truncate((seed >> 45) as usize % (b.len() + 1));
            }
            out.push(String::from_utf8(b).unwrap());
        }
        for v in ["2024", "2024-02", "2024-02-30", "2024-02-30T23:59:60.123Z", "2024T10:00:00Z", "2024-01T10:00:00+13:59", "2024-01-01T10:00:00", "2024-01-01T10:00:00.Z", "0000-01-01", "a-b.C9"] {
            out.push(v.to_string());
        }
        out
    }

    #[test]
    fn hand_written_formats_accept_what_the_regexes_accept() {
        let date = re(DATE);
        let time = re(TIME);
        let datetime = re(&format!("{DATE}(T{TIME}{TZ})?"));
        let datetime_notz = re(&format!("{DATE}T{TIME}"));
        let instant = re(&format!(r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{TIME}{TZ}"));
        let id = re(r"[A-Za-z0-9\-\.]{1,64}");
        let code = re(r"[^\s]+( [^\s]+)*");
        let mut checked = 0;
        let mut accepted = [0usize; 5];
        for s in candidates() {
            for (n, ok) in accepted.iter_mut().zip([date.is_match(&s), time.is_match(&s), instant.is_match(&s), datetime.is_match(&s), datetime_notz.is_match(&s)]) {
                *n += ok as usize;
            }
            assert_eq!(is_date(&s), date.is_match(&s), "date {s:?}");
            assert_eq!(is_time(&s), time.is_match(&s), "time {s:?}");
            assert_eq!(is_instant(&s), instant.is_match(&s), "instant {s:?}");
            let form = match date_time_form(&s) {
                DateTimeForm::Valid => 0,
                DateTimeForm::NoTimezone => 1,
                DateTimeForm::Invalid => 2,
            };
            let expected = if datetime.is_match(&s) { 0 } else if datetime_notz.is_match(&s) { 1 } else { 2 };
            assert_eq!(form, expected, "dateTime {s:?}");
            assert_eq!(is_id(&s), id.is_match(&s), "id {s:?}");
            assert_eq!(!s.is_empty() && is_code(&s), code.is_match(&s), "code {s:?}");
            assert_eq!(has_whitespace(&s), s.chars().any(char::is_whitespace), "uri {s:?}");
            checked += 1;
        }
        assert!(checked > 100_000);
        assert!(accepted.iter().all(|&n| n >= 20), "too few valid samples: {accepted:?}");
    }
}
