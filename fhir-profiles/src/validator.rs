//! The validator: walks FHIR JSON against compiled profiles.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::issue::{Issue, Severity, has_errors};
use crate::primitives;
use crate::profile::{CElement, CType, CompiledProfile, Constraint, DiscriminatorType, SlicingRules, is_primitive_code};
use crate::store::{PackageStore, split_canonical};
use crate::terminology::{Membership, PackageTerminology, Terminology};

/// Options for one validation.
#[derive(Debug, Clone, Default)]
pub struct ValidationOptions {
    /// Profiles to check besides the resource's `meta.profile` (e.g. the `profile` parameter of
    /// `$validate`, or `--profile`).
    pub profiles: Vec<String>,
}

impl ValidationOptions {
    pub fn with_profile(profile: impl Into<String>) -> Self {
        ValidationOptions { profiles: vec![profile.into()] }
    }
}

/// Validates resources against the profiles in a [`PackageStore`]. Cheap to create and `Send + Sync`.
#[derive(Clone)]
pub struct Validator {
    store: Arc<PackageStore>,
    terminology: Arc<dyn Terminology>,
}

impl Validator {
    pub fn new(store: Arc<PackageStore>) -> Self {
        let terminology = Arc::new(PackageTerminology { store: store.clone() });
        Validator { store, terminology }
    }

    /// Use another terminology implementation.
    pub fn with_terminology(store: Arc<PackageStore>, terminology: Arc<dyn Terminology>) -> Self {
        Validator { store, terminology }
    }

    pub fn store(&self) -> &Arc<PackageStore> {
        &self.store
    }

    /// Validate a resource against the base definition of its type, every profile in its
    /// `meta.profile` (and those of nested resources), `options.profiles`, and the gateway rules.
    pub fn validate(&self, resource: &Value, options: &ValidationOptions) -> Vec<Issue> {
        let mut ctx = Ctx::new(self, resource);
        let mut path = String::with_capacity(128);
        let rt = resource.prop("resourceType").and_then(Value::as_str).unwrap_or("").to_string();
        path.push_str(if rt.is_empty() { "Resource" } else { &rt });
        ctx.validate_resource(resource, &mut path, &options.profiles, true);
        let mut issues = ctx.issues;
        issues.append(&mut ctx.side_issues);
        finish(issues)
    }

    /// Parse JSON bytes and validate; syntax errors become a `fatal` issue.
    pub fn validate_json(&self, bytes: &[u8], options: &ValidationOptions) -> Vec<Issue> {
        match parse_json(bytes) {
            Ok(v) => self.validate(&v, options),
            Err(i) => vec![i],
        }
    }
}

/// Parse FHIR JSON, turning syntax errors into an issue.
pub fn parse_json(bytes: &[u8]) -> Result<Value, Issue> {
    serde_json::from_slice::<Value>(bytes).map_err(|e| {
        Issue::new(Severity::Fatal, "structure", "", format!("Error parsing JSON: {e} (FHIR JSON must be strict JSON: no comments, trailing commas or unquoted names)"))
    })
}

/// Sort-stable de-duplication.
fn finish(issues: Vec<Issue>) -> Vec<Issue> {
    let mut seen = HashSet::with_capacity(issues.len());
    issues
        .into_iter()
        .filter(|i| {
            let k = match &i.rule {
                Some(r) => format!("rule:{r}"),
                None => i.message.clone(),
            };
            seen.insert((i.severity, i.expression.clone(), k))
        })
        .collect()
}

struct BundleIndex<'a> {
    path: String,
    entry_of: HashMap<usize, usize, FxBuild>,
    by_full_url: HashMap<&'a str, &'a Value, FxBuild>,
    by_type_id: HashMap<String, Vec<&'a Value>, FxBuild>,
    is_document: bool,
    /// A gateway reference policy for this Bundle, with the first entry's fullUrl.
    policy: Option<(crate::rules::ReferencePolicy, Option<&'a str>)>,
}

impl<'a> BundleIndex<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        if let Some(v) = self.by_full_url.get(reference) {
            return Some(v);
        }
        // relative Type/id (optionally /_history/n), or absolute URL ending in Type/id
        let parts: Vec<&str> = reference.split('/').collect();
        let n = parts.len();
        let (t, id) = if n >= 4 && parts[n - 2] == "_history" { (parts[n - 4], parts[n - 3]) } else if n >= 2 { (parts[n - 2], parts[n - 1]) } else { return None };
        let list = self.by_type_id.get(&format!("{t}/{id}"))?;
        if list.len() == 1 { Some(list[0]) } else { None }
    }
}

struct EvalResolver<'a, 'b> {
    bundle: Option<&'b BundleIndex<'a>>,
    container: Option<&'a Value>,
}

impl fhirpath::Resolver for EvalResolver<'_, '_> {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        if let Some(id) = reference.strip_prefix('#') {
            return self.container.and_then(|c| find_contained(c, id));
        }
        self.bundle.and_then(|b| b.resolve(reference))
    }
}

fn find_contained<'a>(container: &'a Value, id: &str) -> Option<&'a Value> {
    if id.is_empty() {
        return Some(container);
    }
    container.prop("contained")?.as_array()?.iter().find(|c| c.prop("id").and_then(Value::as_str) == Some(id))
}

type Key = (usize, usize);

/// A small, fast hasher for pointer-pair keys and for maps keyed by definition data (element names,
/// URLs, codes): the keys stored are never attacker-controlled, so no DoS concern.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);
impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        // the remaining 0-7 bytes as one little-endian word, read 4, 2 and 1 bytes at a time
        let mut r = chunks.remainder();
        let (mut last, mut shift) = (0u64, 0);
        if r.len() >= 4 {
            last = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as u64;
            r = &r[4..];
            shift = 32;
        }
        if r.len() >= 2 {
            last |= (u16::from_le_bytes([r[0], r[1]]) as u64) << shift;
            r = &r[2..];
            shift += 16;
        }
        if let Some(&b) = r.first() {
            last |= (b as u64) << shift;
        }
        self.0 = (self.0.rotate_left(5) ^ last ^ bytes.len() as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_usize(i as usize)
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_usize(i as usize)
    }
}
pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;
type FxSet<K> = HashSet<K, FxBuild>;

struct Ctx<'a> {
    store: &'a PackageStore,
    term: &'a dyn Terminology,
    model: &'a fhirpath::Model,
    issues: Vec<Issue>,
    emitted: FxSet<Key>,
    cache: HashMap<Key, Rc<Vec<Issue>>, FxBuild>,
    in_progress: FxSet<Key>,
    /// (node, constraint) -> the issue it produced (None: passed). Re-emitted when the same
    /// constraint is met again through another profile, so no finding is lost.
    evaluated: HashMap<Key, Option<Issue>, FxBuild>,
    /// Bundle-level policy findings (kept out of per-profile results, so they do not change
    /// which slice an entry matches).
    side_issues: Vec<Issue>,
    found_pool: Vec<Vec<(u32, &'a str, &'a Value, bool)>>,
    items_pool: Vec<Vec<(Option<&'a Value>, Option<&'a Value>)>>,
    bundles: Vec<Rc<BundleIndex<'a>>>,
    /// stack of (resource, root resource for %rootResource, container for #refs)
    resources: Vec<(&'a Value, &'a Value)>,
    rules: Arc<crate::rules::GatewayRules>,
}

fn ptr(v: &Value) -> usize {
    v as *const Value as usize
}

fn type_of_key(key: &str, stem: &str) -> Option<String> {
    let rest = key.strip_prefix(stem)?;
    let mut c = rest.chars();
    let f = c.next()?;
    if !f.is_ascii_uppercase() {
        return None;
    }
    Some(rest.to_string())
}

fn type_matches_suffix(code: &str, suffix: &str) -> bool {
    let mut a = code.chars();
    let mut b = suffix.chars();
    match (a.next(), b.next()) {
        (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => a.as_str() == b.as_str(),
        _ => false,
    }
}

fn is_resource_type_code(store: &PackageStore, code: &str) -> bool {
    if code == "Resource" || code == "DomainResource" {
        return true;
    }
    if !code.starts_with(|c: char| c.is_ascii_uppercase()) {
        return false;
    }
    matches!(store.sd_meta(&format!("http://hl7.org/fhir/StructureDefinition/{code}")), Some((Some(k), _)) if &*k == "resource")
}

/// Compare JSON values for `fixed[x]`.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (xs, ys) = (x.to_string(), y.to_string());
            xs == ys || match (xs.parse::<rust_decimal::Decimal>(), ys.parse::<rust_decimal::Decimal>()) {
                (Ok(p), Ok(q)) => p == q,
                _ => false,
            }
        }
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| get_prop(y, k).is_some_and(|w| json_eq(v, w))),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        _ => a == b,
    }
}

/// Does `inst` contain `pat` (`pattern[x]` semantics)?
pub(crate) fn pattern_match(inst: &Value, pat: &Value) -> bool {
    match (inst, pat) {
        (Value::Object(i), Value::Object(p)) => p.iter().all(|(k, pv)| get_prop(i, k).is_some_and(|iv| pattern_match(iv, pv))),
        (Value::Array(i), Value::Array(p)) => p.iter().all(|pv| i.iter().any(|iv| pattern_match(iv, pv))),
        (Value::Array(i), p) => i.iter().any(|iv| pattern_match(iv, p)),
        _ => json_eq(inst, pat),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 { format!("{}...", &s[..s.char_indices().nth(197).map(|(i, _)| i).unwrap_or(s.len())]) } else { s }
}

/// Split a discriminator path at dots outside parentheses.
fn split_path(p: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut quote = false;
    for (i, c) in p.char_indices() {
        match c {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            '.' if depth == 0 && !quote => {
                out.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&p[start..]);
    out
}

fn fn_arg<'s>(seg: &'s str, name: &str) -> Option<&'s str> {
    let rest = seg.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
    Some(rest.trim().trim_matches(|c| c == '\'' || c == '"'))
}

impl<'a> Ctx<'a> {
    fn new(v: &'a Validator, _root: &'a Value) -> Self {
        Ctx {
            store: &v.store,
            term: &*v.terminology,
            model: v.store.fhirpath_model(),
            issues: Vec::new(),
            emitted: FxSet::with_capacity_and_hasher(256, FxBuild::default()),
            cache: HashMap::with_capacity_and_hasher(64, FxBuild::default()),
            in_progress: FxSet::with_capacity_and_hasher(16, FxBuild::default()),
            evaluated: HashMap::with_capacity_and_hasher(256, FxBuild::default()),
            side_issues: Vec::new(),
            found_pool: Vec::new(),
            items_pool: Vec::new(),
            bundles: Vec::new(),
            resources: Vec::new(),
            rules: v.store.rules(),
        }
    }

    fn err(&mut self, code: &'static str, path: &str, msg: String) {
        self.issues.push(Issue::error(code, path, msg));
    }
    fn warn(&mut self, code: &'static str, path: &str, msg: String) {
        self.issues.push(Issue::warning(code, path, msg));
    }

    // ---------------------------------------------------------------- resources

    fn validate_resource(&mut self, res: &'a Value, path: &mut String, extra: &[String], top: bool) {
        let Some(obj) = res.as_object() else {
            self.err("structure", path, "A resource must be a JSON object".into());
            return;
        };
        let Some(rt) = obj.prop("resourceType").and_then(Value::as_str) else {
            self.err("structure", path, "The resource has no resourceType property, so its type is unknown".into());
            return;
        };
        let Some(base) = self.store.type_profile(rt).filter(|p| p.kind == "resource") else {
            self.err("structure", path, format!("Unknown resource type '{rt}'"));
            return;
        };
        let contained = path.ends_with(']') && path.rsplit('.').next().is_some_and(|s| s.starts_with("contained["));
        let root = if contained { self.resources.last().map(|r| r.1).unwrap_or(res) } else { res };
        self.resources.push((res, root));
        let _ = top;
        let mut profiles: Vec<(&str, bool)> = Vec::new();
        if let Some(ps) = obj.prop("meta").and_then(|m| m.prop("profile")).and_then(Value::as_array) {
            for p in ps.iter().filter_map(Value::as_str) {
                profiles.push((p, false));
            }
        }
        for p in extra {
            profiles.push((p, true));
        }
        let mut done: Vec<usize> = Vec::new();
        let mut resolved: Vec<Arc<CompiledProfile>> = Vec::with_capacity(profiles.len());
        for (p, explicit) in &profiles {
            let Some(prof) = self.lookup_profile(p, *explicit, path) else { continue };
            if done.contains(&(Arc::as_ptr(&prof) as usize)) {
                continue;
            }
            done.push(Arc::as_ptr(&prof) as usize);
            if prof.type_name != rt && !(prof.type_name == "Resource" || prof.type_name == "DomainResource") {
                self.err("structure", path, format!("The profile {} applies to {}, not to a {rt}", prof.canonical(), prof.type_name));
                continue;
            }
            resolved.push(prof);
        }
        let pushed_bundle = rt == "Bundle" && {
            let policy = resolved.iter().find_map(|p| self.rules.reference_policy(&p.url).cloned());
            self.enter_bundle(res, path, policy)
        };
        // A profile's snapshot contains the base definition, so the base is checked separately only
        // when no profile of the resource's own type applies.
        if !resolved.iter().any(|p| p.type_name == rt && p.snapshot_error.is_none()) {
            self.validate_against(res, &base, path);
        }
        for prof in resolved {
            self.validate_against(res, &prof, path);
            // gateway rules: our own profiles that apply along with this one
            let rules = self.rules.clone();
            for r in rules.also_check(&prof.url) {
                match self.store.profile(r) {
                    Some(rp) => self.apply_rule_profile(res, &rp, path),
                    None => self.warn("not-found", path, format!("The gateway rule profile {r} (for {}) could not be loaded", prof.url)),
                }
            }
        }
        // rules for every resource of a type
        let rules = self.rules.clone();
        for r in rules.for_type(rt) {
            if let Some(rp) = self.store.profile(r) {
                self.apply_rule_profile(res, &rp, path);
            }
        }
        if rt == "StructureDefinition" && obj.prop("snapshot").is_none() && obj.prop("differential").is_some() && obj.prop("baseDefinition").is_some() {
            if let Err(e) = crate::snapshot::generate_snapshot(self.store, res) {
                self.err("processing", path, format!("Error generating Snapshot: {e}"));
            }
        }
        if let Some(Value::Array(contained)) = obj.prop("contained") {
            self.check_contained_referenced(res, contained, path);
        }
        if pushed_bundle {
            self.bundles.pop();
        }
        self.resources.pop();
    }

    /// dom-3: every contained resource is referenced from the rest of the resource (or refers to
    /// the container with `#`).
    fn check_contained_referenced(&mut self, res: &'a Value, contained: &'a [Value], path: &str) {
        fn collect<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
            match v {
                Value::Object(o) => {
                    for (k, x) in o {
                        if let Value::String(s) = x {
                            if s.starts_with('#') && (k == "reference" || k.starts_with("value") || k == "url" || k.ends_with("Canonical")) {
                                out.push(&s[1..]);
                            }
                        } else {
                            collect(x, out);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                Value::String(s) if s.starts_with('#') => out.push(&s[1..]),
                _ => {}
            }
        }
        let mut refs: Vec<&str> = Vec::new();
        if let Some(o) = res.as_object() {
            for (k, x) in o {
                if k != "contained" {
                    collect(x, &mut refs);
                }
            }
        }
        for (i, c) in contained.iter().enumerate() {
            let Some(id) = c.prop("id").and_then(Value::as_str) else { continue };
            if refs.contains(&id) {
                continue;
            }
            // referenced from another contained resource, or referring to the container
            let mut inner: Vec<&str> = Vec::new();
            for (j, o) in contained.iter().enumerate() {
                if j != i {
                    collect(o, &mut inner);
                }
            }
            let mut own: Vec<&str> = Vec::new();
            collect(c, &mut own);
            if inner.contains(&id) || own.contains(&"") {
                continue;
            }
            self.issues.push(
                Issue::error("invariant", format!("{path}.contained[{i}]"), format!("Constraint failed: dom-3: the contained resource '{id}' is not referenced from elsewhere in the resource and does not refer to its container (contained resources SHALL be referenced)"))
                    .with_rule("dom-3"),
            );
        }
    }

    /// A gateway rule profile: constraints only when its differential only touches the root.
    fn apply_rule_profile(&mut self, v: &'a Value, rp: &Arc<CompiledProfile>, path: &mut String) {
        if rp.diff_root_only {
            let key = (ptr(v), Arc::as_ptr(rp) as usize);
            if !self.emitted.insert(key) {
                return;
            }
            let focus = v.prop("resourceType").and_then(Value::as_str).unwrap_or(&rp.type_name).to_string();
            self.eval_constraints(v, None, &rp.elements[0].constraints, &focus, path, rp);
        } else {
            self.validate_against(v, rp, path);
        }
    }

    /// The base definition of a type (cached in the type).
    fn type_base(&self, ty: &CType) -> Option<Arc<CompiledProfile>> {
        ty.base.get_or_init(|| self.store.type_profile(&ty.code)).clone()
    }

    fn lookup_profile(&mut self, p: &str, explicit: bool, path: &str) -> Option<Arc<CompiledProfile>> {
        if let Some(prof) = self.store.profile(p) {
            return Some(prof);
        }
        let (url, version) = split_canonical(p);
        if version.is_some() {
            if let Some(prof) = self.store.profile(url) {
                self.warn(
                    "not-found",
                    path,
                    format!("Profile {p}: version {} is not loaded; validated against the loaded version {}", version.unwrap_or(""), prof.version.as_deref().unwrap_or("(none)")),
                );
                return Some(prof);
            }
        }
        if explicit {
            self.err("not-found", path, format!("Profile {p} could not be found, so the resource could not be validated against it"));
        } else {
            self.warn("not-found", path, format!("Profile reference '{p}' has not been checked because it could not be found"));
        }
        None
    }

    fn enter_bundle(&mut self, b: &'a Value, path: &str, policy: Option<crate::rules::ReferencePolicy>) -> bool {
        let mut idx = BundleIndex {
            path: path.to_string(),
            entry_of: HashMap::default(),
            by_full_url: HashMap::default(),
            by_type_id: HashMap::default(),
            is_document: matches!(b.prop("type").and_then(Value::as_str), Some("document" | "message")),
            policy: policy.map(|p| {
                let target = b.prop("entry").and_then(Value::as_array).and_then(|es| {
                    let pick = |e: &&'a Value| match p.literal_targets.as_str() {
                        "patient-entry" => e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient"),
                        _ => true,
                    };
                    es.iter().find(pick).and_then(|e| e.prop("fullUrl")).and_then(Value::as_str)
                });
                (p, target)
            }),
        };
        let btype = b.prop("type").and_then(Value::as_str).unwrap_or("");
        if let Some(entries) = b.prop("entry").and_then(Value::as_array) {
            for (i, e) in entries.iter().enumerate() {
                let res = e.prop("resource");
                if let Some(fu) = e.prop("fullUrl").and_then(Value::as_str) {
                    let absolute = fu.contains(':');
                    if !absolute {
                        self.err("invalid", &format!("{path}.entry[{i}]"), format!("The fullUrl must be an absolute URL (not '{fu}')"));
                    }
                    if let Some(r) = res {
                        if idx.by_full_url.insert(fu, r).is_some() && !matches!(btype, "history" | "searchset") {
                            let ver = r.prop("meta").and_then(|m| m.prop("versionId"));
                            if ver.is_none() {
                                self.err("invalid", &format!("{path}.entry[{i}]"), format!("Duplicate fullUrl '{fu}': fullUrl must be unique in a bundle"));
                            }
                        }
                        if fu.starts_with("http://") || fu.starts_with("https://") {
                            if let (Some(rt), Some(id)) = (r.prop("resourceType").and_then(Value::as_str), r.prop("id").and_then(Value::as_str)) {
                                let tail = format!("{rt}/{id}");
                                if !fu.ends_with(&tail) && !fu.contains(&format!("{tail}/_history/")) {
                                    self.err("invalid", &format!("{path}.entry[{i}]"), format!("The fullUrl '{fu}' does not match the resource's type and id ({tail})"));
                                }
                            }
                        }
                    }
                }
                if btype == "searchset" {
                    if let Some(r) = res {
                        match e.prop("search").and_then(|s| s.prop("mode")).and_then(Value::as_str) {
                            Some("outcome") if r.prop("resourceType").and_then(Value::as_str) != Some("OperationOutcome") => {
                                self.err("invalid", &format!("{path}.entry[{i}].resource"), format!("This is not an OperationOutcome ({}): search.mode 'outcome' entries must be OperationOutcomes", r.prop("resourceType").and_then(Value::as_str).unwrap_or("?")));
                            }
                            Some("match") | None if r.prop("id").is_none() && r.prop("resourceType").and_then(Value::as_str) != Some("OperationOutcome") => {
                                self.err("invalid", &format!("{path}.entry[{i}].resource"), "Search results must have ids".into());
                            }
                            _ => {}
                        }
                    }
                }
                if let Some(r) = res {
                    idx.entry_of.insert(ptr(r), i);
                    if let (Some(rt), Some(id)) = (r.prop("resourceType").and_then(Value::as_str), r.prop("id").and_then(Value::as_str)) {
                        idx.by_type_id.entry(format!("{rt}/{id}")).or_default().push(r);
                    }
                }
            }
        }
        self.bundles.push(Rc::new(idx));
        true
    }

    /// Validate `res` (a resource or a complex datatype value) against `prof`, once per pair.
    fn validate_against(&mut self, v: &'a Value, prof: &Arc<CompiledProfile>, path: &mut String) {
        let key = (ptr(v), Arc::as_ptr(prof) as usize);
        if !self.emitted.insert(key) {
            return;
        }
        let issues = self.profile_issues(v, prof, path);
        self.issues.extend(issues.iter().cloned());
    }

    fn profile_issues(&mut self, v: &'a Value, prof: &Arc<CompiledProfile>, path: &mut String) -> Rc<Vec<Issue>> {
        let key = (ptr(v), Arc::as_ptr(prof) as usize);
        if let Some(c) = self.cache.get(&key) {
            return c.clone();
        }
        if !self.in_progress.insert(key) {
            return Rc::new(Vec::new());
        }
        let saved = std::mem::take(&mut self.issues);
        if let Some(e) = &prof.snapshot_error {
            self.err("processing", path, format!("Error generating the snapshot of {}: {e}", prof.url));
        }
        let rt = v.prop("resourceType").and_then(Value::as_str);
        let own;
        let ty = match rt {
            Some(rt) if rt != prof.type_name => {
                own = CType::new(rt.to_string());
                &own
            }
            _ => &prof.root_type,
        };
        let mut ctx_path = prof.elements[0].path.clone();
        self.check_complex(Some(v), prof, 0, ty, path, &mut ctx_path, rt.is_some());
        let out = Rc::new(std::mem::replace(&mut self.issues, saved));
        self.in_progress.remove(&key);
        self.cache.insert(key, out.clone());
        out
    }

    fn conforms(&mut self, v: &'a Value, prof: &Arc<CompiledProfile>, path: &mut String) -> bool {
        if let Some(rt) = v.prop("resourceType").and_then(Value::as_str) {
            if prof.type_name != rt && prof.type_name != "Resource" && prof.type_name != "DomainResource" {
                return false;
            }
            // a resource conforms when it validates against the profile without errors; validate it
            // where it lives (its bundle entry), as the root of its own resource context
            let mut own_path = String::with_capacity(path.len().max(64) + 128);
            match self.bundles.last().and_then(|b| b.entry_of.get(&ptr(v)).map(|i| (b, i))) {
                Some((b, i)) => {
                    own_path.push_str(&b.path);
                    own_path.push_str(".entry");
                    push_index(&mut own_path, *i);
                    own_path.push_str(".resource");
                }
                None => own_path.push_str(path),
            }
            let saved_emitted = std::mem::take(&mut self.emitted);
            self.resources.push((v, v));
            let iss = self.profile_issues(v, prof, &mut own_path);
            self.resources.pop();
            self.emitted = saved_emitted;
            return !has_errors(&iss);
        }
        let iss = self.profile_issues(v, prof, path);
        !has_errors(&iss)
    }

    // ---------------------------------------------------------------- elements

    /// Check one value of complex type against element `ei` of `prof`.
    #[allow(clippy::too_many_arguments)]
    fn check_complex(&mut self, v: Option<&'a Value>, prof: &Arc<CompiledProfile>, ei: u32, ty: &CType, path: &mut String, ctx_path: &mut String, is_resource_root: bool) {
        let Some(v) = v else { return };
        let Some(obj) = v.as_object() else {
            self.err("structure", path, format!("This property must be an object (type {}), not {}", ty.code, kind_name(v)));
            return;
        };
        if obj.is_empty() {
            self.err("structure", path, "Object must have some content (empty objects are not allowed)".into());
            return;
        }
        let el = &prof.elements[ei as usize];
        // the children of a multi-type choice describe only what its types share (id, extension):
        // its content is checked against the actual type's definition
        let children_of = if el.types.len() > 1 && el.choice {
            None
        } else if !el.children.is_empty() {
            Some(ei)
        } else {
            el.content_ref
        };
        if let Some(ci) = children_of {
            self.walk_object(obj, prof, ci, path, ctx_path, &ty.code, is_resource_root);
        }
        // the type's own definition (profiles or base type)
        if !is_resource_root {
            if !ty.profiles.is_empty() {
                let resolved = ty.resolved_profiles.get_or_init(|| ty.profiles.iter().map(|p| self.store.profile(p)).collect()).clone();
                for (p, tp) in ty.profiles.iter().zip(resolved) {
                    match tp {
                        Some(tp) => self.validate_datatype(v, &tp, path, ctx_path),
                        None => {
                            if ty.code != "Extension" {
                                self.err("not-found", path, format!("The profile {p} required for this element could not be found"));
                            }
                        }
                    }
                }
            } else if children_of.is_none() {
                if let Some(tp) = self.type_base(ty) {
                    self.validate_datatype(v, &tp, path, ctx_path);
                } else if ty.code != "BackboneElement" && ty.code != "Element" {
                    self.warn("not-supported", path, format!("Unknown type {}: its content could not be checked", ty.code));
                }
            }
        }
        self.element_checks(v, None, prof, ei, ty, path, is_resource_root);
        if ty.code == "Attachment" {
            if let (Some(data), Some(size)) = (obj.prop("data").and_then(Value::as_str), obj.prop("size").and_then(Value::as_u64)) {
                if let Some(n) = primitives::base64_len(data) {
                    if n as u64 != size {
                        self.err("value", path, format!("Stated Attachment Size {size} does not match actual attachment size {n}"));
                    }
                }
            }
        }
        if ty.code == "Reference" {
            self.check_reference(obj, &el.types, ty, path);
        }
        if ty.code == "Extension" {
            // ext-1
            let has_ext = obj.contains_key("extension");
            let has_value = obj.keys().any(|k| k.len() > 5 && k.starts_with("value") && k.as_bytes()[5].is_ascii_uppercase());
            if has_ext && has_value {
                self.err("invariant", path, "Constraint failed: ext-1: 'Must have either extensions or value[x], not both'".into());
            } else if !has_ext && !has_value {
                self.err("invariant", path, "Constraint failed: ext-1: 'Must have either extensions or value[x], not both' (it has neither)".into());
            }
        }
    }

    fn validate_datatype(&mut self, v: &'a Value, tp: &Arc<CompiledProfile>, path: &mut String, ctx_path: &mut String) {
        let key = (ptr(v), Arc::as_ptr(tp) as usize);
        if !self.emitted.insert(key) {
            return;
        }
        let Some(obj) = v.as_object() else { return };
        let root = &tp.elements[0];
        if !root.children.is_empty() {
            self.walk_object(obj, tp, 0, path, ctx_path, &tp.type_name, false);
        }
        self.element_checks(v, None, tp, 0, &tp.root_type, path, false);
        if tp.type_name == "Extension" && tp.derivation == "constraint" {
            self.check_extension_context(tp, path, ctx_path);
        }
        let rules = self.rules.clone();
        for r in rules.also_check(&tp.url) {
            if let Some(rp) = self.store.profile(r) {
                self.apply_rule_profile(v, &rp, path);
            }
        }
    }

    /// Map the properties of `obj` to the children of element `ei` and check each.
    #[allow(clippy::too_many_arguments)]
    fn walk_object(&mut self, obj: &'a Map<String, Value>, prof: &Arc<CompiledProfile>, ei: u32, path: &mut String, ctx_path: &mut String, ctx_type: &str, is_resource_root: bool) {
        // property -> child
        let mut found = self.found_pool.pop().unwrap_or_default();
        found.clear();
        for (k, v) in obj {
            if k == "resourceType" && is_resource_root {
                continue;
            }
            let (name, under) = match k.strip_prefix('_') {
                Some(n) => (n, true),
                None => (k.as_str(), false),
            };
            let pe = &prof.elements[ei as usize];
            let mut hit = pe.child_index.get(name).copied();
            if hit.is_none() {
                for &c in &pe.choice_children {
                    let ce = &prof.elements[c as usize];
                    if name.len() > ce.name.len() && name.starts_with(ce.name.as_str()) && name.as_bytes()[ce.name.len()].is_ascii_uppercase() {
                        hit = Some(c);
                        break;
                    }
                }
            }
            match hit {
                Some(c) => found.push((c, k.as_str(), v, under)),
                None => {
                    let p = format!("{path}");
                    self.err("structure", &p, format!("Unrecognized property '{k}': it is not an element of {}", prof.elements[ei as usize].path));
                }
            }
        }
        // children that must be present
        for &c in &prof.elements[ei as usize].required_children {
            if !found.iter().any(|f| f.0 == c) {
                let ce = &prof.elements[c as usize];
                self.err("required", path, format!("{}: minimum required = {}, but only found 0 (from {})", ce.path, ce.min, prof.canonical()));
            }
        }
        found.sort_by_key(|f| f.0);
        let mut gi = 0;
        while gi < found.len() {
            let c = found[gi].0;
            let mut gj = gi + 1;
            while gj < found.len() && found[gj].0 == c {
                gj += 1;
            }
            let group = &found[gi..gj];
            gi = gj;
            let ce = &prof.elements[c as usize];
            let mut main: Option<(&'a str, &'a Value)> = None;
            let mut under: Option<&'a Value> = None;
            let mut choice_keys: Vec<&'a str> = Vec::new();
            for &(_, k, v, u) in group {
                if u {
                    under = Some(v);
                    if main.is_none() && ce.choice {
                        choice_keys.push(&k[1..]);
                    }
                } else {
                    main = Some((k, v));
                    if ce.choice && !choice_keys.contains(&k) {
                        choice_keys.push(k);
                    }
                }
            }
            if main.is_none() && under.is_none() {
                if ce.min > 0 {
                    self.err("required", path, format!("{}: minimum required = {}, but only found 0 (from {})", ce.path, ce.min, prof.canonical()));
                }
                continue;
            }
            if ce.choice && choice_keys.len() > 1 {
                self.err("structure", path, format!("Only one of {} is allowed for {}[x]", choice_keys.join(", "), ce.name));
            }
            // the JSON name actually used
            let key: &str = match main {
                Some((k, _)) => k,
                None => choice_keys.first().copied().unwrap_or(ce.name.as_str()),
            };
            let ty = match self.element_type(ce, key) {
                Ok(t) => t,
                Err(m) => {
                    self.err("structure", path, m);
                    continue;
                }
            };
            let seg = Seg { name: &ce.name, of_type: if ce.choice { Some(&key[ce.name.len()..]) } else { None } };
            // collect items
            let mut items = self.items_pool.pop().unwrap_or_default();
            items.clear();
            let mv = main.map(|m| m.1);
            if ce.many {
                let ma = match mv {
                    Some(Value::Array(a)) => Some(a),
                    Some(other) => {
                        self.err("structure", path, format!("The property {key} must be a JSON array, not {}", kind_name(other)));
                        continue;
                    }
                    None => None,
                };
                let ua = match under {
                    Some(Value::Array(a)) => Some(a),
                    Some(other) => {
                        self.err("structure", path, format!("The property _{key} must be a JSON array, not {}", kind_name(other)));
                        continue;
                    }
                    None => None,
                };
                if ma.is_some_and(|a| a.is_empty()) || ua.is_some_and(|a| a.is_empty()) {
                    self.err("structure", &format!("{path}.{seg}"), "Array cannot be empty - the property should not be present if it has no values".into());
                    continue;
                }
                let n = ma.map(|a| a.len()).unwrap_or(0).max(ua.map(|a| a.len()).unwrap_or(0));
                if let (Some(a), Some(b)) = (ma, ua) {
                    if a.len() != b.len() {
                        self.err("structure", path, format!("The arrays {key} and _{key} must have the same length"));
                    }
                }
                for i in 0..n {
                    let m = ma.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    let u = ua.and_then(|a| a.get(i)).filter(|v| !v.is_null());
                    if m.is_none() && u.is_none() {
                        self.err("structure", &format!("{path}.{seg}[{i}]"), "Null values are not allowed (an array item must have a value or extensions)".into());
                        continue;
                    }
                    if ma.and_then(|a| a.get(i)).is_some_and(|v| v.is_null()) && !is_primitive_code(&ty.code) {
                        self.err("structure", &format!("{path}.{seg}[{i}]"), "Null values are not allowed".into());
                    }
                    items.push((m, u));
                }
            } else {
                if let Some(Value::Array(_)) = mv {
                    self.err("structure", path, format!("The property {key} must not be an array (it has a maximum cardinality of 1)"));
                    continue;
                }
                if let Some(Value::Array(_)) = under {
                    self.err("structure", path, format!("The property _{key} must not be an array"));
                    continue;
                }
                if mv.is_some_and(Value::is_null) {
                    self.err("structure", &format!("{path}.{seg}"), "Null values are not allowed; omit the property instead".into());
                    continue;
                }
                items.push((mv, under));
            }
            let count = items.len() as u32;
            if count < ce.min {
                self.err("required", path, format!("{}: minimum required = {}, but only found {count} (from {})", ce.path, ce.min, prof.canonical()));
            }
            if let Some(max) = ce.max {
                if count > max {
                    self.err("structure", path, format!("{}: max allowed = {max}, but found {count} (from {})", ce.path, prof.canonical()));
                }
            }
            let len0 = path.len();
            let item_path = ItemPath { seg, many: ce.many };
            for (i, (m, u)) in items.iter().enumerate() {
                item_path.push_to(path, i);
                self.check_value(*m, *u, prof, c, &ty, path, ctx_path, ctx_type);
                path.truncate(len0);
            }
            if !ce.slices.is_empty() || (ce.slicing.is_some()) {
                self.check_slices(&items, &item_path, prof, c, key, path, ctx_path, ctx_type);
            } else if (ce.name == "extension" || ce.name == "modifierExtension") && !items.is_empty() {
                for (i, (m, _)) in items.iter().enumerate() {
                    if let Some(m) = m {
                        item_path.push_to(path, i);
                        self.check_unsliced_extension(m, path, ctx_path, ctx_type);
                        path.truncate(len0);
                    }
                }
            }
            self.items_pool.push(items);
        }
        self.found_pool.push(found);
    }

    /// The type of a value for element `ce`, given the JSON key used.
    fn element_type<'p>(&self, ce: &'p CElement, key: &str) -> Result<std::borrow::Cow<'p, CType>, String> {
        use std::borrow::Cow;
        if ce.choice {
            let suffix = key.strip_prefix(ce.name.as_str()).unwrap_or("");
            if let Some(t) = ce.types.iter().find(|t| type_matches_suffix(&t.code, suffix)) {
                return Ok(Cow::Borrowed(t));
            }
            let allowed: Vec<&str> = ce.types.iter().map(|t| t.code.as_str()).collect();
            return Err(format!("The type {suffix} is not allowed for {} (allowed types: [{}])", ce.path, allowed.join(", ")));
        }
        match ce.types.len() {
            0 => Ok(Cow::Borrowed(ce.merged_type.get_or_init(|| CType::new("BackboneElement".into())))),
            1 => Ok(Cow::Borrowed(&ce.types[0])),
            _ => {
                // same code with several profiles/targets: merge
                let code = &ce.types[0].code;
                if ce.types.iter().all(|t| &t.code == code) {
                    Ok(Cow::Borrowed(ce.merged_type.get_or_init(|| {
                        let mut t = CType { profiles: ce.types[0].profiles.clone(), target_profiles: ce.types[0].target_profiles.clone(), ..CType::new(code.clone()) };
                        for o in &ce.types[1..] {
                            t.profiles.extend(o.profiles.iter().cloned());
                            t.target_profiles.extend(o.target_profiles.iter().cloned());
                        }
                        t
                    })))
                } else {
                    Ok(Cow::Borrowed(&ce.types[0]))
                }
            }
        }
    }

    /// Check one item (array element or single value) of element `ei`.
    #[allow(clippy::too_many_arguments)]
    fn check_value(&mut self, m: Option<&'a Value>, u: Option<&'a Value>, prof: &Arc<CompiledProfile>, ei: u32, ty: &CType, path: &mut String, ctx_path: &mut String, _ctx_type: &str) {
        let el = &prof.elements[ei as usize];
        if ty.primitive {
            if let Some(v) = m {
                let as_id = el.name == "id" && prof.kind == "resource" && prof.elements[0].children.contains(&ei);
                let t = if as_id { "id" } else { ty.code.as_str() };
                if let Some(msg) = primitives::check(t, v) {
                    let msg = if as_id { format!("Invalid Resource id: {msg}") } else { msg };
                    self.err("value", path, msg);
                    return;
                }
            }
            if let Some(u) = u {
                match u.as_object() {
                    Some(o) if o.is_empty() => self.err("structure", path, "Object must have some content (empty objects are not allowed)".into()),
                    Some(o) => {
                        if o.contains_key("value") {
                            self.err("structure", path, "The primitive extension object (_x) must not contain a value".into());
                        }
                        if let Some(tp) = self.type_base(ty) {
                            let l = ctx_path.len();
                            ctx_path.push('.');
                            ctx_path.push_str(&el.name);
                            self.walk_object(o, &tp, 0, path, ctx_path, &ty.code, false);
                            ctx_path.truncate(l);
                        }
                    }
                    None => self.err("structure", path, format!("The _ property of a primitive must be an object, not {}", kind_name(u))),
                }
            }
            if let Some(v) = m {
                self.element_checks(v, u, prof, ei, ty, path, false);
            }
            return;
        }
        if *ty.is_resource.get_or_init(|| is_resource_type_code(self.store, &ty.code)) {
            if let Some(v) = m {
                if ty.profiles.len() > 1 {
                    // type.profile lists alternatives: the resource must conform to one of them
                    let mut chosen: Option<String> = None;
                    for p in &ty.profiles {
                        if let Some(pp) = self.store.profile(p) {
                            let mut sub = path.clone();
                            if self.conforms(v, &pp, &mut sub) {
                                chosen = Some(p.clone());
                                break;
                            }
                        }
                    }
                    match chosen {
                        Some(p) => self.validate_resource(v, path, std::slice::from_ref(&p), false),
                        None => {
                            self.err("structure", path, format!("The resource does not conform to any of the allowed profiles: {}", ty.profiles.join(", ")));
                            self.validate_resource(v, path, &[], false);
                        }
                    }
                } else {
                    self.validate_resource(v, path, &ty.profiles, false);
                }
                if ty.code != "Resource" && ty.code != "DomainResource" {
                    if let Some(rt) = v.prop("resourceType").and_then(Value::as_str) {
                        if rt != ty.code {
                            self.err("structure", path, format!("This element must contain a {} resource, not a {rt}", ty.code));
                        }
                    }
                }
            }
            return;
        }
        if u.is_some() {
            self.err("structure", path, format!("Unrecognized property '_{}': only primitive elements may have a _ sibling", el.name));
        }
        if el.name == "extension" || el.name == "modifierExtension" {
            // the holder of the extension is the context
            self.check_complex(m, prof, ei, ty, path, ctx_path, false);
        } else {
            let l = ctx_path.len();
            ctx_path.push('.');
            ctx_path.push_str(&el.name);
            self.check_complex(m, prof, ei, ty, path, ctx_path, false);
            ctx_path.truncate(l);
        }
    }

    /// fixed, pattern, maxLength, min/max value, binding, invariants.
    #[allow(clippy::too_many_arguments)]
    fn element_checks(&mut self, v: &'a Value, u: Option<&'a Value>, prof: &Arc<CompiledProfile>, ei: u32, ty: &CType, path: &str, is_resource_root: bool) {
        let el = &prof.elements[ei as usize];
        if let Some(f) = &el.fixed {
            if !json_eq(v, f) {
                self.err("value", path, format!("Value is '{}' but is fixed to '{}' in the profile {}", short(v), short(f), prof.canonical()));
            }
        }
        if let Some(p) = &el.pattern {
            if !pattern_match(v, p) {
                self.err("value", path, format!("The value {} does not match the required pattern {} (from {})", short(v), short(p), prof.canonical()));
            }
        }
        if let (Some(ml), Some(s)) = (el.max_length, v.as_str()) {
            if s.chars().count() > ml {
                self.err("value", path, format!("The value is {} characters long, more than the maximum length {ml}", s.chars().count()));
            }
        }
        if el.min_value.is_some() || el.max_value.is_some() {
            self.check_min_max(v, el, path);
        }
        if let Some(b) = &el.binding {
            if b.strength == "required" {
                if let Some(vs) = &b.value_set {
                    self.check_binding(v, &ty.code, vs, path);
                }
            }
        }
        if !el.constraints.is_empty() {
            let cons: &[Arc<Constraint>] = &el.constraints;
            let focus_type: &str = if is_resource_root {
                v.prop("resourceType").and_then(Value::as_str).unwrap_or(&prof.type_name)
            } else if ty.code == "BackboneElement" || ty.code == "Element" {
                &el.path
            } else {
                &ty.code
            };
            self.eval_constraints(v, u, cons, focus_type, path, prof);
        }
    }

    fn check_min_max(&mut self, v: &Value, el: &CElement, path: &str) {
        // minValueDuration / maxValueDuration on date-like values: now -/+ the duration
        if let Some(s) = v.as_str() {
            for (bound, is_min) in [(&el.min_value, true), (&el.max_value, false)] {
                let Some(Value::Object(d)) = bound else { continue };
                let Some(q) = d.prop("value").and_then(Value::as_f64) else { continue };
                let unit = d.prop("code").or_else(|| d.prop("unit")).and_then(Value::as_str).unwrap_or("d");
                let days = match unit {
                    "a" | "year" | "years" => q * 365.25,
                    "mo" | "month" | "months" => q * 30.4375,
                    "wk" | "week" | "weeks" => q * 7.0,
                    "d" | "day" | "days" => q,
                    "h" | "hour" | "hours" => q / 24.0,
                    _ => continue,
                };
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64 / 86400).unwrap_or(0);
                let limit = civil_date(if is_min { now - days as i64 } else { now + days as i64 });
                let cmp_len = s.len().min(limit.len());
                let (Some(a), Some(b)) = (s.get(..cmp_len), limit.get(..cmp_len)) else { continue };
                if is_min && a < b {
                    self.err("value", path, format!("The value '{s}' is earlier than the minimum allowed value {limit} (now minus {q} {unit})"));
                } else if !is_min && a > b {
                    self.err("value", path, format!("The value '{s}' is later than the maximum allowed value {limit} (now plus {q} {unit})"));
                }
            }
        }
        let num = |x: &Value| -> Option<rust_decimal::Decimal> {
            match x {
                Value::Number(n) => n.to_string().parse().ok(),
                Value::Object(o) => o.prop("value").and_then(|v| v.as_number()).and_then(|n| n.to_string().parse().ok()),
                _ => None,
            }
        };
        let s = |x: &Value| x.as_str().map(str::to_string).or_else(|| x.prop("value").map(|v| v.to_string()));
        if let Some(min) = &el.min_value {
            if let (Some(a), Some(b)) = (num(v), num(min)) {
                if a < b {
                    self.err("value", path, format!("The value in the instance ({a}) is less than the specified minimum value ({b})"));
                }
            } else if let (Some(a), Some(b)) = (v.as_str(), min.as_str()) {
                if a < b {
                    self.err("value", path, format!("The value '{a}' is less than the specified minimum value '{b}'"));
                }
            }
            let _ = s;
        }
        if let Some(max) = &el.max_value {
            if let (Some(a), Some(b)) = (num(v), num(max)) {
                if a > b {
                    self.err("value", path, format!("The value in the instance ({a}) is greater than the specified maximum value ({b})"));
                }
            } else if let (Some(a), Some(b)) = (v.as_str(), max.as_str()) {
                if a > b {
                    self.err("value", path, format!("The value '{a}' is greater than the specified maximum value '{b}'"));
                }
            }
        }
    }

    fn check_binding(&mut self, v: &Value, ty: &str, vs: &str, path: &str) {
        let vs_label = || -> String { vs.to_string() };
        let coding_path = |i: Option<usize>| match i {
            Some(i) => format!("{path}.coding[{i}]"),
            None => path.to_string(),
        };
        // (system, code, index in CodeableConcept.coding), without collecting them
        let (single, list): (Option<(Option<&str>, &str)>, &[Value]) = match ty {
            "code" | "string" | "uri" => (v.as_str().map(|c| (None, c)), &[]),
            "Coding" | "Quantity" => (v.prop("code").and_then(Value::as_str).map(|c| (v.prop("system").and_then(Value::as_str), c)), &[]),
            "CodeableConcept" => (None, v.prop("coding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])),
            _ => return,
        };
        let codings = single.map(|(s, c)| (s, c, None)).into_iter().chain(
            list.iter().enumerate().filter_map(|(i, c)| c.prop("code").and_then(Value::as_str).map(|code| (c.prop("system").and_then(Value::as_str), code, Some(i)))),
        );
        let mut unknown: Vec<(String, String, String)> = Vec::new();
        let mut not: Vec<(String, String)> = Vec::new();
        for (sys, code, p) in codings {
            match self.term.validate_code(vs, sys, code) {
                Membership::Member => return,
                Membership::NotMember => not.push((format!("{}#{code}", sys.unwrap_or("")), coding_path(p))),
                Membership::Unknown(r) => unknown.push((format!("{}#{code}", sys.unwrap_or("")), coding_path(p), r)),
            }
        }
        if unknown.is_empty() && not.is_empty() {
            // no codes
            return;
        }
        let name = self.term.value_set_name(vs).map(|n| format!("'{n}' ")).unwrap_or_default();
        if !unknown.is_empty() {
            for (c, p, r) in unknown {
                self.warn("code-invalid", &p, format!("The code {c} could not be checked against the required value set {name}({}): {r}", vs_label()));
            }
            return;
        }
        if ty == "CodeableConcept" && not.len() > 1 {
            self.err("code-invalid", path, format!("None of the codings provided are in the value set {name}({}), and a code from this value set is required", vs_label()));
        } else {
            for (c, p) in not {
                self.err("code-invalid", &p, format!("The code provided ({c}) was not found in the value set {name}({}), and a code from this value set is required", vs_label()));
            }
        }
    }

    fn eval_constraints(&mut self, v: &'a Value, u: Option<&'a Value>, cons: &[Arc<Constraint>], focus_type: &str, path: &str, prof: &Arc<CompiledProfile>) {
        let (res, root) = self.resources.last().copied().unwrap_or((v, v));
        let bundle = self.bundles.last().cloned();
        let resolver = EvalResolver { bundle: bundle.as_deref(), container: Some(root) };
        let fctx = fhirpath::Context::new(self.model).with_resource(res).with_root_resource(root).with_resolver(&resolver);
        let item = fhirpath::Item::from_json(self.model, v, u, focus_type);
        for c in cons {
            if let (Some(el), Some(o)) = (&c.vacuous_without, v.as_object()) {
                if get_prop(o, el).is_none() {
                    continue;
                }
            }
            let ekey = (ptr(v), Arc::as_ptr(c) as usize);
            if let Some(prev) = self.evaluated.get(&ekey) {
                if let Some(i) = prev {
                    let i = i.clone();
                    self.issues.push(i);
                }
                continue;
            }
            let before = self.issues.len();
            let _t = (*PROFILE_CONSTRAINTS).then(std::time::Instant::now);
            let _guard = Timer(_t, &c.key);
            match &c.parsed {
                Err(e) => self.warn("invariant", path, format!("Constraint {} ({}) could not be parsed, so it was not checked: {e}", c.key, c.expression)),
                Ok(expr) => match fhirpath::evaluate_slice_bool(expr, &fctx, std::slice::from_ref(&item)) {
                    Ok(Some(false)) => {
                        let sev = if c.severity_error { Severity::Error } else { Severity::Warning };
                        let mut msg = format!("Constraint failed: {}: '{}'", c.key, c.human);
                        if c.source != prof.url && !c.source.is_empty() && !c.source.starts_with("http://hl7.org/fhir/StructureDefinition/") {
                            msg.push_str(&format!(" (defined in {})", c.source));
                        } else if !prof.url.starts_with("http://hl7.org/fhir/StructureDefinition/") {
                            msg.push_str(&format!(" (from {})", prof.url));
                        }
                        self.issues.push(Issue::new(sev, "invariant", path, msg).with_rule(c.key.clone()));
                    }
                    Ok(_) => {}
                    Err(e) => self.warn("invariant", path, format!("Constraint {} could not be evaluated, so it was not checked: {}", c.key, e.message)),
                },
            }
            let produced = self.issues.get(before).cloned();
            self.evaluated.insert(ekey, produced);
        }
    }

    // ---------------------------------------------------------------- references

    fn check_reference(&mut self, obj: &'a Map<String, Value>, _types: &[CType], ty: &CType, path: &str) {
        if let Some(b) = self.bundles.last().cloned() {
            if let Some((pol, first)) = &b.policy {
                // only references inside the entries of this Bundle (not in nested resources' own bundles)
                if !pol.allow_logical && obj.contains_key("identifier") {
                    self.side_issues.push(Issue::error("business-rule", path, format!("{}: Reference.identifier (a logical reference) is not allowed in this Bundle ({})", pol.id, pol.reason)).with_rule(pol.id.clone()));
                }
                if let Some(r) = obj.prop("reference").and_then(Value::as_str) {
                    if !pol.literal_targets.is_empty() && !r.starts_with('#') && Some(r) != *first {
                        self.side_issues.push(
                            Issue::error("business-rule", path, format!("{}: the reference '{r}' must be a contained resource ('#id') or the {} entry's fullUrl ({}) ({})", pol.id, if pol.literal_targets == "patient-entry" { "Patient" } else { "first" }, first.unwrap_or("none"), pol.reason))
                                .with_rule(pol.id.clone()),
                        );
                    }
                }
            }
        }
        let Some(r) = get_prop(obj, "reference").and_then(Value::as_str) else { return };
        let mut resolved: Option<&'a Value> = None;
        if let Some(id) = r.strip_prefix('#') {
            let container = self.resources.last().map(|x| x.1);
            match container.and_then(|c| find_contained(c, id)) {
                Some(t) => resolved = Some(t),
                None => {
                    self.err("not-found", path, format!("Unable to resolve resource with reference '{r}': no contained resource has that id"));
                    return;
                }
            }
        } else if let Some(b) = self.bundles.last().cloned() {
            resolved = b.resolve(r);
            if resolved.is_none() {
                if (r.starts_with("urn:uuid:") || r.starts_with("urn:oid:")) && !b.is_document {
                    self.warn("not-found", path, format!("Can't find '{r}' in the bundle: no entry has this fullUrl"));
                } else if b.is_document {
                    self.err("not-found", path, format!("Can't find '{r}' in the bundle: references in a document must resolve inside the document"));
                }
            }
        }
        if ty.target_profiles.is_empty() {
            return;
        }
        let rtype: Option<String> = resolved
            .and_then(|t| t.prop("resourceType").and_then(Value::as_str).map(str::to_string))
            .or_else(|| {
                let parts: Vec<&str> = r.split('/').collect();
                let n = parts.len();
                let t = if n >= 4 && parts[n - 2] == "_history" { parts[n - 4] } else if n >= 2 { parts[n - 2] } else { return None };
                (t.starts_with(|c: char| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphabetic())).then(|| t.to_string())
            });
        let Some(rtype) = rtype else { return };
        let allowed = ty.target_types.get_or_init(|| {
            let mut allowed: Vec<String> = Vec::new();
            for tp in &ty.target_profiles {
                let t = match self.store.sd_meta(tp) {
                    Some((_, Some(t))) => t.to_string(),
                    _ => tp.rsplit('/').next().unwrap_or(tp).split('|').next().unwrap_or("").to_string(),
                };
                if t == "Resource" || t == "DomainResource" {
                    return None;
                }
                allowed.push(t);
            }
            Some(allowed)
        });
        let Some(allowed) = allowed else { return };
        if !allowed.iter().any(|a| *a == rtype) {
            self.err("structure", path, format!("The type '{rtype}' implied by the reference URL {r} is not a valid Target for this element (must be one of [{}])", allowed.join(", ")));
        }
    }

    // ---------------------------------------------------------------- extensions

    fn check_unsliced_extension(&mut self, ext: &'a Value, path: &mut String, ctx_path: &mut String, _ctx_type: &str) {
        let Some(url) = ext.prop("url").and_then(Value::as_str) else { return };
        if !url.contains(':') {
            return; // relative url: a sub-extension of a complex extension, checked by its parent
        }
        match self.store.profile(url) {
            Some(ep) if ep.type_name == "Extension" => self.validate_datatype(ext, &ep, path, ctx_path),
            Some(_) => self.err("structure", path, format!("The URL {url} is not an extension definition")),
            None => {
                if url.starts_with("http://example.org") || url.starts_with("https://example.org") {
                    self.err("not-found", path, format!("The extension {url} could not be found so is not allowed here (example URLs are not allowed)"));
                } else if url.starts_with("http://hl7.org/fhir/") {
                    self.warn("not-found", path, format!("The extension {url} is not in the loaded packages (it belongs to an HL7 package that is not loaded), so it could not be checked"));
                } else {
                    self.err("not-found", path, format!("The extension {url} could not be found so is not allowed here"));
                }
            }
        }
    }

    fn check_extension_context(&mut self, ep: &Arc<CompiledProfile>, path: &str, ctx_path: &String) {
        if ep.contexts.is_empty() {
            return;
        }
        // ctx_path is the element holding the extension (e.g. Patient.birthDate, Coding, Extension)
        let base_path: &str = ctx_path;
        let at_root = !base_path.contains('.');
        // cheap checks first
        for (t, e) in &ep.contexts {
            if t != "element" && t != "extension" {
                return; // fhirpath contexts are not checked
            }
            if t == "element" {
                let e = e.strip_suffix("[x]").unwrap_or(e);
                if e == "Element" || e == "Base" || e == base_path || e.strip_prefix(base_path).is_some_and(|r| r.starts_with('.')) || (at_root && (e == "Resource" || e == "DomainResource")) {
                    return;
                }
            } else if base_path == "Extension" || base_path.ends_with(".extension") {
                return;
            }
        }
        let holder_type = self.model.child_element_type_name(base_path);
        let mut allowed = Vec::new();
        for (t, e) in &ep.contexts {
            let e = &e.replace("[x]", "");
            match t.as_str() {
                "element" => {
                    if Some(e.as_str()) == holder_type.as_deref() {
                        return;
                    }
                    // a context inside a datatype (ElementDefinition.type.code) for a holder path ending
                    // in the same element (StructureDefinition.snapshot.element.type)
                    if let Some((_, e_rest)) = e.split_once('.') {
                        let holder_last = base_path.rsplit('.').next().unwrap_or("");
                        if e_rest.split('.').next() == Some(holder_last) && !at_root {
                            return;
                        }
                    }
                    // a datatype context (CodeableConcept) against the holder's type
                    if let Some(ht) = &holder_type {
                        if self.model.is_subtype(ht, e) {
                            return;
                        }
                    }
                    if at_root && self.model.is_subtype(base_path, e) {
                        return;
                    }
                    allowed.push(e.clone());
                }
                _ => allowed.push(format!("extension {e}")),
            }
        }
        self.err("structure", path, format!("The extension {} is not allowed to be used at this point ({base_path}); allowed contexts: {}", ep.url, allowed.join(", ")));
    }

    // ---------------------------------------------------------------- slicing

    #[allow(clippy::too_many_arguments)]
    fn check_slices(&mut self, items: &[(Option<&'a Value>, Option<&'a Value>)], item_path: &ItemPath, prof: &Arc<CompiledProfile>, ci: u32, key: &str, path: &mut String, ctx_path: &mut String, ctx_type: &str) {
        let ce = &prof.elements[ci as usize];
        let slices = &ce.slices;
        let is_ext = ce.name == "extension" || ce.name == "modifierExtension";
        let discs = Self::effective_discs(ce);
        let (ordered, rules) = ce.slicing.as_ref().map(|s| (s.ordered, s.rules)).unwrap_or((false, SlicingRules::Open));
        let mut counts = vec![0u32; slices.len()];
        let mut last = 0usize;
        let mut unmatched_seen = false;
        let len0 = path.len();
        for (i, (m, u)) in items.iter().enumerate() {
            item_path.push_to(path, i);
            let mut matched = None;
            if let (Some(v), Some(discs)) = (m, discs.as_deref()) {
                // the instance values at each discriminator path, once per item
                let actuals: Vec<Vec<&'a Value>> = discs.iter().map(|d| self.instance_at(v, &d.path, key)).collect();
                let index = prof.elements[ci as usize].slice_index.get_or_init(|| self.build_slice_index(prof, &slices, discs));
                match index {
                    Some(idx) => {
                        let mut cands: Vec<u32> = idx.wildcard.clone();
                        for a in &actuals[0] {
                            if let Some(s) = a.as_str() {
                                if let Some(l) = idx.by_value.get(s) {
                                    cands.extend_from_slice(l);
                                }
                            }
                        }
                        cands.sort_unstable();
                        cands.dedup();
                        for si in cands {
                            if self.slice_matches(prof, ci, slices[si as usize], key, path, discs, &actuals) {
                                matched = Some(si as usize);
                                break;
                            }
                        }
                    }
                    None => {
                        for (si, &s) in slices.iter().enumerate() {
                            if self.slice_matches(prof, ci, s, key, path, discs, &actuals) {
                                matched = Some(si);
                                break;
                            }
                        }
                    }
                }
            }
            match matched {
                Some(si) => {
                    counts[si] += 1;
                    if ordered && si < last {
                        self.err("structure", path, format!("As specified by profile {}, element '{}' is out of order (slice {} must come before slice {})", prof.canonical(), ce.path, prof.elements[slices[si] as usize].slice_name.as_deref().unwrap_or(""), prof.elements[slices[last] as usize].slice_name.as_deref().unwrap_or("")));
                    }
                    last = last.max(si);
                    if rules == SlicingRules::OpenAtEnd && unmatched_seen {
                        self.err("structure", path, format!("The element does not match a slice but comes before sliced elements, and slicing of {} is openAtEnd", ce.path));
                    }
                    let se = &prof.elements[slices[si] as usize];
                    match self.element_type(se, key) {
                        Ok(ty) => self.check_value(*m, *u, prof, slices[si], &ty, path, ctx_path, ctx_type),
                        Err(msg) => self.err("structure", path, msg),
                    }
                }
                None => {
                    unmatched_seen = true;
                    if rules == SlicingRules::Closed {
                        let names: Vec<&str> = slices.iter().filter_map(|&s| prof.elements[s as usize].slice_name.as_deref()).collect();
                        self.err("structure", path, format!("This element does not match any known slice defined in the profile {} and slicing of {} is CLOSED (slices: {})", prof.canonical(), ce.path, names.join(", ")));
                    } else if is_ext {
                        if let Some(v) = m {
                            self.check_unsliced_extension(v, path, ctx_path, ctx_type);
                        }
                    }
                }
            }
            path.truncate(len0);
        }
        for (si, &s) in slices.iter().enumerate() {
            let se = &prof.elements[s as usize];
            let name = se.slice_name.as_deref().unwrap_or("");
            if counts[si] < se.min {
                self.err("required", path, format!("{}:{name}: minimum required = {}, but only found {} (from {})", ce.path, se.min, counts[si], prof.canonical()));
            }
            if let Some(max) = se.max {
                if counts[si] > max {
                    self.err("structure", path, format!("{}:{name}: max allowed = {max}, but found {} (from {})", ce.path, counts[si], prof.canonical()));
                }
            }
        }
    }

    fn compute_disc(&self, prof: &Arc<CompiledProfile>, si: u32, d: &crate::profile::Discriminator) -> DiscCache {
        match d.kind {
            DiscriminatorType::Value | DiscriminatorType::Pattern => DiscCache::Value(self.slice_value_at(prof, si, &d.path)),
            DiscriminatorType::Type => DiscCache::Types(self.slice_element_at(prof, si, &d.path).map(|(tp, tei)| tp.elements[tei as usize].types.iter().map(|t| t.code.clone()).collect())),
            DiscriminatorType::Profile => {
                let resolve = d.path.ends_with("resolve()");
                DiscCache::Profiles(
                    self.slice_element_at(prof, si, &d.path)
                        .map(|(tp, tei)| {
                            tp.elements[tei as usize]
                                .types
                                .iter()
                                .flat_map(|t| if resolve { t.target_profiles.clone() } else { t.profiles.clone() })
                                .filter_map(|p| self.store.profile(&p))
                                .collect::<Vec<_>>()
                        })
                        .filter(|v| !v.is_empty()),
                )
            }
            DiscriminatorType::Exists => DiscCache::Exists(self.slice_element_at(prof, si, &d.path).map(|(tp, tei)| (tp.elements[tei as usize].min, tp.elements[tei as usize].max))),
        }
    }

    /// Index the slices by the string value of the first discriminator (when it is a value or
    /// pattern discriminator); `None` when that does not apply.
    fn build_slice_index(&self, prof: &Arc<CompiledProfile>, slices: &[u32], discs: &[crate::profile::Discriminator]) -> Option<SliceIndex> {
        let d0 = discs.first()?;
        if !matches!(d0.kind, DiscriminatorType::Value | DiscriminatorType::Pattern) || slices.len() < 4 {
            return None;
        }
        let mut idx = SliceIndex::default();
        for (pos, &s) in slices.iter().enumerate() {
            let se = &prof.elements[s as usize];
            let cache = se.disc_cache.get_or_init(|| discs.iter().map(|d| self.compute_disc(prof, s, d)).collect());
            match cache.first() {
                Some(DiscCache::Value(Some((Value::String(x), _)))) => idx.by_value.entry(x.clone()).or_default().push(pos as u32),
                _ => idx.wildcard.push(pos as u32),
            }
        }
        Some(idx)
    }

    /// The discriminators of a sliced element (defaults for extensions and choices).
    fn effective_discs(ce: &CElement) -> Option<&[crate::profile::Discriminator]> {
        static URL: std::sync::LazyLock<[crate::profile::Discriminator; 1]> =
            std::sync::LazyLock::new(|| [crate::profile::Discriminator { kind: DiscriminatorType::Value, path: "url".into() }]);
        static TYPE: std::sync::LazyLock<[crate::profile::Discriminator; 1]> =
            std::sync::LazyLock::new(|| [crate::profile::Discriminator { kind: DiscriminatorType::Type, path: "$this".into() }]);
        match &ce.slicing {
            Some(s) if !s.discriminators.is_empty() => Some(&s.discriminators),
            _ => {
                if ce.name == "extension" || ce.name == "modifierExtension" {
                    Some(&*URL)
                } else if ce.choice {
                    Some(&*TYPE)
                } else {
                    None
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn slice_matches(&mut self, prof: &Arc<CompiledProfile>, ci: u32, si: u32, key: &str, path: &mut String, discs: &[crate::profile::Discriminator], actuals: &[Vec<&'a Value>]) -> bool {
        let ce = &prof.elements[ci as usize];
        let se = &prof.elements[si as usize];
        let cache = se.disc_cache.get_or_init(|| discs.iter().map(|d| self.compute_disc(prof, si, d)).collect());
        for (di, (d, dc)) in discs.iter().zip(cache.iter()).enumerate() {
            let ok = match dc {
                DiscCache::Value(None) | DiscCache::Types(None) | DiscCache::Profiles(None) | DiscCache::Exists(None) => continue,
                DiscCache::Value(Some((expected, fixed))) => {
                    let actual = &actuals[di];
                    if *fixed || d.kind == DiscriminatorType::Value {
                        actual.iter().any(|a| json_eq(a, expected) || (!fixed && pattern_match(a, expected)))
                    } else {
                        actual.iter().any(|a| pattern_match(a, expected))
                    }
                }
                DiscCache::Types(Some(codes)) => {
                    if d.path == "$this" && ce.choice {
                        let suffix = key.strip_prefix(ce.name.as_str()).unwrap_or("");
                        codes.iter().any(|c| type_matches_suffix(c, suffix))
                    } else {
                        let actual = &actuals[di];
                        actual.iter().any(|a| {
                            let rt = a.prop("resourceType").and_then(Value::as_str);
                            rt.is_some_and(|rt| codes.iter().any(|c| c == rt))
                        })
                    }
                }
                DiscCache::Profiles(Some(profiles)) => {
                    let resolve = d.path.ends_with("resolve()");
                    let actual = &actuals[di];
                    let mut any = false;
                    'outer: for &a in actual.iter() {
                        for pp in profiles {
                            let len0 = path.len();
                            if !resolve && d.path == "resource" {
                                path.push_str(".resource");
                            }
                            let ok = self.conforms(a, pp, path);
                            path.truncate(len0);
                            if ok {
                                any = true;
                                break 'outer;
                            }
                        }
                    }
                    any
                }
                DiscCache::Exists(Some((min, max))) => {
                    let exists = !actuals[di].is_empty();
                    if *min > 0 { exists } else if *max == Some(0) { !exists } else { true }
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Values at a discriminator path in an instance.
    fn instance_at(&self, v: &'a Value, dpath: &str, key: &str) -> Vec<&'a Value> {
        if dpath == "$this" {
            return vec![v];
        }
        if dpath.bytes().all(|b| b.is_ascii_alphanumeric()) {
            // a plain child name
            let mut out = Vec::new();
            if let Some(o) = v.as_object() {
                if let Some(x) = get_prop(o, dpath) {
                    push_flat(&mut out, x);
                } else {
                    for (k, x) in o {
                        if type_of_key(k, dpath).is_some() {
                            push_flat(&mut out, x);
                        }
                    }
                }
            }
            return out;
        }
        let mut cur: Vec<&'a Value> = vec![v];
        let segs = split_path(dpath);
        let mut i = 0;
        while i < segs.len() {
            let seg = segs[i].trim();
            let mut next = Vec::new();
            if seg == "$this" || seg.is_empty() {
                i += 1;
                continue;
            } else if seg == "resolve()" {
                for c in &cur {
                    if let Some(r) = c.prop("reference").and_then(Value::as_str) {
                        let res = if let Some(id) = r.strip_prefix('#') {
                            self.resources.last().and_then(|x| find_contained(x.1, id))
                        } else {
                            self.bundles.last().and_then(|b| b.resolve(r))
                        };
                        if let Some(res) = res {
                            next.push(res);
                        }
                    }
                }
            } else if let Some(url) = fn_arg(seg, "extension") {
                for c in &cur {
                    if let Some(a) = c.prop("extension").and_then(Value::as_array) {
                        next.extend(a.iter().filter(|e| e.prop("url").and_then(Value::as_str) == Some(url)));
                    }
                }
            } else if let Some(t) = fn_arg(seg, "ofType").or_else(|| fn_arg(seg, "as")) {
                // only meaningful right after a choice name; handled there
                let _ = t;
                next = cur.clone();
            } else {
                let of_type = segs.get(i + 1).and_then(|s| fn_arg(s.trim(), "ofType").or_else(|| fn_arg(s.trim(), "as")));
                for c in &cur {
                    let Some(o) = c.as_object() else { continue };
                    if let Some(x) = get_prop(o, seg) {
                        push_flat(&mut next, x);
                    } else {
                        for (k, x) in o {
                            if let Some(t) = type_of_key(k, seg) {
                                if of_type.is_none_or(|ot| type_matches_suffix(ot, &t)) {
                                    push_flat(&mut next, x);
                                }
                            }
                        }
                    }
                }
                if of_type.is_some() {
                    i += 1;
                }
            }
            let _ = key;
            cur = next;
            i += 1;
        }
        cur
    }

    /// The element a discriminator path designates inside a slice (following into type profiles).
    fn slice_element_at(&self, prof: &Arc<CompiledProfile>, si: u32, dpath: &str) -> Option<(Arc<CompiledProfile>, u32)> {
        let mut cur = (prof.clone(), si);
        for seg in split_path(dpath) {
            let seg = seg.trim();
            if seg == "$this" || seg.is_empty() || seg == "resolve()" || seg.starts_with("ofType(") || seg.starts_with("as(") {
                continue;
            }
            if let Some(url) = fn_arg(seg, "extension") {
                let ext = self.child_named(&cur, "extension")?;
                let e = &ext.0.elements[ext.1 as usize];
                let s = e.slices.iter().find(|&&s| ext.0.elements[s as usize].types.iter().any(|t| t.profiles.iter().any(|p| p == url)))?;
                cur = (ext.0.clone(), *s);
                continue;
            }
            cur = self.child_named(&cur, seg)?;
        }
        Some(cur)
    }

    fn child_named(&self, cur: &(Arc<CompiledProfile>, u32), name: &str) -> Option<(Arc<CompiledProfile>, u32)> {
        let (p, ei) = cur;
        let e = &p.elements[*ei as usize];
        let ci = if !e.children.is_empty() { Some(*ei) } else { e.content_ref };
        if let Some(ci) = ci {
            if let Some(&c) = p.elements[ci as usize].children.iter().find(|&&c| p.elements[c as usize].name == name) {
                return Some((p.clone(), c));
            }
        }
        // into the type's definition
        let t = e.types.first()?;
        let tp = match t.profiles.first() {
            Some(pr) => self.store.profile(pr)?,
            None => self.store.type_profile(&t.code)?,
        };
        let c = *tp.elements[0].children.iter().find(|&&c| tp.elements[c as usize].name == name)?;
        Some((tp, c))
    }

    /// (value, is_fixed) of the fixed/pattern at a discriminator path in a slice.
    fn slice_value_at(&self, prof: &Arc<CompiledProfile>, si: u32, dpath: &str) -> Option<(Value, bool)> {
        if let Some((p, ei)) = self.slice_element_at(prof, si, dpath) {
            let e = &p.elements[ei as usize];
            if let Some(f) = &e.fixed {
                return Some((f.clone(), true));
            }
            if let Some(pt) = &e.pattern {
                return Some((pt.clone(), false));
            }
        }
        // extension slices: the url is the extension definition's own url
        let se = &prof.elements[si as usize];
        if dpath == "url" {
            if let Some(p) = se.types.first().and_then(|t| t.profiles.first()) {
                return Some((Value::String(split_canonical(p).0.to_string()), true));
            }
        }
        None
    }
}

/// Slices of an element indexed by the (string) value their first discriminator requires; slices
/// that do not fix it are `wildcard`. Positions are indexes into `CElement::slices`.
#[derive(Debug, Default)]
pub(crate) struct SliceIndex {
    by_value: HashMap<String, Vec<u32>, FxBuild>,
    wildcard: Vec<u32>,
}

/// Per-slice discriminator targets, computed once.
#[derive(Debug)]
pub(crate) enum DiscCache {
    Value(Option<(Value, bool)>),
    Types(Option<Vec<String>>),
    Profiles(Option<Vec<Arc<CompiledProfile>>>),
    Exists(Option<(u32, Option<u32>)>),
}

/// Days since 1970-01-01 -> `YYYY-MM-DD` (proleptic Gregorian).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

use fhirpath::{json_get as get_prop, json_prop as get_prop_of};

/// Property lookup on JSON objects that scans small objects instead of hashing.
trait Prop {
    fn prop(&self, k: &str) -> Option<&Value>;
}

impl Prop for Value {
    #[inline]
    fn prop(&self, k: &str) -> Option<&Value> {
        get_prop_of(self, k)
    }
}

impl Prop for Map<String, Value> {
    #[inline]
    fn prop(&self, k: &str) -> Option<&Value> {
        get_prop(self, k)
    }
}

/// The path segment of an element: its name, with `.ofType(T)` for a choice.
struct Seg<'s> {
    name: &'s str,
    of_type: Option<&'s str>,
}

impl Seg<'_> {
    fn push_to(&self, path: &mut String) {
        path.push_str(self.name);
        if let Some(t) = self.of_type {
            path.push_str(".ofType(");
            path.push_str(t);
            path.push(')');
        }
    }
}

impl std::fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

/// The path of the items of an element relative to their parent: `.name[i]` (`.name` when the
/// element is not an array).
struct ItemPath<'s> {
    seg: Seg<'s>,
    many: bool,
}

impl ItemPath<'_> {
    fn push_to(&self, path: &mut String, i: usize) {
        path.push('.');
        self.seg.push_to(path);
        if self.many {
            push_index(path, i);
        }
    }
}

/// Append `[i]` to a path.
fn push_index(path: &mut String, i: usize) {
    let mut buf = [0u8; 20];
    let mut n = i;
    let mut p = buf.len();
    loop {
        p -= 1;
        buf[p] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.push('[');
    path.push_str(std::str::from_utf8(&buf[p..]).unwrap_or(""));
    path.push(']');
}

fn push_flat<'a>(out: &mut Vec<&'a Value>, v: &'a Value) {
    match v {
        Value::Array(a) => out.extend(a.iter()),
        other => out.push(other),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Helpers over the FHIRPath model.
trait ModelExt {
    fn child_element_type_name(&self, path: &str) -> Option<String>;
}

impl ModelExt for fhirpath::Model {
    /// The type of the element at `Type.a.b` (None for a bare type name).
    fn child_element_type_name(&self, path: &str) -> Option<String> {
        let mut segs = path.split('.');
        let mut ty = segs.next()?.to_string();
        let mut any = false;
        for s in segs {
            any = true;
            let el = self.child_element(&ty, s)?;
            let t = el.types.first()?;
            let name = self.type_name(*t);
            ty = if name == "BackboneElement" || name == "Element" { format!("{ty}.{s}") } else { name.to_string() };
        }
        any.then_some(ty)
    }
}

static PROFILE_CONSTRAINTS: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| std::env::var("FHIR_PROFILES_TIME_CONSTRAINTS").is_ok());
struct Timer<'k>(Option<std::time::Instant>, &'k str);
impl Drop for Timer<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            eprintln!("CONSTRAINT {} {}", self.1, t.elapsed().as_nanos());
        }
    }
}
