//! Code-system identity: aliases (OID and URL forms of one system), systems known to exist
//! without loaded content, and package definitions to ignore. Data, not code: the defaults are
//! `data/systems.json`, and NamingSystem resources add aliases at load time.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// The default identity data shipped with the crate.
pub const DEFAULT_SYSTEMS_JSON: &str = include_str!("../data/systems.json");

/// Alias table and the list of known external systems.
#[derive(Debug, Clone, Default)]
pub struct Systems {
    /// any URI -> preferred URI
    preferred: HashMap<String, String>,
    /// preferred URI -> all URIs of the group (preferred first)
    groups: HashMap<String, Vec<String>>,
    /// preferred URI -> name, for systems whose content is not loaded
    external: HashMap<String, String>,
    /// URL -> reason
    ignore_package: HashMap<String, String>,
}

impl Systems {
    /// The shipped defaults.
    pub fn defaults() -> Systems {
        let v: Value = serde_json::from_str(DEFAULT_SYSTEMS_JSON).expect("data/systems.json is valid JSON");
        let mut s = Systems::default();
        s.merge_json(&v);
        s
    }

    /// Merge a systems JSON document (same shape as `data/systems.json`).
    pub fn merge_json(&mut self, v: &Value) {
        for g in v.get("aliases").and_then(Value::as_array).into_iter().flatten() {
            let uris: Vec<&str> = g.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            self.add_group(&uris);
        }
        for e in v.get("external").and_then(Value::as_array).into_iter().flatten() {
            if let Some(u) = e.get("url").and_then(Value::as_str) {
                let name = e.get("name").and_then(Value::as_str).unwrap_or(u).to_string();
                let p = self.canonical(u).to_string();
                self.external.insert(p, name);
            }
        }
        for e in v.get("ignore_package_code_systems").and_then(Value::as_array).into_iter().flatten() {
            if let Some(u) = e.get("url").and_then(Value::as_str) {
                self.ignore_package.insert(u.to_string(), e.get("reason").and_then(Value::as_str).unwrap_or("").to_string());
            }
        }
    }

    /// Declare that the URIs name one system. If some of them already belong to groups, the
    /// groups are merged and the earliest existing preferred URI stays preferred.
    pub fn add_group(&mut self, uris: &[&str]) {
        if uris.is_empty() {
            return;
        }
        let existing: Vec<String> = uris.iter().filter_map(|u| self.preferred.get(*u).cloned()).collect();
        let pref = existing.first().cloned().unwrap_or_else(|| uris[0].to_string());
        let mut members: Vec<String> = self.groups.remove(&pref).unwrap_or_else(|| vec![pref.clone()]);
        for e in &existing {
            if e != &pref
                && let Some(m) = self.groups.remove(e) {
                    members.extend(m);
                }
        }
        members.extend(uris.iter().map(|u| u.to_string()));
        let mut seen = HashSet::new();
        members.retain(|m| seen.insert(m.clone()));
        for m in &members {
            self.preferred.insert(m.clone(), pref.clone());
        }
        // external names follow the group's preferred URI
        for m in &members {
            if m != &pref
                && let Some(n) = self.external.remove(m) {
                    self.external.entry(pref.clone()).or_insert(n);
                }
        }
        self.groups.insert(pref, members);
    }

    /// Aliases from a NamingSystem resource (kind = codesystem): its `uri` and `oid` unique ids.
    pub fn add_naming_system(&mut self, ns: &Value) {
        if ns.get("kind").and_then(Value::as_str) != Some("codesystem") {
            return;
        }
        let mut uris: Vec<String> = Vec::new();
        let mut preferred: Option<String> = None;
        for u in ns.get("uniqueId").and_then(Value::as_array).into_iter().flatten() {
            let Some(v) = u.get("value").and_then(Value::as_str) else { continue };
            let uri = match u.get("type").and_then(Value::as_str) {
                Some("uri") => v.to_string(),
                Some("oid") => format!("urn:oid:{v}"),
                _ => continue,
            };
            if u.get("preferred").and_then(Value::as_bool) == Some(true) && preferred.is_none() {
                preferred = Some(uri.clone());
            }
            uris.push(uri);
        }
        if uris.len() < 2 {
            return;
        }
        if let Some(p) = preferred
            && !uris.iter().any(|u| self.preferred.contains_key(u)) {
                uris.retain(|u| u != &p);
                uris.insert(0, p);
            }
        let refs: Vec<&str> = uris.iter().map(String::as_str).collect();
        self.add_group(&refs);
    }

    /// The preferred URI of `uri` (itself when it has no aliases).
    pub fn canonical<'a>(&'a self, uri: &'a str) -> &'a str {
        self.preferred.get(uri).map(String::as_str).unwrap_or(uri)
    }

    /// All URIs naming the same system as `uri` (at least `uri` itself).
    pub fn aliases_of(&self, uri: &str) -> Vec<String> {
        match self.groups.get(self.canonical(uri)) {
            Some(g) => g.clone(),
            None => vec![uri.to_string()],
        }
    }

    /// Every alias group (preferred first).
    pub fn groups(&self) -> impl Iterator<Item = &Vec<String>> {
        self.groups.values()
    }

    /// Same system?
    pub fn same(&self, a: &str, b: &str) -> bool {
        a == b || self.canonical(a) == self.canonical(b)
    }

    /// Name of an external system (known to exist, content not loaded).
    pub fn external_name(&self, uri: &str) -> Option<&str> {
        self.external.get(self.canonical(uri)).map(String::as_str)
    }

    /// Why a package definition of this URL must be ignored, if it must.
    pub fn ignored_package_definition(&self, url: &str) -> Option<&str> {
        self.ignore_package.get(url).map(String::as_str)
    }
}
