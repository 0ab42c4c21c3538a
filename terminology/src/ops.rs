//! The FHIR R4 terminology operations over a [`Snapshot`]: `$lookup`, `$validate-code`
//! (CodeSystem and ValueSet), `$expand` and `$translate`. Each returns the FHIR JSON the operation
//! defines (Parameters or ValueSet) or an [`OpError`] carrying an OperationOutcome and an HTTP status.

use serde_json::{Map, Value, json};

use crate::codesystem::{CodeSystem, Content};
use crate::conceptmap::{ConceptMap, Equivalence, Unmapped};
use crate::service::{Snapshot, TerminologyService, split_canonical};
use crate::valueset::{Check, CsRef, ExpandError};

/// An operation failure: HTTP status and OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub status: u16,
    pub outcome: Value,
}

impl OpError {
    pub fn new(status: u16, code: &str, diagnostics: impl Into<String>) -> OpError {
        OpError { status, outcome: outcome("error", code, &diagnostics.into()) }
    }
    /// The diagnostics text of the first issue.
    pub fn message(&self) -> &str {
        self.outcome.pointer("/issue/0/diagnostics").and_then(Value::as_str).unwrap_or("")
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message())
    }
}

impl std::error::Error for OpError {}

/// An OperationOutcome with one issue.
pub fn outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]})
}

/// Builder of a Parameters resource.
#[derive(Default)]
struct Params(Vec<Value>);

impl Params {
    fn add(&mut self, name: &str, key: &str, v: Value) -> &mut Self {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(name.into()));
        m.insert(key.into(), v);
        self.0.push(Value::Object(m));
        self
    }
    fn parts(&mut self, name: &str, parts: Vec<Value>) -> &mut Self {
        self.0.push(json!({"name": name, "part": parts}));
        self
    }
    fn build(self) -> Value {
        json!({"resourceType": "Parameters", "parameter": self.0})
    }
}

fn part(name: &str, key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), Value::String(name.into()));
    m.insert(key.into(), v);
    Value::Object(m)
}

/// Input of `$translate` (R4 parameter names).
#[derive(Debug, Clone, Default)]
pub struct TranslateRequest {
    /// ConceptMap canonical (`url`, `|version` allowed).
    pub url: Option<String>,
    pub concept_map_version: Option<String>,
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    /// Value set scope of the source / target (`source`, `target`).
    pub source: Option<String>,
    pub target: Option<String>,
    /// `targetsystem`.
    pub target_system: Option<String>,
    pub reverse: bool,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Snapshot {
    fn cs_or_error(&self, system: &str, version: Option<&str>) -> Result<std::sync::Arc<CodeSystem>, OpError> {
        match self.code_system(system, version) {
            CsRef::Found(cs) => Ok(cs),
            CsRef::External(name) => Err(OpError::new(404, "not-found", format!("The content of code system {system} ({name}) is not available on this server"))),
            CsRef::Unknown => Err(OpError::new(
                404,
                "not-found",
                match version {
                    Some(v) => format!("Unknown code system {system} version {v}"),
                    None => format!("Unknown code system {system}"),
                },
            )),
        }
    }

    /// `CodeSystem/$lookup`: name, version, display, designations, properties (incl. parent/child
    /// for hierarchies), abstract. Unknown system or code: 404 OperationOutcome.
    pub fn lookup(&self, system: &str, code: &str, version: Option<&str>, display_language: Option<&str>) -> Result<Value, OpError> {
        let cs = self.cs_or_error(system, version)?;
        if cs.content == Content::NotPresent {
            return Err(OpError::new(404, "not-found", format!("The code system {system} has content 'not-present': its concepts are not available, so code '{code}' cannot be looked up")));
        }
        let Some(idx) = cs.find(code) else {
            let note = if cs.content.is_complete() { String::new() } else { format!(" (the code system has content '{}', so the code may exist without being known here)", cs.content.as_str()) };
            return Err(OpError::new(404, "not-found", format!("Unknown code '{code}' in the code system {}{note}", cs.canonical())));
        };
        let c = &cs.concepts[idx as usize];
        let mut p = Params::default();
        p.add("name", "valueString", Value::String(cs.name.clone().or(cs.title.clone()).unwrap_or_else(|| cs.url.clone())));
        if let Some(v) = &cs.version {
            p.add("version", "valueString", Value::String(v.clone()));
        }
        if let Some(d) = cs.display_in(c, display_language) {
            p.add("display", "valueString", Value::String(d));
        }
        if c.is_abstract() {
            p.add("abstract", "valueBoolean", Value::Bool(true));
        }
        for d in &c.designations {
            let mut parts = Vec::new();
            if let Some(l) = &d.language {
                parts.push(part("language", "valueCode", Value::String(l.clone())));
            }
            if let Some(u) = &d.use_ {
                parts.push(part("use", "valueCoding", u.clone()));
            }
            parts.push(part("value", "valueString", Value::String(d.value.clone())));
            p.parts("designation", parts);
        }
        if let Some(def) = &c.definition {
            p.parts("property", vec![part("code", "valueCode", json!("definition")), part("value", "valueString", Value::String(def.clone()))]);
        }
        for (pc, key, v) in &c.properties {
            let mut parts = vec![part("code", "valueCode", Value::String(pc.clone())), part("value", key, v.clone())];
            if let Some(desc) = cs.property_types.get(pc).filter(|_| false) {
                parts.push(part("description", "valueString", Value::String(desc.clone())));
            }
            p.parts("property", parts);
        }
        for &pi in &c.parents {
            let pc = &cs.concepts[pi as usize];
            if !c.properties.iter().any(|(k, _, v)| k == "parent" && v.as_str() == Some(pc.code.as_str())) {
                p.parts("property", vec![part("code", "valueCode", json!("parent")), part("value", "valueCode", Value::String(pc.code.clone()))]);
            }
        }
        for &ci in &c.children {
            p.parts("property", vec![part("code", "valueCode", json!("child")), part("value", "valueCode", Value::String(cs.concepts[ci as usize].code.clone()))]);
        }
        Ok(p.build())
    }

    /// `CodeSystem/$validate-code`. Always a Parameters (`result`, `message`, `display`) for a
    /// well-formed request. When the answer cannot be decided (system unknown, content not loaded,
    /// `not-present`, or a code missing from a `fragment`), `result` is false, `message` says why
    /// and `x-cannot-decide` is true (`x-caused-by-unknown-system` names an unknown system).
    pub fn validate_code_cs(&self, system: &str, code: &str, version: Option<&str>, display: Option<&str>) -> Result<Value, OpError> {
        if system.is_empty() || code.is_empty() {
            return Err(OpError::new(400, "required", "$validate-code needs a code system (url or system) and a code"));
        }
        let mut p = Params::default();
        let cs = match self.code_system(system, version) {
            CsRef::Found(cs) => cs,
            CsRef::External(name) => {
                p.add("result", "valueBoolean", json!(false));
                p.add("message", "valueString", Value::String(format!("The content of code system {system} ({name}) is not loaded here, so the code '{code}' cannot be checked")));
                p.add("x-cannot-decide", "valueBoolean", json!(true));
                return Ok(p.build());
            }
            CsRef::Unknown => {
                p.add("result", "valueBoolean", json!(false));
                let v = version.map(|v| format!(" version {v}")).unwrap_or_default();
                p.add("message", "valueString", Value::String(format!("Unknown code system {system}{v}, so the code '{code}' cannot be checked")));
                p.add("x-cannot-decide", "valueBoolean", json!(true));
                p.add("x-caused-by-unknown-system", "valueCanonical", Value::String(system.to_string()));
                return Ok(p.build());
            }
        };
        self.validate_in_cs(&cs, system, code, display, &mut p);
        Ok(p.build())
    }

    fn validate_in_cs(&self, cs: &CodeSystem, system: &str, code: &str, display: Option<&str>, p: &mut Params) {
        if cs.content == Content::NotPresent {
            p.add("result", "valueBoolean", json!(false));
            p.add("message", "valueString", Value::String(format!("The code system {} has content 'not-present', so the code '{code}' cannot be checked", cs.canonical())));
            p.add("x-cannot-decide", "valueBoolean", json!(true));
            return;
        }
        match cs.concept(code) {
            Some(c) => {
                p.add("result", "valueBoolean", json!(true));
                let mut msgs = Vec::new();
                if let Some(d) = display
                    && !cs.display_ok(c, d) {
                        msgs.push(format!("Wrong display '{d}' for {system}#{code}: should be '{}'", c.display.as_deref().unwrap_or("")));
                    }
                if c.is_inactive() {
                    msgs.push(format!("The concept {system}#{code} is inactive ({})", c.status().unwrap_or("inactive")));
                }
                if c.code != code {
                    msgs.push(format!("The code '{code}' differs in case from the defined code '{}' (the code system is not case-sensitive)", c.code));
                }
                if !msgs.is_empty() {
                    p.add("message", "valueString", Value::String(msgs.join("; ")));
                }
                if let Some(d) = &c.display {
                    p.add("display", "valueString", Value::String(d.clone()));
                }
            }
            None => {
                p.add("result", "valueBoolean", json!(false));
                if cs.content.is_complete() {
                    p.add("message", "valueString", Value::String(format!("Unknown code '{code}' in the code system {}", cs.canonical())));
                } else {
                    p.add(
                        "message",
                        "valueString",
                        Value::String(format!("The code '{code}' is not in the code system {}, whose content is '{}', so it cannot be decided whether the code is valid", cs.canonical(), cs.content.as_str())),
                    );
                    p.add("x-cannot-decide", "valueBoolean", json!(true));
                }
            }
        }
    }

    /// `ValueSet/$validate-code` (url with optional `|version`; `system` None: any system).
    /// Unknown value set: 404. Otherwise a Parameters with `result`, `message`, `display`
    /// (display mismatch: result true with a warning message, as the specification says).
    pub fn validate_code_vs(&self, url: &str, system: Option<&str>, code: &str, display: Option<&str>) -> Result<Value, OpError> {
        if code.is_empty() {
            return Err(OpError::new(400, "required", "$validate-code needs a code"));
        }
        let Some(vs) = self.compiled_value_set(url) else {
            return Err(OpError::new(404, "not-found", format!("Unknown value set {url}")));
        };
        let mut p = Params::default();
        let sys = system.map(|s| self.systems.canonical(s));
        match vs.check(sys, code) {
            Check::Member { system: msys, display: mdisp, inactive } => {
                p.add("result", "valueBoolean", json!(true));
                let mut msgs = Vec::new();
                let cs = match self.code_system(&msys, None) {
                    CsRef::Found(cs) => Some(cs),
                    _ => None,
                };
                let concept = cs.as_ref().and_then(|cs| cs.concept(code));
                if let Some(d) = display {
                    let ok = match (&cs, concept) {
                        (Some(cs), Some(c)) => cs.display_ok(c, d),
                        _ => mdisp.as_deref().is_none_or(|x| x.trim().eq_ignore_ascii_case(d.trim())),
                    };
                    if !ok {
                        msgs.push(format!("Wrong display '{d}' for {}#{code}: should be '{}'", system.unwrap_or(&msys), mdisp.as_deref().unwrap_or("")));
                    }
                }
                if inactive {
                    msgs.push(format!("The concept {}#{code} is inactive", system.unwrap_or(&msys)));
                }
                if !msgs.is_empty() {
                    p.add("message", "valueString", Value::String(msgs.join("; ")));
                }
                if let Some(d) = mdisp {
                    p.add("display", "valueString", Value::String(d));
                }
            }
            Check::NotMember => {
                p.add("result", "valueBoolean", json!(false));
                let shown = match system {
                    Some(s) => format!("{s}#{code}"),
                    None => code.to_string(),
                };
                let mut msg = format!("The code '{shown}' is not in the value set {}", vs.url);
                if let Some(s) = system
                    && let CsRef::Found(cs) = self.code_system(s, None)
                        && cs.content.is_complete() && cs.find(code).is_none() {
                            msg = format!("Unknown code '{code}' in the code system {}; {msg}", cs.canonical());
                        }
                p.add("message", "valueString", Value::String(msg));
            }
            Check::Unknown(reason) => {
                p.add("result", "valueBoolean", json!(false));
                p.add("message", "valueString", Value::String(format!("Membership of '{}' in the value set {} cannot be checked: {reason}", code, vs.url)));
                p.add("x-cannot-decide", "valueBoolean", json!(true));
            }
        }
        Ok(p.build())
    }

    /// `ValueSet/$expand` with `filter` (every word must occur in the display or code,
    /// case-insensitively), `count` and `offset` (paging; `total` is the filtered size).
    /// Expansions over [`Snapshot::expansion_limit`] codes, or of code systems whose content is not
    /// available, are refused (`too-costly` / `not-supported`).
    pub fn expand(&self, url: &str, filter: Option<&str>, count: Option<usize>, offset: Option<usize>) -> Result<Value, OpError> {
        let Some(vs) = self.compiled_value_set(url) else {
            return Err(OpError::new(404, "not-found", format!("Unknown value set {url}")));
        };
        let items = vs.enumerate(self.expansion_limit).map_err(|e| match e {
            ExpandError::TooCostly { limit } => OpError::new(
                422,
                "too-costly",
                format!("The expansion of {url} has more than {limit} codes; refused as too costly (use $validate-code to check single codes)"),
            ),
            ExpandError::NotEnumerable(r) => OpError::new(422, "not-supported", format!("The value set {url} cannot be expanded: {r}")),
        })?;
        let words: Vec<String> = filter.map(|f| f.split_whitespace().map(str::to_lowercase).collect()).unwrap_or_default();
        let filtered: Vec<&crate::valueset::Item> = items
            .iter()
            .filter(|it| {
                if words.is_empty() {
                    return true;
                }
                let d = it.display.as_deref().unwrap_or("").to_lowercase();
                let c = it.code.to_lowercase();
                words.iter().all(|w| d.contains(w.as_str()) || c.contains(w.as_str()))
            })
            .collect();
        let total = filtered.len();
        let off = offset.unwrap_or(0);
        let page: Vec<Value> = filtered
            .iter()
            .skip(off)
            .take(count.unwrap_or(usize::MAX))
            .map(|it| {
                let mut m = Map::new();
                m.insert("system".into(), Value::String(it.system.clone()));
                if let Some(v) = &it.version {
                    m.insert("version".into(), Value::String(v.clone()));
                }
                if it.is_abstract {
                    m.insert("abstract".into(), Value::Bool(true));
                }
                if it.inactive {
                    m.insert("inactive".into(), Value::Bool(true));
                }
                m.insert("code".into(), Value::String(it.code.clone()));
                if let Some(d) = &it.display {
                    m.insert("display".into(), Value::String(d.clone()));
                }
                Value::Object(m)
            })
            .collect();
        let mut params = Vec::new();
        if let Some(f) = filter {
            params.push(json!({"name": "filter", "valueString": f}));
        }
        if let Some(c) = count {
            params.push(json!({"name": "count", "valueInteger": c}));
        }
        if let Some(o) = offset {
            params.push(json!({"name": "offset", "valueInteger": o}));
        }
        let mut exp = Map::new();
        exp.insert("timestamp".into(), Value::String(now()));
        exp.insert("total".into(), json!(total));
        exp.insert("offset".into(), json!(off));
        if !params.is_empty() {
            exp.insert("parameter".into(), Value::Array(params));
        }
        if !page.is_empty() {
            exp.insert("contains".into(), Value::Array(page));
        }
        let mut out = Map::new();
        out.insert("resourceType".into(), json!("ValueSet"));
        out.insert("url".into(), Value::String(vs.url.clone()));
        if let Some(v) = &vs.version {
            out.insert("version".into(), Value::String(v.clone()));
        }
        if let Some(n) = &vs.name {
            out.insert("name".into(), Value::String(n.clone()));
        }
        if let Some(t) = &vs.title {
            out.insert("title".into(), Value::String(t.clone()));
        }
        out.insert("status".into(), json!("active"));
        out.insert("expansion".into(), Value::Object(exp));
        Ok(Value::Object(out))
    }

    /// `ConceptMap/$translate`: a Parameters with `result`, `message` and one `match` per target
    /// (`equivalence`, `concept`, `source` = ConceptMap url|version).
    pub fn translate(&self, req: &TranslateRequest) -> Result<Value, OpError> {
        let (Some(system), Some(code)) = (req.system.as_deref(), req.code.as_deref()) else {
            return Err(OpError::new(400, "required", "$translate needs system and code (or a coding)"));
        };
        let maps: Vec<std::sync::Arc<ConceptMap>> = match &req.url {
            Some(u) => {
                let canon = match (&req.concept_map_version, split_canonical(u).1) {
                    (Some(v), None) => format!("{u}|{v}"),
                    _ => u.clone(),
                };
                vec![self.concept_map(&canon).ok_or_else(|| OpError::new(404, "not-found", format!("Unknown concept map {canon}")))?]
            }
            None => {
                let scope = |m: &std::sync::Arc<ConceptMap>| {
                    req.source.as_deref().is_none_or(|s| m.source_scope.as_deref().is_none_or(|x| x == s))
                        && req.target.as_deref().is_none_or(|t| m.target_scope.as_deref() == Some(t) || self.systems.same(t, m.groups.first().and_then(|g| g.target.as_deref()).unwrap_or("")))
                };
                let mut v: Vec<_> = if req.reverse {
                    // Reverse: the code is a target code; any map may hold it.
                    let mut all: Vec<_> = self.concept_maps().cloned().collect();
                    all.sort_by(|a, b| a.url.cmp(&b.url));
                    all
                } else {
                    self.concept_maps_from(system)
                };
                v.retain(scope);
                v
            }
        };
        let mut matches: Vec<Value> = Vec::new();
        for m in &maps {
            self.translate_in(m, req, system, code, &mut matches, 0);
        }
        let result = matches.iter().any(|m| {
            m.get("part").and_then(Value::as_array).into_iter().flatten().any(|p| p.get("name").and_then(Value::as_str) == Some("equivalence") && p.get("valueCode").and_then(Value::as_str).and_then(Equivalence::parse).is_some_and(|e| e.is_match()))
        });
        let mut p = Params::default();
        p.add("result", "valueBoolean", Value::Bool(result));
        if !result {
            let scope = match &req.url {
                Some(u) => format!(" in the concept map {u}"),
                None => String::new(),
            };
            p.add("message", "valueString", Value::String(format!("No mapping found for {system}#{code}{scope}")));
        }
        for m in matches {
            p.0.push(m);
        }
        Ok(p.build())
    }

    fn translate_in(&self, m: &ConceptMap, req: &TranslateRequest, system: &str, code: &str, out: &mut Vec<Value>, depth: usize) {
        let source = m.canonical();
        for g in &m.groups {
            if req.reverse {
                if !g.target.as_deref().is_some_and(|t| self.systems.same(t, system)) {
                    continue;
                }
                if let Some(ts) = &req.target_system
                    && !g.source.as_deref().is_some_and(|s| self.systems.same(s, ts)) {
                        continue;
                    }
                for (scode, (sdisp, targets)) in &g.elements {
                    for t in targets.iter().filter(|t| t.code.as_deref() == Some(code)) {
                        out.push(match_value(invert(t.equivalence), g.source.as_deref(), g.source_version.as_deref(), scode, sdisp.as_deref(), &source, t.comment.as_deref()));
                    }
                }
                if let Some(tg) = &g.table {
                    for r in tg.table.rows.iter().filter(|r| r.target_code == code) {
                        let disp = (!r.source_display.is_empty()).then_some(r.source_display.as_str());
                        let comment = (!r.comment.is_empty()).then_some(r.comment.as_str());
                        out.push(match_value(invert(r.equivalence), g.source.as_deref(), None, &r.source_code, disp, &source, comment));
                    }
                }
                continue;
            }
            if !g.source.as_deref().is_none_or(|s| self.systems.same(s, system)) {
                continue;
            }
            if let Some(ts) = &req.target_system
                && !g.target.as_deref().is_some_and(|t| self.systems.same(t, ts)) {
                    continue;
                }
            if let (Some(want), Some(have)) = (&req.version, &g.source_version)
                && want != have {
                    continue;
                }
            let from_table = g.table.as_ref().and_then(|tg| tg.targets(code));
            let found = match &from_table {
                Some(t) => Some(t),
                None => g.elements.get(code).map(|(_, t)| t),
            };
            match found {
                Some(targets) if !targets.is_empty() => {
                    for t in targets {
                        match &t.code {
                            Some(tc) => out.push(match_value(t.equivalence, g.target.as_deref(), g.target_version.as_deref(), tc, t.display.as_deref(), &source, t.comment.as_deref())),
                            None => out.push(json!({"name": "match", "part": [part("equivalence", "valueCode", json!(t.equivalence.as_str())), part("source", "valueUri", Value::String(source.clone()))]})),
                        }
                    }
                }
                _ => match &g.unmapped {
                    Some(Unmapped::Provided) => out.push(match_value(Equivalence::Equal, g.target.as_deref(), None, code, None, &source, Some("unmapped: provided"))),
                    Some(Unmapped::Fixed { code: fc, display }) => out.push(match_value(Equivalence::Inexact, g.target.as_deref(), None, fc, display.as_deref(), &source, Some("unmapped: fixed"))),
                    Some(Unmapped::OtherMap(u)) if depth < 4 => {
                        if let Some(other) = self.concept_map(u) {
                            self.translate_in(&other, req, system, code, out, depth + 1);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

fn invert(e: Equivalence) -> Equivalence {
    match e {
        Equivalence::Wider => Equivalence::Narrower,
        Equivalence::Narrower => Equivalence::Wider,
        Equivalence::Subsumes => Equivalence::Specializes,
        Equivalence::Specializes => Equivalence::Subsumes,
        other => other,
    }
}

fn match_value(eq: Equivalence, system: Option<&str>, version: Option<&str>, code: &str, display: Option<&str>, source: &str, comment: Option<&str>) -> Value {
    let mut coding = Map::new();
    if let Some(s) = system {
        coding.insert("system".into(), Value::String(s.to_string()));
    }
    if let Some(v) = version {
        coding.insert("version".into(), Value::String(v.to_string()));
    }
    coding.insert("code".into(), Value::String(code.to_string()));
    if let Some(d) = display {
        coding.insert("display".into(), Value::String(d.to_string()));
    }
    let mut parts = vec![part("equivalence", "valueCode", json!(eq.as_str())), part("concept", "valueCoding", Value::Object(coding)), part("source", "valueUri", Value::String(source.to_string()))];
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        parts.push(part("message", "valueString", Value::String(c.to_string())));
    }
    json!({"name": "match", "part": parts})
}

/// Flatten a Parameters resource into (name, value) pairs for [`Snapshot::run_operation`].
/// `valueCoding` becomes `system`/`code`/`display`/`version`; `valueCodeableConcept` its first coding.
pub fn pairs_from_parameters(params: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in params.get("parameter").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = p.get("name").and_then(Value::as_str) else { continue };
        let Some((key, v)) = p.as_object().and_then(|o| o.iter().find(|(k, _)| k.starts_with("value"))) else { continue };
        let coding = match key.as_str() {
            "valueCoding" => Some(v),
            "valueCodeableConcept" => v.pointer("/coding/0"),
            _ => None,
        };
        if let Some(c) = coding {
            for f in ["system", "code", "display", "version"] {
                if let Some(x) = c.get(f).and_then(Value::as_str) {
                    out.push((f.to_string(), x.to_string()));
                }
            }
            continue;
        }
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        out.push((name.to_string(), s));
    }
    out
}

impl Snapshot {
    /// Run an operation from (name, value) pairs (query parameters, or [`pairs_from_parameters`]).
    /// `op`: `CodeSystem/$lookup`, `CodeSystem/$validate-code`, `ValueSet/$validate-code`,
    /// `ValueSet/$expand`, `ConceptMap/$translate` (the leading type may be omitted for
    /// `$lookup`, `$expand`, `$translate`; a bare `$validate-code` is the ValueSet form when
    /// `url` names a value set, else the CodeSystem form).
    pub fn run_operation(&self, op: &str, pairs: &[(&str, &str)]) -> Result<Value, OpError> {
        let get = |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let usize_of = |n: &str| -> Result<Option<usize>, OpError> {
            get(n).map(|v| v.parse::<usize>().map_err(|_| OpError::new(400, "invalid", format!("parameter '{n}' must be a non-negative integer, got '{v}'")))).transpose()
        };
        let coding_system = get("coding").and_then(|c| c.split_once('|').map(|(s, _)| s));
        let coding_code = get("coding").map(|c| c.split_once('|').map(|(_, k)| k).unwrap_or(c));
        let op = op.trim_start_matches('/');
        match op {
            "CodeSystem/$lookup" | "$lookup" => {
                let system = get("system").or(coding_system).ok_or_else(|| OpError::new(400, "required", "$lookup needs 'system'"))?;
                let code = get("code").or(coding_code).ok_or_else(|| OpError::new(400, "required", "$lookup needs 'code'"))?;
                self.lookup(system, code, get("version"), get("displayLanguage"))
            }
            "CodeSystem/$validate-code" => {
                let system = get("url").or(get("system")).or(coding_system).ok_or_else(|| OpError::new(400, "required", "$validate-code needs 'url'"))?;
                let code = get("code").or(coding_code).ok_or_else(|| OpError::new(400, "required", "$validate-code needs 'code'"))?;
                self.validate_code_cs(system, code, get("version"), get("display"))
            }
            "ValueSet/$validate-code" | "$validate-code" => {
                let url = get("url").or(get("valueSet"));
                let code = get("code").or(coding_code).ok_or_else(|| OpError::new(400, "required", "$validate-code needs 'code'"))?;
                let system = get("system").or(coding_system);
                match url {
                    Some(u) if op.starts_with("ValueSet") || self.value_set_resource(u).is_some() => self.validate_code_vs(u, system, code, get("display")),
                    Some(u) => self.validate_code_cs(u, code, get("version"), get("display")),
                    None => {
                        let s = system.ok_or_else(|| OpError::new(400, "required", "$validate-code needs 'url' (value set) or a system"))?;
                        self.validate_code_cs(s, code, get("systemVersion").or(get("version")), get("display"))
                    }
                }
            }
            "ValueSet/$expand" | "$expand" => {
                let url = get("url").ok_or_else(|| OpError::new(400, "required", "$expand needs 'url'"))?;
                let url = match get("valueSetVersion") {
                    Some(v) if !url.contains('|') => format!("{url}|{v}"),
                    _ => url.to_string(),
                };
                self.expand(&url, get("filter"), usize_of("count")?, usize_of("offset")?)
            }
            "ConceptMap/$translate" | "$translate" => {
                let req = TranslateRequest {
                    url: get("url").map(str::to_string),
                    concept_map_version: get("conceptMapVersion").map(str::to_string),
                    system: get("system").or(coding_system).map(str::to_string),
                    version: get("version").map(str::to_string),
                    code: get("code").or(coding_code).map(str::to_string),
                    source: get("source").map(str::to_string),
                    target: get("target").map(str::to_string),
                    target_system: get("targetsystem").or(get("targetSystem")).map(str::to_string),
                    reverse: get("reverse") == Some("true"),
                };
                self.translate(&req)
            }
            other => Err(OpError::new(400, "not-supported", format!("Unknown terminology operation '{other}'"))),
        }
    }
}

impl TerminologyService {
    /// See [`Snapshot::lookup`].
    pub fn lookup(&self, system: &str, code: &str, version: Option<&str>, display_language: Option<&str>) -> Result<Value, OpError> {
        self.snapshot().lookup(system, code, version, display_language)
    }
    /// See [`Snapshot::validate_code_cs`].
    pub fn validate_code_cs(&self, system: &str, code: &str, version: Option<&str>, display: Option<&str>) -> Result<Value, OpError> {
        self.snapshot().validate_code_cs(system, code, version, display)
    }
    /// See [`Snapshot::validate_code_vs`].
    pub fn validate_code_vs(&self, url: &str, system: Option<&str>, code: &str, display: Option<&str>) -> Result<Value, OpError> {
        self.snapshot().validate_code_vs(url, system, code, display)
    }
    /// See [`Snapshot::expand`].
    pub fn expand(&self, url: &str, filter: Option<&str>, count: Option<usize>, offset: Option<usize>) -> Result<Value, OpError> {
        self.snapshot().expand(url, filter, count, offset)
    }
    /// See [`Snapshot::translate`].
    pub fn translate(&self, req: &TranslateRequest) -> Result<Value, OpError> {
        self.snapshot().translate(req)
    }
    /// See [`Snapshot::run_operation`].
    pub fn run_operation(&self, op: &str, pairs: &[(&str, &str)]) -> Result<Value, OpError> {
        self.snapshot().run_operation(op, pairs)
    }
}
