//! A CodeSystem compiled for lookups: concepts in definition order, a code index, the hierarchy.

use std::collections::HashMap;

use serde_json::Value;

use crate::FastMap;

/// `CodeSystem.content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    NotPresent,
    Example,
    Fragment,
    Complete,
    Supplement,
}

impl Content {
    pub fn parse(s: Option<&str>) -> Content {
        match s {
            Some("not-present") => Content::NotPresent,
            Some("example") => Content::Example,
            Some("fragment") => Content::Fragment,
            Some("supplement") => Content::Supplement,
            _ => Content::Complete,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Content::NotPresent => "not-present",
            Content::Example => "example",
            Content::Fragment => "fragment",
            Content::Complete => "complete",
            Content::Supplement => "supplement",
        }
    }
    /// Can the absence of a code be taken as "not in the code system"?
    pub fn is_complete(self) -> bool {
        self == Content::Complete
    }
}

/// One designation of a concept.
#[derive(Debug, Clone)]
pub struct Designation {
    pub language: Option<String>,
    /// `use` as a Coding (JSON), if any.
    pub use_: Option<Value>,
    pub value: String,
}

/// One concept.
#[derive(Debug, Clone)]
pub struct Concept {
    pub code: String,
    pub display: Option<String>,
    pub definition: Option<String>,
    pub designations: Vec<Designation>,
    /// (property code, value as the JSON `value[x]` pair: key like "valueString", value).
    pub properties: Vec<(String, String, Value)>,
    pub parents: Vec<u32>,
    pub children: Vec<u32>,
}

impl Concept {
    /// `notSelectable`/`abstract` property set to true.
    pub fn is_abstract(&self) -> bool {
        self.properties.iter().any(|(c, _, v)| (c == "notSelectable" || c == "abstract") && v.as_bool() == Some(true))
    }
    /// `status` property (e.g. retired, deprecated), or `inactive` true.
    pub fn status(&self) -> Option<&str> {
        self.properties.iter().find(|(c, _, _)| c == "status").and_then(|(_, _, v)| v.as_str())
    }
    pub fn is_inactive(&self) -> bool {
        matches!(self.status(), Some("retired") | Some("inactive"))
            || self.properties.iter().any(|(c, _, v)| c == "inactive" && v.as_bool() == Some(true))
    }
}

/// A compiled CodeSystem.
#[derive(Debug)]
pub struct CodeSystem {
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub content: Content,
    pub case_sensitive: bool,
    pub concepts: Vec<Concept>,
    /// code (upper-cased when not case-sensitive) -> index into `concepts`.
    index: FastMap<Box<str>, u32>,
    /// Declared properties: code -> type.
    pub property_types: HashMap<String, String>,
    /// Where it came from (package, file, database), for messages.
    pub origin: String,
}

impl CodeSystem {
    /// Compile a CodeSystem resource.
    pub fn from_json(cs: &Value, origin: &str) -> CodeSystem {
        let s = |k: &str| cs.get(k).and_then(Value::as_str).map(str::to_string);
        let mut out = CodeSystem {
            url: s("url").unwrap_or_default(),
            version: s("version"),
            name: s("name"),
            title: s("title"),
            content: Content::parse(cs.get("content").and_then(Value::as_str)),
            // R4: caseSensitive has no default; treat absent as case-sensitive (the safe choice).
            case_sensitive: cs.get("caseSensitive").and_then(Value::as_bool).unwrap_or(true),
            concepts: Vec::new(),
            index: FastMap::default(),
            property_types: HashMap::new(),
            origin: origin.to_string(),
        };
        for p in cs.get("property").and_then(Value::as_array).into_iter().flatten() {
            if let Some(c) = p.get("code").and_then(Value::as_str) {
                out.property_types.insert(c.to_string(), p.get("type").and_then(Value::as_str).unwrap_or("string").to_string());
            }
        }
        let mut parent_links: Vec<(u32, String)> = Vec::new();
        fn walk(out: &mut CodeSystem, concepts: &[Value], parent: Option<u32>, links: &mut Vec<(u32, String)>) {
            for c in concepts {
                let Some(code) = c.get("code").and_then(Value::as_str) else { continue };
                let idx = out.concepts.len() as u32;
                let mut concept = Concept {
                    code: code.to_string(),
                    display: c.get("display").and_then(Value::as_str).map(str::to_string),
                    definition: c.get("definition").and_then(Value::as_str).map(str::to_string),
                    designations: Vec::new(),
                    properties: Vec::new(),
                    parents: parent.into_iter().collect(),
                    children: Vec::new(),
                };
                for d in c.get("designation").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(v) = d.get("value").and_then(Value::as_str) {
                        concept.designations.push(Designation {
                            language: d.get("language").and_then(Value::as_str).map(str::to_string),
                            use_: d.get("use").cloned(),
                            value: v.to_string(),
                        });
                    }
                }
                for p in c.get("property").and_then(Value::as_array).into_iter().flatten() {
                    let Some(pc) = p.get("code").and_then(Value::as_str) else { continue };
                    if let Some((k, v)) = p.as_object().and_then(|o| o.iter().find(|(k, _)| k.starts_with("value"))) {
                        if (pc == "parent" || pc == "subsumedBy") && v.is_string() {
                            links.push((idx, v.as_str().unwrap().to_string()));
                        }
                        concept.properties.push((pc.to_string(), k.clone(), v.clone()));
                    }
                }
                if let Some(p) = parent {
                    out.concepts[p as usize].children.push(idx);
                }
                out.concepts.push(concept);
                if let Some(sub) = c.get("concept").and_then(Value::as_array) {
                    walk(out, sub, Some(idx), links);
                }
            }
        }
        if let Some(c) = cs.get("concept").and_then(Value::as_array) {
            walk(&mut out, c, None, &mut parent_links);
        }
        out.index.reserve(out.concepts.len());
        for (i, c) in out.concepts.iter().enumerate() {
            let key = if out.case_sensitive { c.code.clone() } else { c.code.to_ascii_uppercase() };
            out.index.entry(key.into_boxed_str()).or_insert(i as u32);
        }
        for (child, parent_code) in parent_links {
            if let Some(p) = out.find(&parent_code)
                && !out.concepts[child as usize].parents.contains(&p) {
                    out.concepts[child as usize].parents.push(p);
                    out.concepts[p as usize].children.push(child);
                }
        }
        out
    }

    /// Index of a code (case-insensitively when the code system says so).
    pub fn find(&self, code: &str) -> Option<u32> {
        if self.case_sensitive {
            self.index.get(code).copied()
        } else if code.bytes().any(|b| b.is_ascii_lowercase()) {
            self.index.get(code.to_ascii_uppercase().as_str()).copied()
        } else {
            self.index.get(code).copied()
        }
    }

    pub fn concept(&self, code: &str) -> Option<&Concept> {
        self.find(code).map(|i| &self.concepts[i as usize])
    }

    /// `url|version` (or `url`).
    pub fn canonical(&self) -> String {
        match &self.version {
            Some(v) => format!("{}|{}", self.url, v),
            None => self.url.clone(),
        }
    }

    /// Display name for messages.
    pub fn label(&self) -> &str {
        self.title.as_deref().or(self.name.as_deref()).unwrap_or(&self.url)
    }

    /// All descendants of `idx` (not including itself), depth first, each once.
    pub fn descendants(&self, idx: u32, out: &mut Vec<u32>, seen: &mut Vec<bool>) {
        for &c in &self.concepts[idx as usize].children {
            if !seen[c as usize] {
                seen[c as usize] = true;
                out.push(c);
                self.descendants(c, out, seen);
            }
        }
    }

    /// All ancestors of `idx` (not including itself).
    pub fn ancestors(&self, idx: u32, out: &mut Vec<u32>, seen: &mut Vec<bool>) {
        for &p in &self.concepts[idx as usize].parents {
            if !seen[p as usize] {
                seen[p as usize] = true;
                out.push(p);
                self.ancestors(p, out, seen);
            }
        }
    }

    /// Does `a` subsume `b` (a is b or an ancestor of b)?
    pub fn subsumes(&self, a: u32, b: u32) -> bool {
        if a == b {
            return true;
        }
        let mut seen = vec![false; self.concepts.len()];
        let mut anc = Vec::new();
        self.ancestors(b, &mut anc, &mut seen);
        anc.contains(&a)
    }

    /// Display in the requested language: a designation with that language (prefix match on the
    /// primary subtag), else the display.
    pub fn display_in(&self, c: &Concept, lang: Option<&str>) -> Option<String> {
        if let Some(l) = lang {
            let primary = l.split('-').next().unwrap_or(l);
            if let Some(d) = c.designations.iter().find(|d| d.language.as_deref() == Some(l)) {
                return Some(d.value.clone());
            }
            if let Some(d) = c.designations.iter().find(|d| d.language.as_deref().is_some_and(|x| x.split('-').next() == Some(primary))) {
                return Some(d.value.clone());
            }
        }
        c.display.clone()
    }

    /// Is `display` an acceptable display for the concept (the display or any designation;
    /// compared after trimming, case-insensitively for ASCII)?
    pub fn display_ok(&self, c: &Concept, display: &str) -> bool {
        let d = display.trim();
        c.display.as_deref().is_some_and(|x| x.trim().eq_ignore_ascii_case(d))
            || c.designations.iter().any(|x| x.value.trim().eq_ignore_ascii_case(d))
    }
}
