//! FHIR search: which parameters exist (from the SearchParameter resources of the loaded core
//! package), what index rows a resource produces for them (their FHIRPath `expression`s,
//! evaluated with the project's engine), and how a query string becomes SQL over those rows.

mod extract;


use std::{collections::HashMap, sync::Arc};

use serde_json::Value;

pub use extract::IndexRows;
pub mod query;
pub use extract::date_range;
pub use query::{SearchError, SearchQuery, SortKey};

/// A bound SQL argument (the subset of types both engines share).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlArg {
    Text(String),
    Int(i64),
    Float(f64),
}

/// The kind of a search parameter (`SearchParameter.type`), which decides its index table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    String,
    Date,
    Reference,
    Number,
    Quantity,
    Uri,
}

impl ParamKind {
    fn parse(text: &str) -> Option<ParamKind> {
        Some(match text {
            "token" => ParamKind::Token,
            "string" => ParamKind::String,
            "date" => ParamKind::Date,
            "reference" => ParamKind::Reference,
            "number" => ParamKind::Number,
            "quantity" => ParamKind::Quantity,
            "uri" => ParamKind::Uri,
            _ => return None, // composite and special are not indexed
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
            ParamKind::Number => "number",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
        }
    }
}

/// One search parameter as it applies to one resource type.
pub struct SearchParam {
    /// The expression text for this resource type (`expression` parsed).
    pub source: String,
    pub code: String,
    pub kind: ParamKind,
    pub url: String,
    pub description: String,
    /// The part of the SearchParameter's expression that applies to this resource type.
    pub expression: fhirpath::Expression,
    /// Resource types a reference parameter may point to.
    pub targets: Vec<String>,
    /// The parameters whose index rows this one's would repeat, when its expression is exactly
    /// the union of theirs (`combo-code` = `code` | `component-code`): it then stores no rows of
    /// its own and is searched through theirs. Empty: it has its own rows.
    pub rows_of: Vec<String>,
    /// The resource's own elements the expression starts from ([`roots`]), as bits of the
    /// type's [`RootBits`]: a resource that has none of them yields no rows, without
    /// evaluating. `None`: always evaluated.
    root_mask: Option<u64>,
}

impl SearchParam {
    /// Whether a resource with the `present` roots (see [`RootBits::present`]) has an element
    /// the expression starts from.
    fn may_apply(&self, present: u64) -> bool {
        self.root_mask.is_none_or(|mask| mask & present != 0)
    }

    /// The `param` values of the index rows that answer for this parameter.
    pub fn row_params(&self) -> Vec<&str> {
        if self.rows_of.is_empty() { vec![self.code.as_str()] } else { self.rows_of.iter().map(String::as_str).collect() }
    }
}

/// A bit for each element that some parameter of a resource type starts from, so that a
/// resource's elements are looked up once, not once per parameter (an Observation has ~35).
struct RootBits(HashMap<String, u64>);

impl RootBits {
    /// Give each parameter's roots a bit; past 64 roots a parameter is always evaluated.
    fn assign(res_type: &str, params: &mut [SearchParam]) -> RootBits {
        let mut bits: HashMap<String, u64> = HashMap::new();
        for param in params.iter_mut() {
            let Some(roots) = roots(&param.source, res_type) else { continue };
            let mut mask = 0;
            for root in roots {
                let next = bits.len();
                let bit = *bits.entry(root).or_insert(if next < 64 { 1 << next } else { 0 });
                if bit == 0 {
                    mask = 0;
                    break;
                }
                mask |= bit;
            }
            param.root_mask = (mask != 0).then_some(mask);
        }
        RootBits(bits)
    }

    /// The roots `resource` has: an element's JSON name is its name, or for a choice element
    /// its name and a type (`valueQuantity` is `value`), either with a `_` for its extensions.
    fn present(&self, resource: &Value) -> u64 {
        let Some(obj) = resource.as_object() else { return u64::MAX };
        let bit = |name: &str| self.0.get(name).copied().unwrap_or(0);
        let mut present = 0;
        for key in obj.keys() {
            let name = key.trim_start_matches('_');
            present |= bit(name);
            for (i, b) in name.bytes().enumerate().skip(1) {
                if b.is_ascii_uppercase() {
                    present |= bit(&name[..i]);
                }
            }
        }
        present
    }
}

/// A resource type's parameters and the bits of the elements they start from.
struct TypeParams {
    params: Vec<Arc<SearchParam>>,
    roots: RootBits,
}

impl TypeParams {
    /// The parameters with rows of their own, and whether each may apply to `resource` (false:
    /// the resource has none of the elements its expression starts from).
    fn with_rows<'p>(&'p self, resource: &Value) -> impl Iterator<Item = (&'p SearchParam, bool)> {
        let present = self.roots.present(resource);
        self.params.iter().filter(|p| p.rows_of.is_empty()).map(move |p| (&**p, p.may_apply(present)))
    }
}

/// Every indexed search parameter, by resource type, plus the type model the expressions need.
pub struct SearchIndex {
    /// Owns the fhirpath type model the expressions are evaluated with.
    packages: Arc<fhir_profiles::PackageStore>,
    by_type: HashMap<String, TypeParams>,
}

impl SearchIndex {
    /// Build from SearchParameter resources. Parameters of `Resource`/`DomainResource` apply to
    /// every resource type; those whose expression cannot be parsed are skipped with a warning.
    pub fn new(packages: Arc<fhir_profiles::PackageStore>) -> SearchIndex {
        let mut by_type: HashMap<String, Vec<SearchParam>> = HashMap::new();
        let mut inherited: Vec<(String, Value)> = Vec::new();
        for def in packages.search_parameters() {
            let (Some(code), Some(kind), Some(expression)) = (
                def["code"].as_str(),
                def["type"].as_str().and_then(ParamKind::parse),
                def["expression"].as_str(),
            ) else {
                continue;
            };
            // `_id` and `_lastUpdated` are answered from the resource table itself.
            if code == "_id" || code == "_lastUpdated" {
                continue;
            }
            for base in def["base"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if base == "Resource" || base == "DomainResource" {
                    inherited.push((base.to_string(), def.clone()));
                    continue;
                }
                if let Some(param) = compile(base, code, kind, expression, def) {
                    by_type.entry(base.to_string()).or_default().push(param);
                }
            }
        }
        let resource_types: Vec<String> = by_type.keys().cloned().collect();
        for (base, def) in inherited {
            for res_type in &resource_types {
                if base == "DomainResource" && matches!(res_type.as_str(), "Bundle" | "Binary" | "Parameters") {
                    continue;
                }
                let code = def["code"].as_str().unwrap_or_default();
                let kind = def["type"].as_str().and_then(ParamKind::parse).expect("filtered above");
                let expression = def["expression"].as_str().unwrap_or_default().replace(&format!("{base}."), &format!("{res_type}."));
                if let Some(param) = compile(res_type, code, kind, &expression, &def) {
                    by_type.get_mut(res_type).expect("known type").push(param);
                }
            }
        }
        let by_type = by_type
            .into_iter()
            .map(|(res_type, mut params)| {
                find_unions(&mut params);
                let roots = RootBits::assign(&res_type, &mut params);
                (res_type, TypeParams { params: params.into_iter().map(Arc::new).collect(), roots })
            })
            .collect();
        SearchIndex { packages, by_type }
    }

    pub fn model(&self) -> &fhirpath::Model {
        self.packages.fhirpath_model()
    }

    pub fn param(&self, res_type: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(res_type)?.params.iter().find(|p| p.code == code).map(|p| &**p)
    }

    /// Parameters of a resource type, for the CapabilityStatement.
    pub fn params(&self, res_type: &str) -> impl Iterator<Item = &SearchParam> {
        self.by_type.get(res_type).into_iter().flat_map(|t| &t.params).map(|p| &**p)
    }

    /// Resource types with at least one indexed parameter.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// The index rows `resource` produces.
    /// Most of a type's parameters read elements a given resource does not have (an Observation
    /// has about 35 parameters): those are passed over without evaluating their expression.
    pub fn index(&self, res_type: &str, resource: &Value) -> IndexRows {
        self.index_rows(res_type, resource, true)
    }

    fn index_rows(&self, res_type: &str, resource: &Value, pass_over_absent: bool) -> IndexRows {
        let mut rows = IndexRows::default();
        let ctx = fhirpath::Context::new(self.model()).with_resource(resource);
        let Some(type_params) = self.by_type.get(res_type) else { return rows };
        for (param, may_apply) in type_params.with_rows(resource) {
            if pass_over_absent && !may_apply {
                continue;
            }
            match fhirpath::evaluate(&param.expression, &ctx, resource, res_type) {
                Ok(items) => extract::add_rows(&mut rows, param, &items),
                Err(e) => tracing::debug!(param = %param.code, error = %e, "search expression failed"),
            }
        }
        rows
    }
}

/// Mark each parameter whose expression alternatives are exactly the union of those of other
/// parameters of the same kind (each of which has rows of its own): its rows would repeat theirs.
/// About a fifth of an Observation's index rows were such repeats (`combo-code`,
/// `combo-value-quantity`, `combo-data-absent-reason`). A parameter with the same alternatives
/// as an earlier one is answered by that one's rows: `phonetic` and `name` are both
/// `Patient.name`, and each Patient's name parts were indexed twice (a sixth of its rows, each on
/// a page of its own).
fn find_unions(params: &mut [SearchParam]) {
    let parts: Vec<std::collections::BTreeSet<String>> = params
        .iter()
        .map(|p| split_top_level_union(&p.source).into_iter().map(|a| a.split_whitespace().collect::<Vec<_>>().join(" ")).collect())
        .collect();
    // Fewest alternatives first, so that whether a candidate has rows of its own is settled
    // before it is used: a union never stands in for another.
    let mut order: Vec<usize> = (0..params.len()).collect();
    order.sort_by_key(|&n| parts[n].len());
    for &n in &order {
        let same = (0..n).find(|&m| parts[m] == parts[n] && params[m].kind == params[n].kind && params[m].rows_of.is_empty());
        if let Some(m) = same {
            params[n].rows_of = vec![params[m].code.clone()];
            continue;
        }
        if parts[n].len() < 2 {
            continue;
        }
        let mut covered = std::collections::BTreeSet::new();
        let mut codes = Vec::new();
        for (m, other) in params.iter().enumerate() {
            let stands_in = m != n
                && other.kind == params[n].kind
                && other.rows_of.is_empty()
                && parts[m].len() < parts[n].len()
                && parts[m].is_subset(&parts[n]);
            if stands_in {
                covered.extend(parts[m].iter().cloned());
                codes.push(other.code.clone());
            }
        }
        if covered == parts[n] {
            params[n].rows_of = codes;
        }
    }
}

fn compile(res_type: &str, code: &str, kind: ParamKind, expression: &str, def: &Value) -> Option<SearchParam> {
    let own = expression_for_type(expression, res_type)?;
    match fhirpath::Expression::parse(&own) {
        Ok(expression) => Some(SearchParam {
            root_mask: None,
            source: own,
            rows_of: Vec::new(),
            code: code.to_string(),
            kind,
            url: def["url"].as_str().unwrap_or_default().to_string(),
            description: def["description"].as_str().unwrap_or_default().to_string(),
            expression,
            targets: def["target"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
        }),
        Err(e) => {
            tracing::warn!(param = code, %res_type, error = %e, "search parameter expression skipped");
            None
        }
    }
}

/// The first element each alternative of `expression` reads from a `res_type` resource
/// (`Observation.code | Observation.component.code`: `code`, `component`), or `None` when some
/// alternative does not start with a plain element of the resource (`Observation.where(...)`,
/// `%resource...`): that expression is always evaluated.
fn roots(expression: &str, res_type: &str) -> Option<Vec<String>> {
    let mut roots = Vec::new();
    for part in split_top_level_union(expression) {
        let bare = part.trim().trim_start_matches('(').trim_start();
        let rest = bare.strip_prefix(res_type)?.strip_prefix('.')?;
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let call = rest[name.len()..].trim_start().starts_with('(');
        // `extension('url')` reads the `extension` element; any other call is a function.
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_lowercase()) || (call && name != "extension") {
            return None;
        }
        roots.push(name);
    }
    Some(roots)
}

/// Keep the `|`-separated alternatives of a multi-resource expression that apply to `res_type`
/// (`Condition.code | Observation.code` on Condition gives `Condition.code`).
fn expression_for_type(expression: &str, res_type: &str) -> Option<String> {
    let parts: Vec<&str> = split_top_level_union(expression)
        .into_iter()
        .filter(|part| {
            let bare = part.trim().trim_start_matches('(').trim_start();
            let head: String = bare.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let starts_with_type = head.chars().next().is_some_and(|c| c.is_ascii_uppercase());
            !starts_with_type || head == res_type
        })
        .map(str::trim)
        .collect();
    if parts.is_empty() { None } else { Some(parts.join(" | ")) }
}

fn split_top_level_union(expression: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let bytes = expression.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' => quoted = !quoted,
            b'(' | b'[' if !quoted => depth += 1,
            b')' | b']' if !quoted => depth -= 1,
            b'|' if !quoted && depth == 0 => {
                parts.push(&expression[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&expression[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_alternatives_are_kept_per_type() {
        let e = "AllergyIntolerance.code | AllergyIntolerance.reaction.substance | Condition.code | (Medication.code) | Observation.code";
        assert_eq!(expression_for_type(e, "Condition").unwrap(), "Condition.code");
        assert_eq!(expression_for_type(e, "Medication").unwrap(), "(Medication.code)");
        assert!(expression_for_type(e, "Patient").is_none());
        assert_eq!(
            expression_for_type("Observation.subject.where(resolve() is Patient)", "Observation").unwrap(),
            "Observation.subject.where(resolve() is Patient)"
        );
        assert_eq!(split_top_level_union("a.where(x='|') | b").len(), 2);
    }

    #[test]
    fn roots_are_read_off_plain_paths_only() {
        assert_eq!(roots("Observation.code | Observation.component.code", "Observation").unwrap(), ["code", "component"]);
        assert_eq!(roots("(Observation.value as Quantity)", "Observation").unwrap(), ["value"]);
        assert_eq!(roots("Observation.subject.where(resolve() is Patient)", "Observation").unwrap(), ["subject"]);
        assert_eq!(roots("Patient.extension('http://x').value", "Patient").unwrap(), ["extension"]);
        assert!(roots("Observation.where(status = 'final').code", "Observation").is_none());
        assert!(roots("%resource.code", "Observation").is_none());
        assert!(roots("Observation.code | iif(true, Observation.status, {})", "Observation").is_none());
    }

    /// Passing over parameters whose elements a resource lacks must not lose a row: every
    /// resource of every fixture and official example gives the same rows either way.
    #[test]
    fn passing_over_absent_elements_changes_no_rows() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let index = SearchIndex::new(fhir_profiles::PackageStore::load(&[root.join("../shared/fhir-packages")]).expect("core package"));
        let mut files = Vec::new();
        let mut dirs = vec![root.join("fixtures"), root.join("../shared/examples")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable directory").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    files.push(path);
                }
            }
        }
        let (mut resources, mut with_rows, mut skipped, mut params) = (0, 0, 0, 0);
        for file in &files {
            let Ok(json) = serde_json::from_slice::<Value>(&std::fs::read(file).unwrap()) else { continue };
            let entries: Vec<&Value> = json["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).collect();
            for resource in std::iter::once(&json).chain(entries) {
                let Some(res_type) = resource["resourceType"].as_str() else { continue };
                resources += 1;
                let all = index.index_rows(res_type, resource, false);
                assert_eq!(index.index(res_type, resource), all, "{res_type} in {}", file.display());
                with_rows += usize::from(all != IndexRows::default());
                for (_, may_apply) in index.by_type.get(res_type).into_iter().flat_map(|t| t.with_rows(resource)) {
                    params += 1;
                    skipped += usize::from(!may_apply);
                }
            }
        }
        // The corpus is large enough to mean something, and a good part of the evaluations (a third
        // today) is passed over.
        assert!(
            resources > 1000 && with_rows > 1000 && skipped * 4 > params,
            "{resources} resources, {with_rows} with rows, {skipped} of {params} evaluations passed over"
        );
    }

    #[test]
    fn union_parameters_are_answered_by_the_rows_of_their_parts() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fhir-packages");
        let index = SearchIndex::new(fhir_profiles::PackageStore::load(&[shared]).expect("core package"));
        let rows_of = |code: &str| {
            let mut codes = index.param("Observation", code).expect("known parameter").rows_of.clone();
            codes.sort();
            codes
        };
        assert_eq!(rows_of("combo-code"), ["code", "component-code"]);
        assert_eq!(rows_of("combo-value-quantity"), ["component-value-quantity", "value-quantity"]);
        assert!(rows_of("code").is_empty() && rows_of("value-quantity").is_empty());
        // `patient` is `subject` restricted to Patients: not a union, it keeps its own rows.
        assert!(rows_of("patient").is_empty());
        // The same expression twice: the second is answered by the first one's rows.
        let patient_rows_of = |code: &str| index.param("Patient", code).expect("known parameter").rows_of.clone();
        assert_eq!(patient_rows_of("phonetic"), ["name"]);
        assert!(patient_rows_of("name").is_empty() && patient_rows_of("family").is_empty());
        let observation = serde_json::json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                           "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]
        });
        let rows = index.index("Observation", &observation);
        let params: std::collections::BTreeSet<&str> = rows.tokens.iter().map(|t| t.param.as_str()).collect();
        assert!(params.contains("code") && params.contains("component-code"), "{params:?}");
        assert!(!params.contains("combo-code"), "{params:?}");
        assert!(!rows.numbers.iter().any(|n| n.param == "combo-value-quantity"));
    }
}
