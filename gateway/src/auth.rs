//! Bearer tokens with SMART-style scopes: the minimal verifier the terminology maintainer
//! operations need until the access-control capability issues tokens of its own.
//!
//! A token is a JWT signed with HS256 by a secret shared with the issuer (`jwt_hs256_secret`).
//! Claims: `sub` (who; recorded in audit trails), `exp` (required), `nbf` (optional), `scope`
//! (space-separated SMART scopes). Errors follow RFC 6750: a missing, malformed, badly signed or
//! expired token is 401 with `WWW-Authenticate: Bearer ...`; a valid token without the needed
//! scope is 403 (`error="insufficient_scope"`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::api::ApiError;

/// Shortest accepted HS256 secret: the hash length (RFC 7518 section 3.2).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: i64 = 60;

/// What a scope must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    pub scopes: Vec<String>,
}

impl Principal {
    /// Does one of the scopes grant `access` on `resource_type`?
    pub fn may(&self, resource_type: &str, access: Access) -> bool {
        self.scopes.iter().any(|s| scope_grants(s, resource_type, access))
    }
}

/// Verifies bearer tokens; `None` secret: no issuer configured, every token is refused.
pub struct Auth {
    secret: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    #[serde(default)]
    scope: String,
}

impl Auth {
    pub fn new(secret: Option<&str>) -> Auth {
        Auth { secret: secret.map(|s| s.as_bytes().to_vec()) }
    }

    /// The caller of a request whose token grants `access` on `resource_type` (any of `accesses`).
    pub fn require(&self, headers: &HeaderMap, resource_type: &str, accesses: &[Access]) -> Result<Principal, ApiError> {
        let principal = self.authenticate(headers)?;
        if accesses.iter().any(|&a| principal.may(resource_type, a)) {
            return Ok(principal);
        }
        let wanted: Vec<String> = accesses
            .iter()
            .map(|a| format!("system/{resource_type}.{}", if *a == Access::Read { "read" } else { "write" }))
            .collect();
        let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{}\"", wanted.join(" "));
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token of '{}' has no scope granting {} (for example {})", principal.subject, wanted.join(" or "), wanted[0]),
        )
        .with_header(header::WWW_AUTHENTICATE, &challenge))
    }

    /// The caller, from a valid `Authorization: Bearer` token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let Some(secret) = &self.secret else {
            return Err(unauthorized(
                "no token issuer is configured (setting jwt_hs256_secret), so operations that need a token are unavailable",
                None,
            ));
        };
        let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = value.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))) else {
            return Err(unauthorized("this operation needs an `Authorization: Bearer <token>` header", None));
        };
        verify(token.trim(), secret, chrono::Utc::now().timestamp()).map_err(|m| unauthorized(&m, Some("invalid_token")))
    }
}

fn unauthorized(message: &str, error: Option<&str>) -> ApiError {
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"gateway\", error=\"{e}\", error_description=\"{}\"", message.replace('"', "'")),
        None => "Bearer realm=\"gateway\"".to_string(),
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "login", message).with_header(header::WWW_AUTHENTICATE, &challenge)
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| format!("the token's {what} is not base64url"))
}

/// Check signature and time claims of a compact JWS; `now` in seconds since the epoch.
fn verify(token: &str, secret: &[u8], now: i64) -> Result<Principal, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [head, payload, signature] = parts[..] else {
        return Err("the token is not a JWT (three base64url parts separated by dots)".into());
    };
    let header: Header =
        serde_json::from_slice(&b64(head, "header")?).map_err(|_| "the token's header is not a JSON object".to_string())?;
    if header.alg != "HS256" {
        return Err(format!("the token is signed with '{}'; only HS256 is accepted", header.alg));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(head.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&b64(signature, "signature")?).map_err(|_| "the token's signature is not valid".to_string())?;
    let claims: Claims =
        serde_json::from_slice(&b64(payload, "payload")?).map_err(|e| format!("the token's claims are not valid: {e}"))?;
    let exp = claims.exp.ok_or("the token has no `exp` claim")?;
    if now > exp + LEEWAY_SECONDS {
        return Err("the token has expired".into());
    }
    if claims.nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
        return Err("the token is not valid yet (nbf)".into());
    }
    let subject = claims.sub.filter(|s| !s.is_empty()).ok_or("the token has no `sub` claim")?;
    Ok(Principal { subject, scopes: claims.scope.split_whitespace().map(String::from).collect() })
}

/// SMART on FHIR scopes, v1 (`system/ConceptMap.write`, `user/*.*`) and v2
/// (`system/ConceptMap.cud`, `user/*.rs`). Only `user/` and `system/` contexts count here (a
/// `patient/` scope is about one patient's record), and a v2 scope with a `?` constraint never
/// grants a whole-type operation. Write means create, update and delete (v2 `c`, `u` and `d`).
pub fn scope_grants(scope: &str, resource_type: &str, access: Access) -> bool {
    let Some((context, rest)) = scope.split_once('/') else { return false };
    if !matches!(context, "user" | "system") || rest.contains('?') {
        return false;
    }
    let Some((ty, permission)) = rest.rsplit_once('.') else { return false };
    if ty != resource_type && ty != "*" {
        return false;
    }
    match (permission, access) {
        ("*", _) | ("read", Access::Read) | ("write", Access::Write) => true,
        (p, _) if p.is_empty() || !p.chars().all(|c| "cruds".contains(c)) => false,
        (p, Access::Read) => p.contains('r'),
        (p, Access::Write) => p.contains('c') && p.contains('u') && p.contains('d'),
    }
}

/// Sign claims as an HS256 JWT (for tests and tooling that stand in for an issuer).
pub fn sign_hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    let enc = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!("{}.{}", enc(br#"{"alg":"HS256","typ":"JWT"}"#), enc(claims.to_string().as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", enc(&mac.finalize().into_bytes()))
}

/// A header value for a challenge (the text is ours and ASCII).
pub(crate) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_token_yields_subject_and_scopes() {
        let t = sign_hs256(&json!({"sub": "alice", "exp": 2_000, "scope": "system/ConceptMap.write openid"}), SECRET);
        let p = verify(&t, SECRET, 1_000).unwrap();
        assert_eq!(p.subject, "alice");
        assert!(p.may("ConceptMap", Access::Write));
        assert!(!p.may("ConceptMap", Access::Read));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let t = sign_hs256(&json!({"sub": "alice", "exp": 2_000}), SECRET);
        assert!(verify(&t, b"another-secret-another-secret-xx", 1_000).unwrap_err().contains("signature"));
        assert!(verify(&t, SECRET, 3_000).unwrap_err().contains("expired"));
        let no_exp = sign_hs256(&json!({"sub": "alice"}), SECRET);
        assert!(verify(&no_exp, SECRET, 1_000).unwrap_err().contains("exp"));
        let later = sign_hs256(&json!({"sub": "alice", "exp": 9_000, "nbf": 5_000}), SECRET);
        assert!(verify(&later, SECRET, 1_000).unwrap_err().contains("nbf"));
        assert!(verify("a.b", SECRET, 1_000).is_err());
        // alg=none with an empty signature is not accepted
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc(r#"{"sub":"x","exp":2000}"#));
        assert!(verify(&none, SECRET, 1_000).unwrap_err().contains("none"));
    }

    #[test]
    fn smart_scopes() {
        use Access::*;
        for s in ["system/ConceptMap.write", "user/ConceptMap.*", "system/*.write", "system/*.*", "system/ConceptMap.cud", "user/*.cruds"] {
            assert!(scope_grants(s, "ConceptMap", Write), "{s}");
        }
        for s in ["patient/ConceptMap.write", "system/ConceptMap.read", "system/Patient.write", "system/ConceptMap.c", "system/ConceptMap.cud?x=y", "ConceptMap.write", "system/ConceptMap.wrte"] {
            assert!(!scope_grants(s, "ConceptMap", Write), "{s}");
        }
        assert!(scope_grants("user/ConceptMap.rs", "ConceptMap", Read));
        assert!(scope_grants("system/ConceptMap.read", "ConceptMap", Read));
    }
}
