//! Compiled profiles: the snapshot turned into an element tree with everything precomputed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::snapshot::snapshot_of;
use crate::store::{PackageStore, split_canonical};

/// A StructureDefinition compiled for validation.
#[derive(Debug)]
pub struct CompiledProfile {
    pub url: String,
    pub version: Option<String>,
    pub name: String,
    /// The type constrained (`Patient`, `Extension`, `Quantity`...).
    pub type_name: String,
    pub kind: String,
    pub derivation: String,
    pub elements: Vec<CElement>,
    /// Extension contexts (`(type, expression)`), for extension definitions.
    pub contexts: Vec<(String, String)>,
    /// The type of the root, for datatype validation.
    pub(crate) root_type: CType,
    /// The differential only constrains the root element (a rule profile adding invariants).
    pub diff_root_only: bool,
    /// Snapshot generation problem, if the snapshot had to be generated and failed partially.
    pub snapshot_error: Option<String>,
}

#[derive(Debug)]
pub struct CElement {
    pub id: String,
    pub path: String,
    /// JSON property name (last path segment, without `[x]`).
    pub name: String,
    pub choice: bool,
    pub slice_name: Option<String>,
    pub min: u32,
    /// `None` = unbounded.
    pub max: Option<u32>,
    /// Represented as a JSON array (base max > 1).
    pub many: bool,
    pub types: Vec<CType>,
    pub children: Vec<u32>,
    /// JSON name -> child (non-choice children), and the choice children.
    pub(crate) child_index: HashMap<String, u32, crate::validator::FxBuild>,
    pub(crate) choice_children: Vec<u32>,
    pub(crate) required_children: Vec<u32>,
    pub slices: Vec<u32>,
    pub slicing: Option<Slicing>,
    pub content_ref: Option<u32>,
    pub fixed: Option<Value>,
    pub pattern: Option<Value>,
    pub max_length: Option<usize>,
    pub min_value: Option<Value>,
    pub max_value: Option<Value>,
    pub binding: Option<Binding>,
    pub constraints: Vec<Arc<Constraint>>,
    pub is_modifier: bool,
    /// Discriminator targets of this slice (computed on first use).
    pub(crate) disc_cache: OnceLock<Vec<crate::validator::DiscCache>>,
    /// For a sliced element: slices indexed by the string value of the first discriminator.
    pub(crate) slice_index: OnceLock<Option<crate::validator::SliceIndex>>,
    /// The type of a non-choice element without a type (`BackboneElement`) or with several types
    /// of the same code (profiles and target profiles merged), built on first use.
    pub(crate) merged_type: OnceLock<CType>,
}

#[derive(Debug, Clone)]
pub struct CType {
    /// Type code (`string`, `CodeableConcept`, `Patient`, `Resource`...). FHIRPath system types are
    /// mapped to their FHIR type via the `structuredefinition-fhir-type` extension.
    pub code: String,
    pub profiles: Vec<String>,
    pub target_profiles: Vec<String>,
    /// A primitive type (precomputed from `code`).
    pub primitive: bool,
    /// Resolved on first use: is the code a resource type; the type's base definition; the profiles.
    pub(crate) is_resource: OnceLock<bool>,
    pub(crate) base: OnceLock<Option<Arc<CompiledProfile>>>,
    pub(crate) resolved_profiles: OnceLock<Vec<Option<Arc<CompiledProfile>>>>,
    /// The resource types allowed by `target_profiles` (None: any resource), resolved on first use.
    pub(crate) target_types: OnceLock<Option<Vec<String>>>,
}

impl CType {
    pub fn new(code: String) -> CType {
        CType { primitive: is_primitive_code(&code), code, profiles: vec![], target_profiles: vec![], is_resource: OnceLock::new(), base: OnceLock::new(), resolved_profiles: OnceLock::new(), target_types: OnceLock::new() }
    }
}

#[derive(Debug, Clone)]
pub struct Slicing {
    pub discriminators: Vec<Discriminator>,
    pub ordered: bool,
    pub rules: SlicingRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicingRules {
    Open,
    Closed,
    OpenAtEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscriminatorType {
    Value,
    Pattern,
    Type,
    Profile,
    Exists,
}

#[derive(Debug, Clone)]
pub struct Discriminator {
    pub kind: DiscriminatorType,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub strength: String,
    pub value_set: Option<String>,
}

/// An invariant with its parsed FHIRPath.
#[derive(Debug)]
pub struct Constraint {
    pub key: String,
    pub severity_error: bool,
    pub human: String,
    pub expression: String,
    pub source: String,
    pub parsed: Result<fhirpath::Expression, String>,
    /// Skip evaluation (true) when this element is absent from the focus (gateway-rules.json).
    pub vacuous_without: Option<String>,
}

impl CompiledProfile {
    pub fn root(&self) -> &CElement {
        &self.elements[0]
    }
    /// Versioned URL for messages.
    pub fn canonical(&self) -> String {
        match &self.version {
            Some(v) => format!("{}|{}", self.url, v),
            None => self.url.clone(),
        }
    }
}

pub(crate) fn is_primitive_code(code: &str) -> bool {
    code.starts_with(|c: char| c.is_ascii_lowercase()) && !code.contains(':')
}

fn type_code(t: &Value) -> String {
    let code = t.get("code").and_then(Value::as_str).unwrap_or("");
    if code.starts_with("http://hl7.org/fhirpath/System.") {
        if let Some(exts) = t.get("extension").and_then(Value::as_array) {
            for e in exts {
                if e.get("url").and_then(Value::as_str) == Some("http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type") {
                    if let Some(v) = e.get("valueUrl").or_else(|| e.get("valueString")).or_else(|| e.get("valueUri")).and_then(Value::as_str) {
                        return v.to_string();
                    }
                }
            }
        }
        return match &code["http://hl7.org/fhirpath/System.".len()..] {
            "String" => "string",
            "Boolean" => "boolean",
            "Integer" => "integer",
            "Decimal" => "decimal",
            "Date" => "date",
            "DateTime" => "dateTime",
            "Time" => "time",
            _ => "string",
        }
        .to_string();
    }
    code.to_string()
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
}

fn parse_max(v: Option<&Value>) -> Option<u32> {
    match v.and_then(Value::as_str) {
        Some("*") | None => None,
        Some(s) => s.parse().ok(),
    }
}

impl PackageStore {
    /// Compile (or get from the cache) the profile with canonical `url` (`url|version` accepted).
    pub fn profile(&self, canonical: &str) -> Option<Arc<CompiledProfile>> {
        if let Some(p) = self.profiles.read().unwrap().get(canonical) {
            return p.clone();
        }
        // `url`, `url|1` and `url|1.2.0` can all name one StructureDefinition (an instance's
        // meta.profile and a slice's type profile often differ so): compile it once, so that
        // what a validation caches per compiled profile (a resource checked against it) is shared.
        let identity = self.resolve_version(canonical).map(|v| format!("{}|{v}", crate::store::split_canonical(canonical).0));
        let known = identity.as_deref().and_then(|i| self.profiles.read().unwrap().get(i).cloned());
        let compiled = known.unwrap_or_else(|| self.compile_profile(canonical).map(Arc::new));
        let mut profiles = self.profiles.write().unwrap();
        if let Some(i) = identity {
            profiles.insert(i, compiled.clone());
        }
        profiles.insert(canonical.to_string(), compiled.clone());
        compiled
    }

    /// Compile profiles ahead of the first validation (e.g. the configured submission profiles and
    /// everything they reference through slices). Returns the canonicals that could not be found.
    pub fn precompile(&self, canonicals: &[&str]) -> Vec<String> {
        let mut missing = Vec::new();
        for c in canonicals {
            match self.profile(c) {
                Some(p) => {
                    for e in &p.elements {
                        for t in &e.types {
                            for tp in &t.profiles {
                                let _ = self.profile(tp);
                            }
                        }
                    }
                }
                None => missing.push(c.to_string()),
            }
        }
        missing
    }

    /// Base definition of a FHIR type by name.
    pub fn type_profile(&self, type_name: &str) -> Option<Arc<CompiledProfile>> {
        if type_name.contains(':') {
            return self.profile(type_name);
        }
        self.profile(&format!("http://hl7.org/fhir/StructureDefinition/{type_name}"))
    }

    fn compile_profile(&self, canonical: &str) -> Option<CompiledProfile> {
        let (snapshot_error, sd) = match snapshot_of(self, canonical) {
            Ok(sd) => (None, sd),
            Err(e) => {
                // generation failed: compile what the base gives, remember the error
                let sd = self.resolve(canonical)?;
                if sd.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
                    return None;
                }
                let base = sd.get("baseDefinition").and_then(Value::as_str).and_then(|b| snapshot_of(self, b).ok())?;
                let mut v = (*sd).clone();
                v["snapshot"] = base["snapshot"].clone();
                (Some(e), Arc::new(v))
            }
        };
        if sd.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
            return None;
        }
        let url = sd.get("url").and_then(Value::as_str).unwrap_or(split_canonical(canonical).0).to_string();
        let rules = self.rules();
        let elems = sd["snapshot"]["element"].as_array()?;
        let mut maps: Vec<serde_json::Map<String, Value>> = elems.iter().filter_map(|e| e.as_object().cloned()).collect();
        crate::snapshot::ensure_ids(&mut maps);
        let mut out: Vec<CElement> = Vec::with_capacity(maps.len());
        let mut by_id: HashMap<String, u32> = HashMap::with_capacity(maps.len());
        let mut by_path: HashMap<String, u32> = HashMap::new();
        for (i, e) in maps.iter().enumerate() {
            let id = e.get("id").and_then(Value::as_str).unwrap_or("").to_string();
            let path = e.get("path").and_then(Value::as_str).unwrap_or("").to_string();
            let last = path.rsplit('.').next().unwrap_or(&path);
            let choice = last.ends_with("[x]");
            let name = last.trim_end_matches("[x]").to_string();
            let base_max = e.get("base").and_then(|b| b.get("max")).or_else(|| e.get("max"));
            let many = match base_max.and_then(Value::as_str) {
                Some("1") | Some("0") => false,
                Some(_) => true,
                None => false,
            } && i > 0;
            let types: Vec<CType> = e
                .get("type")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|t| CType { profiles: str_list(t.get("profile")), target_profiles: str_list(t.get("targetProfile")), ..CType::new(type_code(t)) })
                        .collect()
                })
                .unwrap_or_default();
            let mut fixed = None;
            let mut pattern = None;
            let mut min_value = None;
            let mut max_value = None;
            for (k, v) in e {
                if k.starts_with("fixed") {
                    fixed = Some(v.clone());
                } else if k.starts_with("pattern") {
                    pattern = Some(v.clone());
                } else if k.starts_with("minValue") {
                    min_value = Some(v.clone());
                } else if k.starts_with("maxValue") {
                    max_value = Some(v.clone());
                }
            }
            let slicing = e.get("slicing").map(|s| Slicing {
                discriminators: s
                    .get("discriminator")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|d| {
                                let kind = match d.get("type").and_then(Value::as_str)? {
                                    "value" => DiscriminatorType::Value,
                                    "pattern" => DiscriminatorType::Pattern,
                                    "type" => DiscriminatorType::Type,
                                    "profile" => DiscriminatorType::Profile,
                                    "exists" => DiscriminatorType::Exists,
                                    _ => return None,
                                };
                                Some(Discriminator { kind, path: d.get("path").and_then(Value::as_str).unwrap_or("$this").to_string() })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ordered: s.get("ordered").and_then(Value::as_bool).unwrap_or(false),
                rules: match s.get("rules").and_then(Value::as_str) {
                    Some("closed") => SlicingRules::Closed,
                    Some("openAtEnd") => SlicingRules::OpenAtEnd,
                    _ => SlicingRules::Open,
                },
            });
            let binding = e.get("binding").map(|b| Binding {
                strength: b.get("strength").and_then(Value::as_str).unwrap_or("").to_string(),
                value_set: b.get("valueSet").and_then(Value::as_str).map(str::to_string),
            });
            let mut constraints = Vec::new();
            if let Some(cs) = e.get("constraint").and_then(Value::as_array) {
                for c in cs {
                    let key = c.get("key").and_then(Value::as_str).unwrap_or("").to_string();
                    let Some(expr) = c.get("expression").and_then(Value::as_str) else { continue };
                    if rules.is_suppressed(&key, &url, c.get("source").and_then(Value::as_str).unwrap_or("")) {
                        continue;
                    }
                    constraints.push(self.constraint(
                        &key,
                        c.get("severity").and_then(Value::as_str) != Some("warning"),
                        c.get("human").and_then(Value::as_str).unwrap_or(""),
                        expr,
                        c.get("source").and_then(Value::as_str).unwrap_or(&url),
                    ));
                }
            }
            let el = CElement {
                id: id.clone(),
                path: path.clone(),
                name,
                choice,
                slice_name: e.get("sliceName").and_then(Value::as_str).map(str::to_string),
                min: e.get("min").and_then(Value::as_u64).unwrap_or(0) as u32,
                max: parse_max(e.get("max")),
                many,
                types,
                children: vec![],
                child_index: HashMap::default(),
                choice_children: vec![],
                required_children: vec![],
                slices: vec![],
                slicing,
                content_ref: None,
                fixed,
                pattern,
                max_length: e.get("maxLength").and_then(Value::as_u64).map(|v| v as usize),
                min_value,
                max_value,
                binding,
                constraints,
                is_modifier: e.get("isModifier").and_then(Value::as_bool).unwrap_or(false),
                disc_cache: OnceLock::new(),
                slice_index: OnceLock::new(),
                merged_type: OnceLock::new(),
            };
            by_id.insert(id, i as u32);
            by_path.entry(path).or_insert(i as u32);
            out.push(el);
        }
        // tree
        for i in 1..out.len() {
            let id = out[i].id.clone();
            let last_dot = id.rfind('.');
            let last_seg = &id[last_dot.map(|p| p + 1).unwrap_or(0)..];
            if let Some(colon) = last_seg.find(':') {
                let slice_part = &last_seg[colon + 1..];
                let base_id = match slice_part.rfind('/') {
                    Some(p) => format!("{}:{}", &id[..last_dot.map(|p| p + 1).unwrap_or(0) + colon], &slice_part[..p]),
                    None => id[..last_dot.map(|p| p + 1).unwrap_or(0) + colon].to_string(),
                };
                // a '/' in a slice name is a reslice only when the outer slice exists
                let whole = id[..last_dot.map(|p| p + 1).unwrap_or(0) + colon].to_string();
                if let Some(&b) = by_id.get(&base_id).or_else(|| by_id.get(&whole)) {
                    out[b as usize].slices.push(i as u32);
                    continue;
                }
            }
            if let Some(p) = last_dot {
                if let Some(&pi) = by_id.get(&id[..p]) {
                    out[pi as usize].children.push(i as u32);
                }
            }
        }
        for i in 0..out.len() {
            let kids = out[i].children.clone();
            for c in kids {
                let (name, choice) = (out[c as usize].name.clone(), out[c as usize].choice);
                if out[c as usize].min > 0 {
                    out[i].required_children.push(c);
                }
                if choice {
                    out[i].choice_children.push(c);
                } else {
                    out[i].child_index.entry(name).or_insert(c);
                }
            }
        }
        for (i, e) in maps.iter().enumerate() {
            if let Some(cr) = e.get("contentReference").and_then(Value::as_str) {
                let t = cr.rsplit('#').next().unwrap_or(cr);
                out[i].content_ref = by_id.get(t).or_else(|| by_path.get(t)).copied();
            }
        }
        let contexts = sd
            .get("context")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|c| (c.get("type").and_then(Value::as_str).unwrap_or("element").to_string(), c.get("expression").and_then(Value::as_str).unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        // gateway rules attached as additional constraints on the root (none by default)
        Some(CompiledProfile {
            url,
            version: sd.get("version").and_then(Value::as_str).map(str::to_string),
            name: sd.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
            type_name: sd.get("type").and_then(Value::as_str).unwrap_or("").to_string(),
            kind: sd.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
            derivation: sd.get("derivation").and_then(Value::as_str).unwrap_or("specialization").to_string(),
            root_type: CType::new(sd.get("type").and_then(Value::as_str).unwrap_or("").to_string()),
            diff_root_only: sd
                .get("differential")
                .and_then(|d| d.get("element"))
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().all(|e| e.get("path").and_then(Value::as_str).is_some_and(|p| !p.contains('.')))),
            elements: out,
            contexts,
            snapshot_error,
        })
    }

    fn constraint(&self, key: &str, severity_error: bool, human: &str, expr: &str, source: &str) -> Arc<Constraint> {
        // identical invariants (ele-1, dom-*, ...) are shared between profiles
        let cache_key = format!("{key}\u{0}{expr}\u{0}{severity_error}\u{0}{:?}", self.rules().vacuous_without(key));
        if let Some(c) = CONSTRAINTS.read().unwrap().get(&cache_key) {
            return c.clone();
        }
        let c = Arc::new(Constraint {
            key: key.to_string(),
            severity_error,
            human: human.to_string(),
            expression: expr.to_string(),
            source: source.to_string(),
            parsed: fhirpath::Expression::parse(expr).map_err(|e| e.to_string()),
            vacuous_without: self.rules().vacuous_without(key).map(str::to_string),
        });
        CONSTRAINTS.write().unwrap().insert(cache_key, c.clone());
        c
    }
}

static CONSTRAINTS: std::sync::LazyLock<std::sync::RwLock<HashMap<String, Arc<Constraint>>>> = std::sync::LazyLock::new(Default::default);
