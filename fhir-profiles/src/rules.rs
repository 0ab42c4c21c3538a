//! Gateway rules: our own profiles and constraint corrections, loaded as data from
//! `fhir-profiles/definitions/`.
//!
//! * Every `*.json` FHIR resource there (StructureDefinitions written as differentials, ValueSets,
//!   CodeSystems) is added to the store.
//! * `gateway-rules.json` says when our profiles apply and which packaged constraints are replaced:
//!   - `alsoCheck`: `[{ "whenProfile": URL, "profiles": [URL...], "reason": "..." }]` — a resource
//!     validated against `whenProfile` (declared in meta.profile, required by a slice, or requested)
//!     is also validated against `profiles`.
//!   - `forType`: `[{ "resourceType": "Bundle", "profiles": [URL...], "reason": "..." }]` — applied
//!     to every resource of that type.
//!   - `referencePolicy`: `[{ "profile": URL, "id": "...", "allowLogical": false, "literalTargets":
//!     "patient-entry", "reason": "..." }]` — how the entries of a Bundle validated against `profile`
//!     may reference each other (checked on every Reference during the walk).
//!   - `vacuousWithout`: `[{ "key": "dom-2", "element": "contained", "reason": "..." }]` — an
//!     invariant that is true by its expression when the element is absent is not evaluated then.
//!   - `suppressConstraints`: `[{ "key": "...", "profile": URL (optional), "reason": "..." }]` —
//!     packaged invariants that are wrong (each must say why and which of our rules replaces it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::store::{LoadError, PackageStore};
use crate::validator::FxBuild;

#[derive(Debug, Default, Clone)]
pub struct GatewayRules {
    also: HashMap<String, Vec<String>, FxBuild>,
    by_type: HashMap<String, Vec<String>, FxBuild>,
    suppressed: Vec<Suppression>,
    references: HashMap<String, ReferencePolicy, FxBuild>,
    vacuous: HashMap<String, String, FxBuild>,
    /// The resources loaded from the definitions directory (url list).
    pub definitions: Vec<String>,
}

/// A reference policy for the entries of a Bundle validated against `profile`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferencePolicy {
    pub profile: String,
    /// Rule id reported.
    pub id: String,
    /// Whether `Reference.identifier` (logical references) may be used.
    #[serde(default, rename = "allowLogical")]
    pub allow_logical: bool,
    /// `patient-entry` / `first-entry`: a literal reference that is not `#id` must be the fullUrl of
    /// the (first) Patient entry / of the first entry. Empty: not checked.
    #[serde(default, rename = "literalTargets")]
    pub literal_targets: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Suppression {
    pub key: String,
    pub profile: Option<String>,
    pub reason: String,
}

#[derive(Deserialize)]
struct RulesFile {
    #[serde(default, rename = "alsoCheck")]
    also_check: Vec<AlsoCheck>,
    #[serde(default, rename = "forType")]
    for_type: Vec<ForType>,
    #[serde(default, rename = "suppressConstraints")]
    suppress: Vec<Suppression>,
    #[serde(default, rename = "referencePolicy")]
    reference_policy: Vec<ReferencePolicy>,
    #[serde(default, rename = "vacuousWithout")]
    vacuous_without: Vec<Vacuous>,
}

/// A constraint that is true by its expression whenever `element` is absent from the focus.
#[derive(Debug, Clone, Deserialize)]
pub struct Vacuous {
    pub key: String,
    pub element: String,
    #[allow(dead_code)]
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct AlsoCheck {
    #[serde(rename = "whenProfile")]
    when_profile: String,
    profiles: Vec<String>,
    #[allow(dead_code)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ForType {
    #[serde(rename = "resourceType")]
    resource_type: String,
    profiles: Vec<String>,
    #[allow(dead_code)]
    reason: Option<String>,
}

/// `fhir-profiles/definitions` of this crate.
pub fn default_definitions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("definitions")
}

impl GatewayRules {
    /// Load the rules and add the definition resources of `dir` to `store`.
    pub fn load(dir: &Path, store: &PackageStore) -> Result<GatewayRules, LoadError> {
        let mut rules = GatewayRules::default();
        if !dir.is_dir() {
            return Err(LoadError::Package { path: dir.to_path_buf(), message: "gateway definitions directory not found".into() });
        }
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| LoadError::Io { path: dir.to_path_buf(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        for p in names {
            let bytes = std::fs::read(&p).map_err(|source| LoadError::Io { path: p.clone(), source })?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|source| LoadError::Json { path: p.clone(), source })?;
            if v.get("resourceType").is_some() {
                if let Some(u) = v.get("url").and_then(Value::as_str) {
                    rules.definitions.push(u.to_string());
                }
                store.add_resource(v)?;
            } else {
                let f: RulesFile = serde_json::from_value(v).map_err(|e| LoadError::Resource(format!("{}: {e}", p.display())))?;
                for a in f.also_check {
                    rules.also.entry(a.when_profile).or_default().extend(a.profiles);
                }
                for t in f.for_type {
                    rules.by_type.entry(t.resource_type).or_default().extend(t.profiles);
                }
                rules.suppressed.extend(f.suppress);
                for x in f.vacuous_without {
                    rules.vacuous.insert(x.key, x.element);
                }
                for p in f.reference_policy {
                    rules.references.insert(p.profile.clone(), p);
                }
            }
        }
        Ok(rules)
    }

    /// Our profiles to check along with `profile_url` (unversioned URL).
    pub fn also_check(&self, profile_url: &str) -> &[String] {
        self.also.get(profile_url).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The element whose absence makes constraint `key` true (evaluation skipped), if listed.
    pub fn vacuous_without(&self, key: &str) -> Option<&str> {
        self.vacuous.get(key).map(String::as_str)
    }

    /// The reference policy for Bundles validated against `profile_url`.
    pub fn reference_policy(&self, profile_url: &str) -> Option<&ReferencePolicy> {
        self.references.get(profile_url)
    }

    /// Our profiles for every resource of a type.
    pub fn for_type(&self, resource_type: &str) -> &[String] {
        self.by_type.get(resource_type).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Is the packaged constraint `key` (in profile `profile_url`, defined in `source`) suppressed?
    pub fn is_suppressed(&self, key: &str, profile_url: &str, source: &str) -> bool {
        self.suppressed.iter().any(|s| s.key == key && s.profile.as_deref().is_none_or(|p| p == profile_url || p == source))
    }

    pub fn suppressions(&self) -> &[Suppression] {
        &self.suppressed
    }
}
