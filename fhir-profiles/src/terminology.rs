//! Minimal terminology: value-set membership from the ValueSets and CodeSystems in the store.
//! Behind the [`Terminology`] trait so that a dedicated terminology service can replace it.

use crate::validator::FxBuild;

// Fx-hashed maps: membership checks hash short codes and system URLs on every coded value.
type HashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;
type HashSet<K> = std::collections::HashSet<K, FxBuild>;
use std::sync::Arc;

use serde_json::Value;

use crate::store::{PackageStore, split_canonical};

/// Result of a membership check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Member,
    NotMember,
    /// Could not be decided (value set or code system content not available); the reason.
    Unknown(String),
}

/// Terminology lookups used by the validator.
pub trait Terminology: Send + Sync {
    /// Is `code` (from `system`, or any system when `None`) in value set `value_set` (canonical,
    /// `|version` allowed)?
    fn validate_code(&self, value_set: &str, system: Option<&str>, code: &str) -> Membership;
    /// Display name of the value set, for messages.
    fn value_set_name(&self, value_set: &str) -> Option<String> {
        let _ = value_set;
        None
    }
}

/// Index of one CodeSystem's content.
#[derive(Debug, Default)]
pub struct CodeSystemIndex {
    pub url: String,
    pub content: String,
    pub case_sensitive: bool,
    pub codes: HashSet<String>,
    pub children: HashMap<String, Vec<String>>,
    /// code -> [(property, value as string)]
    pub properties: HashMap<String, Vec<(String, String)>>,
}

impl CodeSystemIndex {
    fn from_json(cs: &Value) -> CodeSystemIndex {
        let mut idx = CodeSystemIndex {
            url: cs.get("url").and_then(Value::as_str).unwrap_or("").to_string(),
            content: cs.get("content").and_then(Value::as_str).unwrap_or("complete").to_string(),
            case_sensitive: cs.get("caseSensitive").and_then(Value::as_bool).unwrap_or(true),
            ..Default::default()
        };
        fn walk(idx: &mut CodeSystemIndex, concepts: &[Value], parent: Option<&str>) {
            for c in concepts {
                let Some(code) = c.get("code").and_then(Value::as_str) else { continue };
                idx.codes.insert(code.to_string());
                if let Some(p) = parent {
                    idx.children.entry(p.to_string()).or_default().push(code.to_string());
                }
                if let Some(props) = c.get("property").and_then(Value::as_array) {
                    for p in props {
                        let pc = p.get("code").and_then(Value::as_str).unwrap_or("");
                        let val = p
                            .as_object()
                            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v))
                            .map(|v| match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .unwrap_or_default();
                        if pc == "parent" || pc == "subsumedBy" {
                            idx.children.entry(val.clone()).or_default().push(code.to_string());
                        }
                        idx.properties.entry(code.to_string()).or_default().push((pc.to_string(), val));
                    }
                }
                if let Some(sub) = c.get("concept").and_then(Value::as_array) {
                    walk(idx, sub, Some(code));
                }
            }
        }
        if let Some(c) = cs.get("concept").and_then(Value::as_array) {
            walk(&mut idx, c, None);
        }
        idx
    }

    fn descendants(&self, code: &str, out: &mut HashSet<String>) {
        if let Some(ch) = self.children.get(code) {
            for c in ch {
                if out.insert(c.clone()) {
                    self.descendants(c, out);
                }
            }
        }
    }
}

/// Compiled membership of a ValueSet.
#[derive(Debug, Default)]
pub struct ValueSetMembership {
    pub url: String,
    pub name: Option<String>,
    /// Definitive codes per system.
    pub known: HashMap<String, HashSet<String>>,
    /// Systems whose membership cannot be decided, with the reason.
    pub unknown_systems: HashMap<String, String>,
    pub excluded: HashMap<String, HashSet<String>>,
    /// The value set as a whole could not be resolved.
    pub unresolved: Option<String>,
    /// Codes of case-insensitive systems are stored upper-cased.
    pub case_insensitive: HashSet<String>,
}

impl ValueSetMembership {
    pub fn check(&self, system: Option<&str>, code: &str) -> Membership {
        if let Some(r) = &self.unresolved {
            return Membership::Unknown(r.clone());
        }
        let norm = |s: &str| -> std::borrow::Cow<'_, str> {
            if !self.case_insensitive.is_empty() && self.case_insensitive.contains(s) { code.to_ascii_uppercase().into() } else { code.into() }
        };
        match system {
            Some(s) => {
                let c = norm(s);
                if self.excluded.get(s).is_some_and(|x| x.contains(c.as_ref())) {
                    return Membership::NotMember;
                }
                if self.known.get(s).is_some_and(|x| x.contains(c.as_ref())) {
                    return Membership::Member;
                }
                if let Some(r) = self.unknown_systems.get(s) {
                    return Membership::Unknown(r.clone());
                }
                Membership::NotMember
            }
            None => {
                for (s, set) in &self.known {
                    if set.contains(norm(s).as_ref()) && !self.excluded.get(s).is_some_and(|x| x.contains(norm(s).as_ref())) {
                        return Membership::Member;
                    }
                }
                if let Some((_, r)) = self.unknown_systems.iter().next() {
                    return Membership::Unknown(r.clone());
                }
                Membership::NotMember
            }
        }
    }

    fn absorb(&mut self, other: &ValueSetMembership) {
        if let Some(r) = &other.unresolved {
            self.unresolved.get_or_insert_with(|| r.clone());
        }
        for (s, set) in &other.known {
            self.known.entry(s.clone()).or_default().extend(set.iter().cloned());
        }
        for (s, r) in &other.unknown_systems {
            self.unknown_systems.entry(s.clone()).or_insert_with(|| r.clone());
        }
        for (s, set) in &other.excluded {
            self.excluded.entry(s.clone()).or_default().extend(set.iter().cloned());
        }
        self.case_insensitive.extend(other.case_insensitive.iter().cloned());
    }
}

impl PackageStore {
    /// Index of a CodeSystem (cached).
    pub fn code_system(&self, canonical: &str) -> Option<Arc<CodeSystemIndex>> {
        if let Some(v) = self.codesystems.read().unwrap().get(canonical) {
            return v.clone();
        }
        let r = self
            .resolve(canonical)
            .filter(|v| v.get("resourceType").and_then(Value::as_str) == Some("CodeSystem"))
            .map(|cs| Arc::new(CodeSystemIndex::from_json(&cs)));
        self.codesystems.write().unwrap().insert(canonical.to_string(), r.clone());
        r
    }

    /// Compiled membership of a ValueSet (cached).
    pub fn value_set(&self, canonical: &str) -> Arc<ValueSetMembership> {
        if let Some(v) = self.valuesets.read().unwrap().get(canonical) {
            return v.clone();
        }
        let v = Arc::new(self.compile_value_set(canonical, 0));
        self.valuesets.write().unwrap().insert(canonical.to_string(), v.clone());
        v
    }

    fn compile_value_set(&self, canonical: &str, depth: usize) -> ValueSetMembership {
        let mut m = ValueSetMembership { url: canonical.to_string(), ..Default::default() };
        let vs = self.resolve(canonical).or_else(|| self.resolve(split_canonical(canonical).0));
        let Some(vs) = vs.filter(|v| v.get("resourceType").and_then(Value::as_str) == Some("ValueSet")) else {
            m.unresolved = Some(format!("the value set {canonical} is not available"));
            return m;
        };
        m.name = vs.get("title").or_else(|| vs.get("name")).and_then(Value::as_str).map(str::to_string);
        if depth > 10 {
            m.unresolved = Some("value set imports nest too deeply".into());
            return m;
        }
        let compose = vs.get("compose");
        if let Some(c) = compose {
            for inc in c.get("include").and_then(Value::as_array).into_iter().flatten() {
                let part = self.compile_include(inc, depth);
                m.absorb(&part);
            }
            for exc in c.get("exclude").and_then(Value::as_array).into_iter().flatten() {
                let part = self.compile_include(exc, depth);
                if part.unresolved.is_none() && part.unknown_systems.is_empty() {
                    for (s, set) in part.known {
                        m.excluded.entry(s).or_default().extend(set);
                    }
                } else {
                    for s in part.known.keys().chain(part.unknown_systems.keys()) {
                        m.unknown_systems.entry(s.clone()).or_insert_with(|| "an exclude of the value set could not be evaluated".into());
                    }
                }
            }
        } else if let Some(exp) = vs.get("expansion") {
            fn walk(m: &mut ValueSetMembership, contains: &[Value]) {
                for c in contains {
                    if let (Some(s), Some(code)) = (c.get("system").and_then(Value::as_str), c.get("code").and_then(Value::as_str)) {
                        m.known.entry(s.to_string()).or_default().insert(code.to_string());
                    }
                    if let Some(sub) = c.get("contains").and_then(Value::as_array) {
                        walk(m, sub);
                    }
                }
            }
            walk(&mut m, exp.get("contains").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]));
        } else {
            m.unresolved = Some(format!("the value set {canonical} has neither compose nor expansion"));
        }
        m
    }

    fn compile_include(&self, inc: &Value, depth: usize) -> ValueSetMembership {
        let mut m = ValueSetMembership::default();
        let system = inc.get("system").and_then(Value::as_str);
        let imports: Vec<&str> = inc.get("valueSet").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        if system.is_none() {
            for vs in imports {
                let sub = self.compile_value_set(vs, depth + 1);
                m.absorb(&sub);
            }
            return m;
        }
        let system = system.unwrap();
        let version = inc.get("version").and_then(Value::as_str);
        if let Some(concepts) = inc.get("concept").and_then(Value::as_array) {
            let set = m.known.entry(system.to_string()).or_default();
            for c in concepts {
                if let Some(code) = c.get("code").and_then(Value::as_str) {
                    set.insert(code.to_string());
                }
            }
            return m;
        }
        let cs_canon = match version {
            Some(v) => format!("{system}|{v}"),
            None => system.to_string(),
        };
        let cs = self.code_system(&cs_canon).or_else(|| self.code_system(system));
        let Some(cs) = cs else {
            m.unknown_systems.insert(system.to_string(), format!("the code system {system} is not available, so the code could not be checked"));
            return m;
        };
        if cs.content != "complete" {
            m.unknown_systems.insert(system.to_string(), format!("the content of code system {system} is '{}' (not complete), so the code could not be checked", cs.content));
            return m;
        }
        if !cs.case_sensitive {
            m.case_insensitive.insert(system.to_string());
        }
        let norm = |c: &str| if cs.case_sensitive { c.to_string() } else { c.to_ascii_uppercase() };
        let filters = inc.get("filter").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut result: HashSet<String> = cs.codes.iter().map(|c| norm(c)).collect();
        for f in &filters {
            let prop = f.get("property").and_then(Value::as_str).unwrap_or("");
            let op = f.get("op").and_then(Value::as_str).unwrap_or("");
            let val = f.get("value").and_then(Value::as_str).unwrap_or("");
            let mut sel: HashSet<String> = HashSet::default();
            match (prop, op) {
                ("concept", "is-a") => {
                    if cs.codes.contains(val) {
                        sel.insert(val.to_string());
                    }
                    cs.descendants(val, &mut sel);
                }
                ("concept", "descendent-of") => cs.descendants(val, &mut sel),
                ("concept", "is-not-a") => {
                    let mut ex = HashSet::default();
                    ex.insert(val.to_string());
                    cs.descendants(val, &mut ex);
                    sel = cs.codes.iter().filter(|c| !ex.contains(*c)).cloned().collect();
                }
                ("concept", "in") => sel = val.split(',').map(|s| s.trim().to_string()).filter(|c| cs.codes.contains(c)).collect(),
                ("concept" | "code", "=") => {
                    if cs.codes.contains(val) {
                        sel.insert(val.to_string());
                    }
                }
                (p, "=") => {
                    for (code, props) in &cs.properties {
                        if props.iter().any(|(k, v)| k == p && v == val) {
                            sel.insert(code.clone());
                        }
                    }
                }
                _ => {
                    m.unknown_systems.insert(system.to_string(), format!("the value set filter '{prop} {op} {val}' on {system} is not supported, so the code could not be checked"));
                    return m;
                }
            }
            let sel: HashSet<String> = sel.iter().map(|c| norm(c)).collect();
            result.retain(|c| sel.contains(c));
        }
        if !imports.is_empty() {
            // system AND value set(s): intersection
            for vs in imports {
                let sub = self.compile_value_set(vs, depth + 1);
                if sub.unresolved.is_some() || sub.unknown_systems.contains_key(system) {
                    m.unknown_systems.insert(system.to_string(), format!("the imported value set {vs} could not be evaluated"));
                    return m;
                }
                let empty = HashSet::default();
                let other = sub.known.get(system).unwrap_or(&empty);
                result.retain(|c| other.contains(c));
            }
        }
        m.known.insert(system.to_string(), result);
        m
    }
}


/// The built-in terminology over a [`PackageStore`].
pub struct PackageTerminology {
    pub store: Arc<PackageStore>,
}

impl Terminology for PackageTerminology {
    fn validate_code(&self, value_set: &str, system: Option<&str>, code: &str) -> Membership {
        self.store.value_set(value_set).check(system, code)
    }
    fn value_set_name(&self, value_set: &str) -> Option<String> {
        self.store.value_set(value_set).name.clone()
    }
}
