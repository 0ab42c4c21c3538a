//! The FHIR type model built from StructureDefinitions.

use serde_json::Value;
use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast (FNV-1a style, 64-bit words) hasher for the model's short string keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(23);
        }
        for &b in chunks.remainder() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h ^ (h >> 29);
    }
}

pub(crate) type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Index of a type in a [`Model`]. Named types (`Patient`, `HumanName`, `string`) and anonymous
/// backbone element types (keyed by their path, e.g. `Patient.contact`) each have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeId(pub(crate) u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Primitive,
    Complex,
    Resource,
    /// Anonymous BackboneElement / Element type defined inline (keyed by path).
    Backbone,
}

#[derive(Debug)]
pub(crate) struct TypeDef {
    /// Key: type name or element path for backbone types.
    pub name: Box<str>,
    /// The FHIR type name reported for items of this type (`BackboneElement` for backbone types).
    pub code: Box<str>,
    pub kind: Kind,
    pub is_abstract: bool,
    pub base: Option<TypeId>,
    pub base_url: Option<Box<str>>,
    pub elements: HashMap<Box<str>, ElementInfo>,
    /// How values of this type convert to System values (derived from `code` by `add_type`).
    pub conv: Conv,
}

/// The conversion of a node's JSON value to a System value, by FHIR type (see `value::node_prim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conv {
    Decimal,
    Date,
    DateTime,
    Time,
    Integer64,
    /// Quantity and its specialisations (Age, Duration, SimpleQuantity...).
    Quantity,
    Other,
}

impl Conv {
    pub(crate) fn of(code: &str) -> Conv {
        match code {
            "decimal" => Conv::Decimal,
            "date" => Conv::Date,
            "dateTime" | "instant" => Conv::DateTime,
            "time" => Conv::Time,
            "integer64" => Conv::Integer64,
            "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity" | "MoneyQuantity" => Conv::Quantity,
            _ => Conv::Other,
        }
    }
}

/// Description of a child element of a type.
#[derive(Debug, Clone)]
pub struct ElementInfo {
    /// The element name as it appears in FHIRPath (`value` for `value[x]`, `valueQuantity` for a
    /// choice variant).
    pub name: Box<str>,
    /// The possible types (several only for choice elements `x[x]`).
    pub types: Vec<TypeId>,
    /// max != "1" (the element is an array in JSON).
    pub many: bool,
    /// This is a choice element (`value[x]`): the JSON key carries a type suffix.
    pub choice: bool,
    /// For a choice variant entry like `valueQuantity`: the choice element's name (`value`).
    pub variant_of: Option<Box<str>>,
}

/// The FHIR type model (base types, resources and inline backbone elements).
#[derive(Debug, Default)]
pub struct Model {
    pub(crate) types: Vec<TypeDef>,
    pub(crate) by_name: HashMap<Box<str>, TypeId>,
    pub(crate) resource_id: Option<TypeId>,
    pub(crate) element_id: Option<TypeId>,
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn system_type_to_fhir(code: &str) -> &str {
    match code.strip_prefix("http://hl7.org/fhirpath/System.") {
        Some("String") => "string",
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        Some(other) => other,
        None => code,
    }
}

impl Model {
    /// An empty model (navigation then works untyped, by JSON property names only).
    pub fn empty() -> Model {
        Model::default()
    }

    /// Build from the StructureDefinitions of hl7.fhir.r4.core (and optionally other packages).
    ///
    /// Uses SDs of kind primitive-type / complex-type / resource with derivation `specialization`
    /// (plus base types without derivation); complex-type constraints such as `SimpleQuantity`
    /// are registered as subtypes of their base type. Logical models are ignored. Only
    /// `snapshot.element[].{path,type[].code,max,contentReference}` is read.
    pub fn from_structure_definitions<'a>(sds: impl IntoIterator<Item = &'a Value>) -> Model {
        let mut m = Model::default();
        let mut constraints: Vec<&'a Value> = Vec::new();
        let mut pending: Vec<&'a Value> = Vec::new();
        for sd in sds {
            let kind = sd.get("kind").and_then(Value::as_str).unwrap_or("");
            if !matches!(kind, "primitive-type" | "complex-type" | "resource") {
                continue;
            }
            match sd.get("derivation").and_then(Value::as_str) {
                Some("constraint") => {
                    if kind == "complex-type" {
                        constraints.push(sd)
                    }
                }
                _ => pending.push(sd),
            }
        }
        // First register all named types so element type codes can be resolved.
        for sd in &pending {
            let name = sd.get("type").and_then(Value::as_str).or_else(|| sd.get("name").and_then(Value::as_str));
            let Some(name) = name else { continue };
            if m.by_name.contains_key(name) {
                continue;
            }
            let kind = match sd.get("kind").and_then(Value::as_str) {
                Some("primitive-type") => Kind::Primitive,
                Some("resource") => Kind::Resource,
                _ => Kind::Complex,
            };
            let base_url = sd.get("baseDefinition").and_then(Value::as_str).map(Into::into);
            m.add_type(TypeDef {
                name: name.into(),
                code: name.into(),
                kind,
                is_abstract: sd.get("abstract").and_then(Value::as_bool).unwrap_or(false),
                base: None,
                base_url,
                elements: HashMap::default(),
                conv: Conv::Other,
            });
        }
        for sd in &constraints {
            let Some(name) = sd.get("name").and_then(Value::as_str) else { continue };
            if m.by_name.contains_key(name) || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let Some(base_ty) = sd.get("type").and_then(Value::as_str) else { continue };
            let Some(&base) = m.by_name.get(base_ty) else { continue };
            let kind = m.types[base.0 as usize].kind;
            let id = m.add_type(TypeDef {
                name: name.into(),
                code: name.into(),
                kind,
                is_abstract: false,
                base: Some(base),
                base_url: None,
                elements: HashMap::default(),
                conv: Conv::Other,
            });
            let _ = id;
        }
        // Resolve bases by URL (last path segment).
        for i in 0..m.types.len() {
            if m.types[i].base.is_some() {
                continue;
            }
            if let Some(url) = m.types[i].base_url.as_deref() {
                let last = url.rsplit('/').next().unwrap_or(url);
                if let Some(&b) = m.by_name.get(last)
                    && b.0 as usize != i {
                        m.types[i].base = Some(b);
                    }
            }
        }
        m.resource_id = m.by_name.get("Resource").copied();
        m.element_id = m.by_name.get("Element").copied();
        for sd in &pending {
            m.load_elements(sd);
        }
        m
    }

    fn add_type(&mut self, mut t: TypeDef) -> TypeId {
        t.conv = Conv::of(&t.code);
        let id = TypeId(self.types.len() as u32);
        self.by_name.insert(t.name.clone(), id);
        self.types.push(t);
        id
    }

    fn load_elements(&mut self, sd: &Value) {
        let Some(name) = sd.get("type").and_then(Value::as_str) else { return };
        let Some(&root) = self.by_name.get(name) else { return };
        if !self.types[root.0 as usize].elements.is_empty() {
            return;
        }
        let is_primitive = self.types[root.0 as usize].kind == Kind::Primitive;
        let is_resource = self.types[root.0 as usize].kind == Kind::Resource;
        let Some(elements) = sd.pointer("/snapshot/element").and_then(Value::as_array) else { return };
        let backbone_base = self.by_name.get("BackboneElement").copied();
        for e in elements {
            let Some(path) = e.get("path").and_then(Value::as_str) else { continue };
            let Some(dot) = path.rfind('.') else { continue };
            let (parent_path, ename) = (&path[..dot], &path[dot + 1..]);
            let Some(&parent) = self.by_name.get(parent_path) else { continue };
            if is_primitive && ename == "value" {
                continue;
            }
            let many = e.get("max").and_then(Value::as_str).map(|m| m != "1" && m != "0").unwrap_or(false);
            let mut types: Vec<TypeId> = Vec::new();
            if let Some(cr) = e.get("contentReference").and_then(Value::as_str) {
                let target = cr.rsplit('#').next().unwrap_or(cr);
                if let Some(&t) = self.by_name.get(target) {
                    types.push(t);
                }
            } else if let Some(ts) = e.get("type").and_then(Value::as_array) {
                for t in ts {
                    let Some(code) = t.get("code").and_then(Value::as_str) else { continue };
                    let mut code = system_type_to_fhir(code);
                    if code.starts_with("http") {
                        continue;
                    }
                    if is_resource && ename == "id" && parent == root {
                        code = "id";
                    }
                    if code == "BackboneElement" || (code == "Element" && path.matches('.').count() >= 1 && name != "Element") {
                        let base = if code == "BackboneElement" { backbone_base } else { self.element_id };
                        let id = self.add_type(TypeDef {
                            name: path.into(),
                            code: code.into(),
                            kind: Kind::Backbone,
                            is_abstract: false,
                            base,
                            base_url: None,
                            elements: HashMap::default(),
                            conv: Conv::Other,
                        });
                        types.push(id);
                        break;
                    }
                    if let Some(&t) = self.by_name.get(code)
                        && !types.contains(&t) {
                            types.push(t);
                        }
                }
            }
            if types.is_empty() {
                continue;
            }
            let ptype = &mut self.types[parent.0 as usize];
            if let Some(base_name) = ename.strip_suffix("[x]") {
                let variants: Vec<(String, TypeId)> = types
                    .iter()
                    .map(|&t| (format!("{}{}", base_name, upper_first(&self.types[t.0 as usize].name)), t))
                    .collect();
                let ptype = &mut self.types[parent.0 as usize];
                for (vname, t) in variants {
                    ptype.elements.insert(
                        vname.clone().into(),
                        ElementInfo { name: vname.into(), types: vec![t], many, choice: false, variant_of: Some(base_name.into()) },
                    );
                }
                ptype.elements.insert(
                    base_name.into(),
                    ElementInfo { name: base_name.into(), types, many, choice: true, variant_of: None },
                );
            } else {
                ptype.elements.insert(ename.into(), ElementInfo { name: ename.into(), types, many, choice: false, variant_of: None });
            }
        }
    }

    /// Look up a type by name (`"Patient"`, `"string"`) or backbone element path (`"Patient.contact"`).
    pub fn type_id(&self, name: &str) -> Option<TypeId> {
        let name = name.strip_prefix("FHIR.").unwrap_or(name);
        if let Some(t) = self.by_name.get(name) {
            return Some(*t);
        }
        // An element path that is not itself a backbone key (e.g. `Questionnaire.item.item`,
        // `Patient.name`): walk the elements.
        let mut segs = name.split('.');
        let mut cur = *self.by_name.get(segs.next()?)?;
        let mut any = false;
        for seg in segs {
            any = true;
            let el = self.def(cur).elements.get(seg)?;
            cur = *el.types.first()?;
        }
        any.then_some(cur)
    }

    /// The reported FHIR type name of a type (`BackboneElement` for backbone element paths).
    pub fn type_name(&self, id: TypeId) -> &str {
        &self.types[id.0 as usize].code
    }

    /// The model key of a type (type name, or the element path for backbone element types).
    pub fn type_key(&self, id: TypeId) -> &str {
        &self.types[id.0 as usize].name
    }

    pub(crate) fn def(&self, id: TypeId) -> &TypeDef {
        &self.types[id.0 as usize]
    }

    /// Is `name` a resource type (including abstract `Resource` / `DomainResource`)?
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.type_id(name).is_some_and(|t| self.def(t).kind == Kind::Resource)
    }

    /// Is `name` a known FHIR type (primitive, complex or resource)?
    pub fn is_type(&self, name: &str) -> bool {
        self.type_id(name).is_some_and(|t| self.def(t).kind != Kind::Backbone)
    }

    /// Is `name` a FHIR primitive type (`string`, `dateTime`, ...)?
    pub fn is_primitive(&self, name: &str) -> bool {
        self.type_id(name).is_some_and(|t| self.def(t).kind == Kind::Primitive)
    }

    /// The base type name (`Patient` -> `DomainResource`), if any.
    pub fn base_type(&self, name: &str) -> Option<&str> {
        let t = self.type_id(name)?;
        self.def(t).base.map(|b| self.type_key(b))
    }

    /// true if `ty` equals `ancestor` or derives from it (`Patient` -> `DomainResource` -> `Resource`;
    /// `Age` -> `Quantity`).
    pub fn is_subtype(&self, ty: &str, ancestor: &str) -> bool {
        match (self.type_id(ty), self.type_id(ancestor)) {
            (Some(t), Some(a)) => self.is_subtype_id(t, a),
            _ => ty == ancestor,
        }
    }

    pub(crate) fn is_subtype_id(&self, t: TypeId, ancestor: TypeId) -> bool {
        let mut cur = Some(t);
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            cur = self.def(c).base;
        }
        false
    }

    /// The child element `name` of type `ty` (a type name or backbone path). For choice elements
    /// both `value` and `valueQuantity` are found.
    pub fn child_element(&self, ty: &str, name: &str) -> Option<&ElementInfo> {
        self.child_element_id(self.type_id(ty)?, name)
    }

    /// [`Model::child_element`] by type id.
    pub fn child_element_id(&self, ty: TypeId, name: &str) -> Option<&ElementInfo> {
        self.def(ty).elements.get(name)
    }

    /// All child elements of a type (choice elements appear once as `x` and once per variant).
    pub fn child_elements(&self, ty: &str) -> impl Iterator<Item = &ElementInfo> {
        self.type_id(ty).into_iter().flat_map(move |t| self.def(t).elements.values())
    }

    /// Number of types (named + backbone) in the model.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// true if no StructureDefinitions were loaded.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}
