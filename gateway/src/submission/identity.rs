//! Patient identity: the one place that decides who a submitted Patient is.
//!
//! Today the key is the insured-person identifier (被保険者個人識別子), or the public-assistance
//! recipient identifier when there is no insurance; a future common ID (My Number based) only
//! has to change this module.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

pub const INSURED_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";
pub const PUBLIC_ASSISTANCE_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_PublicPayer_memberID";

/// Who a patient is, across institutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientKey {
    /// Stable linkage key (`insured:...` / `public:...`), normalised so that the same card
    /// written in full-width or half-width digits links to the same patient.
    pub key: String,
    /// The identifier as submitted (system, value), for the canonical Patient.
    pub system: &'static str,
    pub value: String,
}

impl PatientKey {
    /// The id of the gateway's canonical Patient resource for this key.
    pub fn patient_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.key.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A problem with the identifiers of the submitted Patient; `element` is relative to the
/// Patient (e.g. `identifier[0].value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError {
    pub element: String,
    pub message: String,
}

/// Find and check the Patient's linkage identifier.
pub fn identify(patient: &Value) -> Result<PatientKey, IdentityError> {
    let identifiers = patient["identifier"].as_array().map(Vec::as_slice).unwrap_or_default();
    let of_system = |system: &str| -> Vec<(usize, &str)> {
        identifiers
            .iter()
            .enumerate()
            .filter(|(_, i)| i["system"] == system)
            .map(|(n, i)| (n, i["value"].as_str().unwrap_or_default()))
            .collect()
    };
    // A public-assistance identifier, when present, must be well-formed even beside insurance.
    let public = of_system(PUBLIC_ASSISTANCE_SYSTEM);
    for &(n, value) in &public {
        parse_public_assistance(value).map_err(|message| IdentityError { element: format!("identifier[{n}].value"), message })?;
    }
    let insured = of_system(INSURED_SYSTEM);
    if insured.len() > 1 {
        return Err(IdentityError {
            element: format!("identifier[{}]", insured[1].0),
            message: "more than one insured-person identifier".into(),
        });
    }
    if let Some(&(n, value)) = insured.first() {
        let parts = parse_insured(value)
            .map_err(|message| IdentityError { element: format!("identifier[{n}].value"), message })?;
        return Ok(PatientKey { key: format!("insured:{}", parts.join(":")), system: INSURED_SYSTEM, value: value.to_string() });
    }
    if let Some(&(_, value)) = public.first() {
        let (payer, recipient) = parse_public_assistance(value).expect("checked above");
        return Ok(PatientKey {
            key: format!("public:{payer}:{recipient}"),
            system: PUBLIC_ASSISTANCE_SYSTEM,
            value: value.to_string(),
        });
    }
    Err(IdentityError {
        element: "identifier".into(),
        message: format!("no insured-person identifier ({INSURED_SYSTEM}) or public-assistance identifier"),
    })
}

/// `insurer(8 digits):symbol:number:branch(2 digits or empty)`, the trailing colon mandatory.
/// Returns the normalised parts.
pub fn parse_insured(value: &str) -> Result<[String; 4], String> {
    let parts: Vec<&str> = value.split(':').collect();
    let [insurer, symbol, number, branch] = parts[..] else {
        return Err(format!(
            "`{value}` must have four parts joined by ASCII colons, insurer:symbol:number:branch (the trailing colon is required even with no branch)"
        ));
    };
    if insurer.len() != 8 || !insurer.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("insurer number `{insurer}` must be 8 digits (left-padded with 0)"));
    }
    check_card_text("symbol", symbol)?;
    if number.is_empty() {
        return Err("the insured-person number (part 3) is empty".into());
    }
    check_card_text("number", number)?;
    if !(branch.is_empty() || (branch.len() == 2 && branch.bytes().all(|b| b.is_ascii_digit()))) {
        return Err(format!("branch number `{branch}` must be two digits, or empty when the card shows none"));
    }
    let norm = |s: &str| s.nfkc().collect::<String>();
    Ok([insurer.to_string(), norm(symbol), norm(number), branch.to_string()])
}

/// Symbol and number: all half-width alphanumerics, or all full-width (required as soon as
/// there is any kana, kanji or symbol); never a space or `^`.
fn check_card_text(part: &str, text: &str) -> Result<(), String> {
    if text.chars().any(|c| c.is_whitespace() || c == '^' || c == '\u{3000}') {
        return Err(format!("the {part} `{text}` contains a space or `^`"));
    }
    let half = |c: char| c.is_ascii_alphanumeric();
    let full = |c: char| !c.is_ascii() && !('\u{FF61}'..='\u{FF9F}').contains(&c);
    if text.chars().all(half) || text.chars().all(full) {
        Ok(())
    } else {
        Err(format!(
            "the {part} `{text}` mixes half-width and full-width characters (or uses half-width kana or symbols): write it all in full-width"
        ))
    }
}

/// `payer(8 digits)::recipient(7 digits):`.
pub fn parse_public_assistance(value: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = value.split(':').collect();
    match parts[..] {
        [payer, "", recipient, ""]
            if payer.len() == 8
                && recipient.len() == 7
                && payer.bytes().all(|b| b.is_ascii_digit())
                && recipient.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok((payer.to_string(), recipient.to_string()))
        }
        _ => Err(format!("`{value}` must be payer(8 digits)::recipient(7 digits):")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(value: &str) -> Value {
        json!({"resourceType": "Patient", "identifier": [{"system": INSURED_SYSTEM, "value": value}]})
    }

    #[test]
    fn documented_examples_are_accepted() {
        assert!(identify(&patient("00012345:あいう:１８７:05")).is_ok());
        assert!(identify(&patient("00012345::１８７:")).is_ok());
        assert!(identify(&patient("06050116:記号:番号:01")).is_ok());
        assert!(identify(&patient("06050116:AB12:345:")).is_ok());
    }

    #[test]
    fn malformed_identifiers_are_refused_with_a_reason() {
        for bad in [
            "00012345:あいう:１８７",     // no trailing colon
            "12345:a:1:",                 // insurer too short
            "00012345:ab c:1:",           // space
            "00012345:あいう:１８７:5",   // one-digit branch
            "00012345:あいう:１８７:00x", // bad branch
            "00012345:ｱｲｳ:1:",            // half-width kana
            "00012345:あa:1:",            // mixed widths
            "00012345:a-b:1:",            // half-width symbol
            "00012345:a::",               // no number
        ] {
            let err = identify(&patient(bad)).unwrap_err();
            assert_eq!(err.element, "identifier[0].value", "{bad}");
            assert!(!err.message.is_empty());
        }
        assert!(identify(&json!({"resourceType": "Patient"})).is_err());
    }

    #[test]
    fn same_card_in_either_width_links_to_one_patient() {
        let a = identify(&patient("00012345::１８７:05")).unwrap();
        let b = identify(&patient("00012345::187:05")).unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.patient_id(), b.patient_id());
        let c = identify(&patient("00012345::188:05")).unwrap();
        assert_ne!(a.patient_id(), c.patient_id());
    }

    #[test]
    fn public_assistance_identifier() {
        let p = json!({"resourceType": "Patient", "identifier": [{"system": PUBLIC_ASSISTANCE_SYSTEM, "value": "12345678::1234567:"}]});
        assert_eq!(identify(&p).unwrap().key, "public:12345678:1234567");
        let p = json!({"resourceType": "Patient", "identifier": [{"system": PUBLIC_ASSISTANCE_SYSTEM, "value": "12345678:1:1234567:"}]});
        assert!(identify(&p).is_err());
    }
}
