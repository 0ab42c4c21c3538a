//! A ConceptMap compiled for `$translate`.

use std::fmt;

use serde_json::Value;

use crate::FastMap;

/// R4 `ConceptMapEquivalence` (http://hl7.org/fhir/concept-map-equivalence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Equivalence {
    Relatedto,
    Equivalent,
    Equal,
    Wider,
    Subsumes,
    Narrower,
    Specializes,
    Inexact,
    Unmatched,
    Disjoint,
}

impl Equivalence {
    pub const ALL: [Equivalence; 10] = [
        Equivalence::Relatedto,
        Equivalence::Equivalent,
        Equivalence::Equal,
        Equivalence::Wider,
        Equivalence::Subsumes,
        Equivalence::Narrower,
        Equivalence::Specializes,
        Equivalence::Inexact,
        Equivalence::Unmatched,
        Equivalence::Disjoint,
    ];

    /// Parse an R4 equivalence code (exact, lower case as in the specification).
    pub fn parse(s: &str) -> Option<Equivalence> {
        Self::ALL.iter().copied().find(|e| e.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Equivalence::Relatedto => "relatedto",
            Equivalence::Equivalent => "equivalent",
            Equivalence::Equal => "equal",
            Equivalence::Wider => "wider",
            Equivalence::Subsumes => "subsumes",
            Equivalence::Narrower => "narrower",
            Equivalence::Specializes => "specializes",
            Equivalence::Inexact => "inexact",
            Equivalence::Unmatched => "unmatched",
            Equivalence::Disjoint => "disjoint",
        }
    }

    /// A usable mapping (anything but `unmatched` and `disjoint`), per the R4 `$translate`
    /// definition of `result`.
    pub fn is_match(self) -> bool {
        !matches!(self, Equivalence::Unmatched | Equivalence::Disjoint)
    }
}

impl fmt::Display for Equivalence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One target of an element.
#[derive(Debug, Clone)]
pub struct Target {
    pub code: Option<String>,
    pub display: Option<String>,
    pub equivalence: Equivalence,
    pub comment: Option<String>,
}

/// `group.unmapped`.
#[derive(Debug, Clone)]
pub enum Unmapped {
    Provided,
    Fixed { code: String, display: Option<String> },
    OtherMap(String),
}

/// One group (source system -> target system).
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub source: Option<String>,
    pub source_version: Option<String>,
    pub target: Option<String>,
    pub target_version: Option<String>,
    /// source code -> (source display, targets)
    pub elements: FastMap<Box<str>, (Option<String>, Vec<Target>)>,
    pub unmapped: Option<Unmapped>,
    /// A group backed by a mapping table: rows are looked up in the table (no copy of the rows).
    pub table: Option<TableGroup>,
}

/// Row indices of one source code in a table-backed group.
#[derive(Debug, Clone)]
pub enum RowRefs {
    One(u32),
    Many(Box<[u32]>),
}

impl RowRefs {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            RowRefs::One(r) => std::slice::from_ref(r),
            RowRefs::Many(v) => v,
        }
    }
}

/// A mapping table as a ConceptMap group.
#[derive(Debug, Clone)]
pub struct TableGroup {
    pub table: std::sync::Arc<crate::table::MappingTable>,
    pub index: FastMap<Box<str>, RowRefs>,
}

impl TableGroup {
    pub fn new(table: std::sync::Arc<crate::table::MappingTable>) -> TableGroup {
        let mut index: FastMap<Box<str>, RowRefs> = FastMap::default();
        index.reserve(table.rows.len());
        for (i, r) in table.rows.iter().enumerate() {
            match index.get_mut(r.source_code.as_str()) {
                Some(e) => {
                    let mut v = e.as_slice().to_vec();
                    v.push(i as u32);
                    *e = RowRefs::Many(v.into_boxed_slice());
                }
                None => {
                    index.insert(r.source_code.as_str().into(), RowRefs::One(i as u32));
                }
            }
        }
        TableGroup { table, index }
    }

    /// Targets of a source code, as [`Target`]s.
    pub fn targets(&self, code: &str) -> Option<Vec<Target>> {
        let refs = self.index.get(code)?;
        let ne = |s: &String| (!s.is_empty()).then(|| s.clone());
        Some(
            refs.as_slice()
                .iter()
                .map(|&i| {
                    let r = &self.table.rows[i as usize];
                    Target { code: ne(&r.target_code), display: ne(&r.target_display), equivalence: r.equivalence, comment: ne(&r.comment) }
                })
                .collect(),
        )
    }
}

/// A compiled ConceptMap.
#[derive(Debug)]
pub struct ConceptMap {
    pub url: String,
    pub version: Option<String>,
    pub name: Option<String>,
    /// `sourceUri`/`sourceCanonical` (value set scope), if any.
    pub source_scope: Option<String>,
    /// `targetUri`/`targetCanonical` (value set scope), if any.
    pub target_scope: Option<String>,
    pub groups: Vec<Group>,
    pub origin: String,
}

impl ConceptMap {
    /// Compile a ConceptMap resource. Unknown equivalence codes are an error (with the element).
    pub fn from_json(cm: &Value, origin: &str) -> Result<ConceptMap, String> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut out = ConceptMap {
            url: s(cm, "url").unwrap_or_default(),
            version: s(cm, "version"),
            name: s(cm, "name"),
            source_scope: s(cm, "sourceUri").or_else(|| s(cm, "sourceCanonical")),
            target_scope: s(cm, "targetUri").or_else(|| s(cm, "targetCanonical")),
            groups: Vec::new(),
            origin: origin.to_string(),
        };
        for (gi, g) in cm.get("group").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let mut group = Group {
                source: s(g, "source"),
                source_version: s(g, "sourceVersion"),
                target: s(g, "target"),
                target_version: s(g, "targetVersion"),
                ..Default::default()
            };
            for (ei, e) in g.get("element").and_then(Value::as_array).into_iter().flatten().enumerate() {
                let Some(code) = e.get("code").and_then(Value::as_str) else { continue };
                let entry = group.elements.entry(code.into()).or_insert_with(|| (s(e, "display"), Vec::new()));
                for (ti, t) in e.get("target").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let eq = t.get("equivalence").and_then(Value::as_str).unwrap_or("equivalent");
                    let Some(equivalence) = Equivalence::parse(eq) else {
                        return Err(format!("group[{gi}].element[{ei}].target[{ti}]: unknown equivalence '{eq}'"));
                    };
                    entry.1.push(Target { code: s(t, "code"), display: s(t, "display"), equivalence, comment: s(t, "comment") });
                }
            }
            if let Some(u) = g.get("unmapped") {
                group.unmapped = match u.get("mode").and_then(Value::as_str) {
                    Some("provided") => Some(Unmapped::Provided),
                    Some("fixed") => s(u, "code").map(|code| Unmapped::Fixed { code, display: s(u, "display") }),
                    Some("other-map") => s(u, "url").map(Unmapped::OtherMap),
                    _ => None,
                };
            }
            out.groups.push(group);
        }
        Ok(out)
    }

    /// `url|version` (or `url`).
    pub fn canonical(&self) -> String {
        match &self.version {
            Some(v) => format!("{}|{}", self.url, v),
            None => self.url.clone(),
        }
    }
}
