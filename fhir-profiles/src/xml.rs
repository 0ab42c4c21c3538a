//! FHIR XML -> FHIR JSON, driven by the compiled type definitions (which elements repeat, which
//! primitive types are JSON booleans / numbers). Used for `--load` of XML conformance resources.

use std::sync::Arc;

use serde_json::{Map, Number, Value};

use crate::profile::{CompiledProfile, is_primitive_code};
use crate::store::PackageStore;

const FHIR_NS: &str = "http://hl7.org/fhir";

/// Parse a FHIR XML resource into its JSON form.
pub fn parse_xml(store: &PackageStore, text: &str) -> Result<Value, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("XML parse error: {e}"))?;
    let root = doc.root_element();
    convert_resource(store, root, text)
}

fn convert_resource(store: &PackageStore, node: roxmltree::Node, text: &str) -> Result<Value, String> {
    let rt = node.tag_name().name();
    if node.tag_name().namespace() != Some(FHIR_NS) {
        return Err(format!("element {rt} is not in the FHIR namespace"));
    }
    let prof = store.type_profile(rt).ok_or_else(|| format!("unknown resource type {rt}"))?;
    let mut m = Map::new();
    m.insert("resourceType".into(), Value::String(rt.into()));
    convert_children(store, node, &prof, 0, text, &mut m)?;
    Ok(Value::Object(m))
}

/// The profile and element whose children describe the content of element `ei`.
fn content_of(store: &PackageStore, prof: &Arc<CompiledProfile>, ei: u32, type_code: &str) -> Option<(Arc<CompiledProfile>, u32)> {
    let e = &prof.elements[ei as usize];
    if !e.children.is_empty() {
        return Some((prof.clone(), ei));
    }
    if let Some(r) = e.content_ref {
        return Some((prof.clone(), r));
    }
    let tp = store.type_profile(type_code)?;
    Some((tp, 0))
}

fn convert_children(store: &PackageStore, node: roxmltree::Node, prof: &Arc<CompiledProfile>, ei: u32, text: &str, out: &mut Map<String, Value>) -> Result<(), String> {
    for a in node.attributes() {
        if matches!(a.name(), "id" | "url") && a.namespace().is_none() {
            out.insert(a.name().into(), Value::String(a.value().into()));
        }
    }
    for c in node.children().filter(|c| c.is_element()) {
        let name = c.tag_name().name();
        let el = &prof.elements[ei as usize];
        let mut hit = None;
        for &ci in &el.children {
            let ce = &prof.elements[ci as usize];
            if ce.choice {
                if name.len() > ce.name.len() && name.starts_with(ce.name.as_str()) && name.as_bytes()[ce.name.len()].is_ascii_uppercase() {
                    hit = Some(ci);
                }
            } else if ce.name == name {
                hit = Some(ci);
            }
            if hit.is_some() {
                break;
            }
        }
        let Some(ci) = hit else {
            return Err(format!("unknown element '{name}' in {}", el.path));
        };
        let ce = &prof.elements[ci as usize];
        let code = if ce.choice {
            let suffix = &name[ce.name.len()..];
            ce.types.iter().find(|t| t.code.eq_ignore_ascii_case(suffix)).map(|t| t.code.clone()).unwrap_or_else(|| suffix.to_string())
        } else {
            ce.types.first().map(|t| t.code.clone()).unwrap_or_else(|| "BackboneElement".into())
        };
        let (value, ext): (Option<Value>, Option<Value>) = if name == "div" && code == "xhtml" {
            (Some(Value::String(text[c.range()].to_string())), None)
        } else if is_primitive_code(&code) {
            let v = c.attribute("value").map(|s| primitive_json(&code, s));
            let mut em = Map::new();
            if let Some(id) = c.attribute("id") {
                em.insert("id".into(), Value::String(id.into()));
            }
            let exts: Vec<Value> = c
                .children()
                .filter(|x| x.is_element() && x.tag_name().name() == "extension")
                .map(|x| {
                    let ext = store.type_profile("Extension").ok_or("no Extension type")?;
                    let mut m = Map::new();
                    convert_children(store, x, &ext, 0, text, &mut m)?;
                    Ok::<Value, String>(Value::Object(m))
                })
                .collect::<Result<_, _>>()?;
            if !exts.is_empty() {
                em.insert("extension".into(), Value::Array(exts));
            }
            (v, (!em.is_empty()).then_some(Value::Object(em)))
        } else if ce.types.first().is_some_and(|t| t.code == "Resource" || store.type_profile(&t.code).is_some_and(|p| p.kind == "resource")) {
            let inner = c.children().find(|x| x.is_element()).ok_or("empty resource element")?;
            (Some(convert_resource(store, inner, text)?), None)
        } else {
            let (p2, e2) = content_of(store, prof, ci, &code).ok_or_else(|| format!("unknown type {code}"))?;
            let mut m = Map::new();
            convert_children(store, c, &p2, e2, text, &mut m)?;
            (Some(Value::Object(m)), None)
        };
        let under = format!("_{name}");
        if ce.many {
            let arr = out.entry(name.to_string()).or_insert_with(|| Value::Array(vec![]));
            let idx = arr.as_array().map(|a| a.len()).unwrap_or(0);
            if let Some(a) = arr.as_array_mut() {
                a.push(value.unwrap_or(Value::Null));
            }
            if let Some(e) = ext {
                let ua = out.entry(under).or_insert_with(|| Value::Array(vec![]));
                if let Some(a) = ua.as_array_mut() {
                    while a.len() < idx {
                        a.push(Value::Null);
                    }
                    a.push(e);
                }
            }
        } else {
            if let Some(v) = value {
                out.insert(name.to_string(), v);
            }
            if let Some(e) = ext {
                out.insert(under, e);
            }
        }
    }
    // pad _x arrays to the length of x
    let keys: Vec<String> = out.keys().filter(|k| k.starts_with('_')).cloned().collect();
    for k in keys {
        let n = out.get(&k[1..]).and_then(Value::as_array).map(|a| a.len()).unwrap_or(0);
        if let Some(Value::Array(a)) = out.get_mut(&k) {
            while a.len() < n {
                a.push(Value::Null);
            }
        }
    }
    // drop the nulls of values that only have extensions when no _x exists
    Ok(())
}

fn primitive_json(code: &str, s: &str) -> Value {
    match code {
        "boolean" => match s {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s.into()),
        },
        "integer" | "unsignedInt" | "positiveInt" | "decimal" | "integer64" => {
            s.parse::<Number>().map(Value::Number).unwrap_or_else(|_| Value::String(s.into()))
        }
        _ => Value::String(s.into()),
    }
}

impl PackageStore {
    /// Load a resource file (`.json` or `.xml`) with [`add_resource`](Self::add_resource).
    pub fn add_file_any(&self, path: &std::path::Path) -> Result<(), crate::store::LoadError> {
        if path.extension().is_some_and(|e| e == "xml") {
            let text = std::fs::read_to_string(path).map_err(|source| crate::store::LoadError::Io { path: path.to_path_buf(), source })?;
            let v = parse_xml(self, &text).map_err(|e| crate::store::LoadError::Resource(format!("{}: {e}", path.display())))?;
            self.add_resource(v)
        } else {
            self.add_file(path)
        }
    }
}
