//! R4 primitive datatype formats (JSON representation).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

fn re(p: &str) -> Regex {
    Regex::new(&format!("^(?:{p})$")).expect("valid primitive regex")
}

const DATE: &str = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?";
const TIME: &str = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?";
const TZ: &str = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))";

static RE_DATE: LazyLock<Regex> = LazyLock::new(|| re(DATE));
static RE_DATETIME: LazyLock<Regex> = LazyLock::new(|| re(&format!("{DATE}(T{TIME}{TZ})?")));
static RE_DATETIME_NOTZ: LazyLock<Regex> = LazyLock::new(|| re(&format!("{DATE}T{TIME}")));
static RE_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{TIME}{TZ}"))
});
static RE_TIME: LazyLock<Regex> = LazyLock::new(|| re(TIME));
static RE_ID: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z0-9\-\.]{1,64}"));
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
        "code" => {
            // [^\s]+( [^\s]+)* without a regex: single spaces between non-space runs only
            let ok = !s.starts_with(' ') && !s.ends_with(' ') && !s.contains("  ") && !s.chars().any(|c| c.is_whitespace() && c != ' ');
            (!ok).then(|| format!("The value '{s}' is not a valid code (no leading/trailing or double whitespace allowed)"))
        }
        "id" => (!RE_ID.is_match(s)).then(|| format!("The value '{s}' is not a valid id (1-64 of A-Z a-z 0-9 - .)")),
        "uri" | "url" | "canonical" => {
            if s.chars().any(char::is_whitespace) {
                Some(format!("URI values cannot have whitespace ('{s}')"))
            } else {
                None
            }
        }
        "oid" => (!RE_OID.is_match(s)).then(|| format!("The value '{s}' is not a valid OID")),
        "uuid" => (!RE_UUID.is_match(s)).then(|| format!("The value '{s}' is not a valid UUID (urn:uuid: + lower-case hex)")),
        "date" => (!RE_DATE.is_match(s)).then(|| format!("Not a valid date format: '{s}'")),
        "dateTime" => {
            if RE_DATETIME.is_match(s) {
                None
            } else if RE_DATETIME_NOTZ.is_match(s) {
                Some(format!("If a date has a time, it must have a timezone ('{s}')"))
            } else {
                Some(format!("Not a valid date/time format: '{s}'"))
            }
        }
        "instant" => (!RE_INSTANT.is_match(s)).then(|| format!("Not a valid instant (full date, time and timezone required): '{s}'")),
        "time" => (!RE_TIME.is_match(s)).then(|| format!("Not a valid time format: '{s}'")),
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
