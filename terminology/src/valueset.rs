//! ValueSets compiled for membership checks and expansion.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::codesystem::{CodeSystem, Content};
use crate::{FastMap, FastSet};

/// What a code system reference resolves to.
#[derive(Debug, Clone)]
pub enum CsRef {
    /// Loaded.
    Found(Arc<CodeSystem>),
    /// Known to exist, content not loaded (name).
    External(String),
    /// Not known at all.
    Unknown,
}

/// Access to the definitions a value set needs.
pub trait Resolver {
    fn code_system(&self, system: &str, version: Option<&str>) -> CsRef;
    fn value_set(&self, canonical: &str) -> Option<Arc<CompiledValueSet>>;
    fn canonical_system<'a>(&'a self, system: &'a str) -> &'a str;
}

/// Result of a membership check.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Member: system (as in the value set), display (from the code system or the value set).
    Member { system: String, display: Option<String>, inactive: bool },
    NotMember,
    /// Cannot be decided, with the reason.
    Unknown(String),
}

/// One expansion entry.
#[derive(Debug, Clone)]
pub struct Item {
    pub system: String,
    pub version: Option<String>,
    pub code: String,
    pub display: Option<String>,
    pub is_abstract: bool,
    pub inactive: bool,
}

#[derive(Debug)]
enum Kind {
    /// Every concept of a complete code system.
    All(Arc<CodeSystem>),
    /// A fixed set of codes (enumerated or the result of filters); the CodeSystem when loaded.
    Codes { cs: Option<Arc<CodeSystem>>, order: Vec<(String, Option<String>)>, set: FastSet<String>, case_sensitive: bool },
    /// Cannot be decided (reason).
    Undecidable(String),
    /// Only imported value sets (union of the intersection semantic below is handled by `imports`).
    None,
}

#[derive(Debug)]
struct Clause {
    /// Canonical system URI (None for a value-set-only include).
    system: Option<String>,
    kind: Kind,
    /// Imported value sets: the clause is the intersection of its system part and all of them.
    imports: Vec<Arc<CompiledValueSet>>,
}

/// A compiled ValueSet.
#[derive(Debug)]
pub struct CompiledValueSet {
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    includes: Vec<Clause>,
    excludes: Vec<Clause>,
    /// The whole value set cannot be evaluated (reason).
    pub problem: Option<String>,
}

/// Errors of an expansion.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpandError {
    /// More than `limit` codes.
    TooCostly { limit: usize },
    /// Some part cannot be enumerated (reason).
    NotEnumerable(String),
}

impl CompiledValueSet {
    /// Compile a ValueSet resource.
    pub fn compile(vs: &Value, r: &dyn Resolver, depth: usize) -> CompiledValueSet {
        let s = |k: &str| vs.get(k).and_then(Value::as_str).map(str::to_string);
        let mut out = CompiledValueSet { url: s("url").unwrap_or_default(), version: s("version"), name: s("name"), title: s("title"), includes: Vec::new(), excludes: Vec::new(), problem: None };
        if depth > 16 {
            out.problem = Some("value set imports nest too deeply (or are circular)".into());
            return out;
        }
        if let Some(compose) = vs.get("compose") {
            for inc in compose.get("include").and_then(Value::as_array).into_iter().flatten() {
                out.includes.push(compile_clause(inc, r, depth));
            }
            for exc in compose.get("exclude").and_then(Value::as_array).into_iter().flatten() {
                out.excludes.push(compile_clause(exc, r, depth));
            }
        } else if let Some(exp) = vs.get("expansion") {
            // A stored expansion: take it as an enumeration per system.
            let mut per: FastMap<String, Vec<(String, Option<String>)>> = FastMap::default();
            let mut order: Vec<String> = Vec::new();
            fn walk(c: &[Value], per: &mut FastMap<String, Vec<(String, Option<String>)>>, order: &mut Vec<String>, r: &dyn Resolver) {
                for e in c {
                    if let (Some(s), Some(code)) = (e.get("system").and_then(Value::as_str), e.get("code").and_then(Value::as_str)) {
                        let s = r.canonical_system(s).to_string();
                        if !per.contains_key(&s) {
                            order.push(s.clone());
                        }
                        per.entry(s).or_default().push((code.to_string(), e.get("display").and_then(Value::as_str).map(str::to_string)));
                    }
                    if let Some(sub) = e.get("contains").and_then(Value::as_array) {
                        walk(sub, per, order, r);
                    }
                }
            }
            walk(exp.get("contains").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]), &mut per, &mut order, r);
            for sys in order {
                let codes = per.remove(&sys).unwrap_or_default();
                let set = codes.iter().map(|(c, _)| c.clone()).collect();
                out.includes.push(Clause { system: Some(sys), kind: Kind::Codes { cs: None, order: codes, set, case_sensitive: true }, imports: Vec::new() });
            }
        } else {
            out.problem = Some(format!("the value set {} has neither compose nor expansion", out.url));
        }
        out
    }

    /// Label for messages.
    pub fn label(&self) -> &str {
        self.title.as_deref().or(self.name.as_deref()).unwrap_or(&self.url)
    }

    /// Is (system, code) in the value set? `system` None: any system. `system` must already be
    /// canonical (see [`Resolver::canonical_system`]).
    pub fn check(&self, system: Option<&str>, code: &str) -> Check {
        if let Some(p) = &self.problem {
            return Check::Unknown(p.clone());
        }
        let mut unknown: Option<String> = None;
        for ex in &self.excludes {
            match clause_check(ex, system, code) {
                Check::Member { .. } => return Check::NotMember,
                Check::Unknown(r) => {
                    unknown.get_or_insert(r);
                }
                Check::NotMember => {}
            }
        }
        let mut found: Option<Check> = None;
        for inc in &self.includes {
            match clause_check(inc, system, code) {
                m @ Check::Member { .. } => {
                    found = Some(m);
                    break;
                }
                Check::Unknown(r) => {
                    unknown.get_or_insert(r);
                }
                Check::NotMember => {}
            }
        }
        match (found, unknown) {
            (Some(m), None) => m,
            // member of an include, but an exclude could not be evaluated
            (Some(_), Some(r)) => Check::Unknown(r),
            (None, Some(r)) => Check::Unknown(r),
            (None, None) => Check::NotMember,
        }
    }

    /// Every code, in definition order, each (system, code) once; at most `limit` codes.
    pub fn enumerate(&self, limit: usize) -> Result<Vec<Item>, ExpandError> {
        if let Some(p) = &self.problem {
            return Err(ExpandError::NotEnumerable(p.clone()));
        }
        let mut out: Vec<Item> = Vec::new();
        let mut seen: FastSet<(String, String)> = FastSet::default();
        for inc in &self.includes {
            let items = clause_items(inc, limit)?;
            for it in items {
                if self.excludes.iter().any(|ex| matches!(clause_check(ex, Some(&it.system), &it.code), Check::Member { .. })) {
                    continue;
                }
                if let Some(ex) = self.excludes.iter().find_map(|ex| match clause_check(ex, Some(&it.system), &it.code) {
                    Check::Unknown(r) => Some(r),
                    _ => None,
                }) {
                    return Err(ExpandError::NotEnumerable(ex));
                }
                if seen.insert((it.system.clone(), it.code.clone())) {
                    out.push(it);
                    if out.len() > limit {
                        return Err(ExpandError::TooCostly { limit });
                    }
                }
            }
        }
        Ok(out)
    }
}

fn clause_check(c: &Clause, system: Option<&str>, code: &str) -> Check {
    let own = match (&c.system, system) {
        (Some(cs), Some(s)) if cs != s => return Check::NotMember,
        (Some(cs), _) => match &c.kind {
            Kind::All(sys) => match sys.concept(code) {
                Some(con) => Check::Member { system: cs.clone(), display: con.display.clone(), inactive: con.is_inactive() },
                None => Check::NotMember,
            },
            Kind::Codes { cs: sys, order, set, case_sensitive } => {
                let hit = if *case_sensitive { set.contains(code) } else { set.contains(&code.to_ascii_uppercase()) };
                if hit {
                    let con = sys.as_ref().and_then(|s| s.concept(code));
                    let display = con.and_then(|c| c.display.clone()).or_else(|| order.iter().find(|(c, _)| c.eq_ignore_ascii_case(code)).and_then(|(_, d)| d.clone()));
                    Check::Member { system: cs.clone(), display, inactive: con.is_some_and(|c| c.is_inactive()) }
                } else {
                    Check::NotMember
                }
            }
            Kind::Undecidable(r) => Check::Unknown(r.clone()),
            Kind::None => Check::NotMember,
        },
        (None, _) => {
            // value-set-only include: union semantics over the imports' intersection
            let mut acc: Option<Check> = None;
            for vs in &c.imports {
                match vs.check(system, code) {
                    Check::NotMember => return Check::NotMember,
                    Check::Unknown(r) => acc = Some(Check::Unknown(r)),
                    m @ Check::Member { .. } => {
                        if acc.is_none() {
                            acc = Some(m)
                        }
                    }
                }
            }
            return acc.unwrap_or(Check::NotMember);
        }
    };
    if let Check::Member { .. } = own {
        for vs in &c.imports {
            match vs.check(system, code) {
                Check::NotMember => return Check::NotMember,
                Check::Unknown(r) => return Check::Unknown(r),
                _ => {}
            }
        }
    }
    own
}

fn clause_items(c: &Clause, limit: usize) -> Result<Vec<Item>, ExpandError> {
    let mut items: Vec<Item> = match (&c.system, &c.kind) {
        (Some(sys), Kind::All(cs)) => {
            if cs.concepts.len() > limit {
                return Err(ExpandError::TooCostly { limit });
            }
            cs.concepts
                .iter()
                .map(|con| Item { system: sys.clone(), version: cs.version.clone(), code: con.code.clone(), display: con.display.clone(), is_abstract: con.is_abstract(), inactive: con.is_inactive() })
                .collect()
        }
        (Some(sys), Kind::Codes { cs, order, .. }) => {
            if order.len() > limit {
                return Err(ExpandError::TooCostly { limit });
            }
            order
                .iter()
                .map(|(code, d)| {
                    let con = cs.as_ref().and_then(|s| s.concept(code));
                    Item {
                        system: sys.clone(),
                        version: cs.as_ref().and_then(|s| s.version.clone()),
                        code: code.clone(),
                        display: d.clone().or_else(|| con.and_then(|c| c.display.clone())),
                        is_abstract: con.is_some_and(|c| c.is_abstract()),
                        inactive: con.is_some_and(|c| c.is_inactive()),
                    }
                })
                .collect()
        }
        (_, Kind::Undecidable(r)) => return Err(ExpandError::NotEnumerable(r.clone())),
        (None, _) | (Some(_), Kind::None) => {
            // value sets only: the first import enumerated, filtered by the others
            let Some(first) = c.imports.first() else { return Ok(Vec::new()) };
            let items = first.enumerate(limit)?;
            return Ok(items.into_iter().filter(|it| c.imports[1..].iter().all(|vs| matches!(vs.check(Some(&it.system), &it.code), Check::Member { .. }))).collect());
        }
    };
    if !c.imports.is_empty() {
        items.retain(|it| c.imports.iter().all(|vs| matches!(vs.check(Some(&it.system), &it.code), Check::Member { .. })));
    }
    Ok(items)
}

fn compile_clause(inc: &Value, r: &dyn Resolver, depth: usize) -> Clause {
    let imports: Vec<Arc<CompiledValueSet>> = inc
        .get("valueSet")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|u| {
            r.value_set(u).unwrap_or_else(|| {
                Arc::new(CompiledValueSet { url: u.to_string(), version: None, name: None, title: None, includes: Vec::new(), excludes: Vec::new(), problem: Some(format!("the imported value set {u} is not available")) })
            })
        })
        .collect();
    let _ = depth;
    let Some(system_raw) = inc.get("system").and_then(Value::as_str) else {
        return Clause { system: None, kind: Kind::None, imports };
    };
    let system = r.canonical_system(system_raw).to_string();
    let version = inc.get("version").and_then(Value::as_str);
    let cs = r.code_system(system_raw, version);
    let concepts = inc.get("concept").and_then(Value::as_array);
    let filters = inc.get("filter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    if let Some(list) = concepts {
        // Enumerated codes: membership is decided by the list itself.
        let cs_loaded = match &cs {
            CsRef::Found(c) => Some(c.clone()),
            _ => None,
        };
        let case_sensitive = cs_loaded.as_ref().is_none_or(|c| c.case_sensitive);
        let mut order = Vec::new();
        let mut set = FastSet::default();
        for c in list {
            if let Some(code) = c.get("code").and_then(Value::as_str) {
                order.push((code.to_string(), c.get("display").and_then(Value::as_str).map(str::to_string)));
                set.insert(if case_sensitive { code.to_string() } else { code.to_ascii_uppercase() });
            }
        }
        return Clause { system: Some(system), kind: Kind::Codes { cs: cs_loaded, order, set, case_sensitive }, imports };
    }
    let cs = match cs {
        CsRef::Found(c) => c,
        CsRef::External(name) => {
            return Clause { system: Some(system.clone()), kind: Kind::Undecidable(format!("the content of code system {system_raw} ({name}) is not loaded here, so codes from it cannot be checked")), imports };
        }
        CsRef::Unknown => {
            let v = version.map(|v| format!(" version {v}")).unwrap_or_default();
            return Clause { system: Some(system.clone()), kind: Kind::Undecidable(format!("the code system {system_raw}{v} is unknown, so codes from it cannot be checked")), imports };
        }
    };
    if cs.content != Content::Complete {
        return Clause {
            system: Some(system),
            kind: Kind::Undecidable(format!("the code system {system_raw} has content '{}' (not complete), so membership cannot be checked", cs.content.as_str())),
            imports,
        };
    }
    if filters.is_empty() {
        return Clause { system: Some(system), kind: Kind::All(cs), imports };
    }
    let mut selected: Option<Vec<bool>> = None;
    for f in filters {
        let prop = f.get("property").and_then(Value::as_str).unwrap_or("");
        let op = f.get("op").and_then(Value::as_str).unwrap_or("");
        let val = f.get("value").and_then(Value::as_str).unwrap_or("");
        match apply_filter(&cs, prop, op, val) {
            Ok(sel) => {
                selected = Some(match selected {
                    None => sel,
                    Some(prev) => prev.iter().zip(sel.iter()).map(|(a, b)| *a && *b).collect(),
                })
            }
            Err(reason) => return Clause { system: Some(system), kind: Kind::Undecidable(reason), imports },
        }
    }
    let sel = selected.unwrap_or_default();
    let mut order = Vec::new();
    let mut set = FastSet::default();
    for (i, on) in sel.iter().enumerate() {
        if *on {
            let c = &cs.concepts[i];
            order.push((c.code.clone(), None));
            set.insert(if cs.case_sensitive { c.code.clone() } else { c.code.to_ascii_uppercase() });
        }
    }
    let case_sensitive = cs.case_sensitive;
    Clause { system: Some(system), kind: Kind::Codes { cs: Some(cs), order, set, case_sensitive }, imports }
}

/// Evaluate one `compose.include.filter` on a code system: a selection mask over its concepts.
fn apply_filter(cs: &CodeSystem, prop: &str, op: &str, val: &str) -> Result<Vec<bool>, String> {
    let n = cs.concepts.len();
    let mut sel = vec![false; n];
    let unsupported = || format!("the value set filter '{prop} {op} {val}' on {} is not supported, so membership cannot be checked", cs.url);
    let is_hier = matches!(prop, "concept" | "code" | "parent" | "child");
    match op {
        "is-a" | "descendent-of" | "is-not-a" | "generalizes" if is_hier => {
            let Some(root) = cs.find(val) else {
                // unknown root: empty (is-not-a: everything)
                if op == "is-not-a" {
                    sel.iter_mut().for_each(|s| *s = true);
                }
                return Ok(sel);
            };
            let mut seen = vec![false; n];
            let mut list = Vec::new();
            if op == "generalizes" {
                cs.ancestors(root, &mut list, &mut seen);
            } else {
                cs.descendants(root, &mut list, &mut seen);
            }
            for i in list {
                sel[i as usize] = true;
            }
            if op != "descendent-of" {
                sel[root as usize] = true;
            }
            if op == "is-not-a" {
                sel.iter_mut().for_each(|s| *s = !*s);
            }
        }
        "in" | "not-in" if matches!(prop, "concept" | "code") => {
            let wanted: HashSet<&str> = val.split(',').map(str::trim).collect();
            for (i, c) in cs.concepts.iter().enumerate() {
                let hit = wanted.contains(c.code.as_str()) || (!cs.case_sensitive && wanted.iter().any(|w| w.eq_ignore_ascii_case(&c.code)));
                sel[i] = if op == "in" { hit } else { !hit };
            }
        }
        "=" | "regex" | "exists" => {
            let re = if op == "regex" {
                Some(regex::Regex::new(&format!("^(?:{val})$")).map_err(|e| format!("invalid regex in value set filter: {e}"))?)
            } else {
                None
            };
            for (i, c) in cs.concepts.iter().enumerate() {
                let values: Vec<String> = match prop {
                    "code" | "concept" => vec![c.code.clone()],
                    "display" => c.display.iter().cloned().collect(),
                    p => c.properties.iter().filter(|(k, _, _)| k == p).map(|(_, _, v)| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect(),
                };
                sel[i] = match op {
                    "=" => values.iter().any(|v| v == val),
                    "regex" => values.iter().any(|v| re.as_ref().unwrap().is_match(v)),
                    _ => (val == "true") != values.is_empty(),
                };
            }
        }
        _ => return Err(unsupported()),
    }
    Ok(sel)
}
