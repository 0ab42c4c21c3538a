//! Snapshot generation from differentials.
//!
//! The generated snapshot contains the base snapshot plus every element the differential touches;
//! datatypes are unrolled only where the differential constrains their children (the validator
//! falls back to the datatype's own definition for elements without children, so a partially
//! unrolled snapshot validates the same as a fully unrolled one).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::store::PackageStore;

/// Return the StructureDefinition with a snapshot: as published when it has one, generated (and
/// cached) otherwise.
pub fn snapshot_of(store: &PackageStore, canonical: &str) -> Result<Arc<Value>, String> {
    if let Some(r) = store.snapshots.read().unwrap().get(canonical) {
        return r.clone();
    }
    let sd = store.resolve(canonical).ok_or_else(|| format!("StructureDefinition {canonical} not found"))?;
    let r = if sd.get("snapshot").and_then(|s| s.get("element")).and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        Ok(sd)
    } else {
        generate(store, &sd, 0).map(Arc::new)
    };
    store.snapshots.write().unwrap().insert(canonical.to_string(), r.clone());
    r
}

/// Generate the snapshot of `sd` from its base's snapshot and its differential.
pub fn generate_snapshot(store: &PackageStore, sd: &Value) -> Result<Value, String> {
    generate(store, sd, 0)
}

fn generate(store: &PackageStore, sd: &Value, depth: usize) -> Result<Value, String> {
    if depth > 20 {
        return Err("snapshot generation: baseDefinition chain too deep".into());
    }
    let url = sd.get("url").and_then(Value::as_str).unwrap_or("?");
    let base_url = sd.get("baseDefinition").and_then(Value::as_str).ok_or_else(|| format!("{url}: no snapshot and no baseDefinition"))?;
    let base = snapshot_of(store, base_url).map_err(|e| format!("{url}: cannot get base {base_url}: {e}"))?;
    let base_elems = base["snapshot"]["element"].as_array().ok_or("base has no snapshot")?;
    let mut g = Gen { store, elems: Vec::with_capacity(base_elems.len() + 16) };
    for e in base_elems {
        g.elems.push(e.as_object().cloned().unwrap_or_default());
    }
    ensure_ids(&mut g.elems);
    let diff = sd.get("differential").and_then(|d| d.get("element")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut last_id_for_path: HashMap<String, String> = HashMap::new();
    for d in &diff {
        let Some(d) = d.as_object() else { continue };
        let path = d.get("path").and_then(Value::as_str).ok_or("differential element without path")?;
        let slice = d.get("sliceName").and_then(Value::as_str);
        let id = match d.get("id").and_then(Value::as_str) {
            // trust the id only when it names the same element as the path
            Some(id) if id_names_path(id, path) => id.to_string(),
            _ => synth_id(path, slice, &last_id_for_path),
        };
        last_id_for_path.insert(path.to_string(), id.clone());
        let idx = g.find_or_create(&id, path, d.get("sliceName").and_then(Value::as_str))?;
        merge(&mut g.elems[idx], d);
    }
    let mut out = sd.as_object().cloned().unwrap_or_default();
    out.insert("snapshot".into(), serde_json::json!({ "element": g.elems.into_iter().map(Value::Object).collect::<Vec<_>>() }));
    Ok(Value::Object(out))
}

fn id_names_path(id: &str, path: &str) -> bool {
    let last_id = id.rsplit('.').next().unwrap_or(id);
    let name = last_id.split(':').next().unwrap_or(last_id);
    let last_path = path.rsplit('.').next().unwrap_or(path);
    name == last_path || id.split('.').count() == path.split('.').count() && name.ends_with("[x]")
}

fn synth_id(path: &str, slice: Option<&str>, last: &HashMap<String, String>) -> String {
    let mut id = match path.rsplit_once('.') {
        Some((parent, name)) => format!("{}.{}", last.get(parent).map(String::as_str).unwrap_or(parent), name),
        None => path.to_string(),
    };
    if let Some(s) = slice {
        id.push(':');
        id.push_str(s);
    }
    id
}

/// Fill in missing element ids from path and slice names.
pub(crate) fn ensure_ids(elems: &mut [Map<String, Value>]) {
    let mut last: HashMap<String, String> = HashMap::new();
    for e in elems.iter_mut() {
        let path = e.get("path").and_then(Value::as_str).unwrap_or("").to_string();
        let id = match e.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                let id = synth_id(&path, e.get("sliceName").and_then(Value::as_str), &last);
                e.insert("id".into(), Value::String(id.clone()));
                id
            }
        };
        last.insert(path, id);
    }
}

struct Gen<'a> {
    store: &'a PackageStore,
    elems: Vec<Map<String, Value>>,
}

fn id_of(e: &Map<String, Value>) -> &str {
    e.get("id").and_then(Value::as_str).unwrap_or("")
}

/// Split an element id into (parent id, last segment).
fn split_id(id: &str) -> (Option<&str>, &str) {
    // the last '.' that is not inside a slice name containing '.' is hard to know; assume none
    match id.rfind('.') {
        Some(p) => (Some(&id[..p]), &id[p + 1..]),
        None => (None, id),
    }
}

impl Gen<'_> {
    fn pos(&self, id: &str) -> Option<usize> {
        self.elems.iter().position(|e| id_of(e) == id)
    }

    /// End (exclusive) of the subtree of element `idx`, including its slices.
    fn subtree_end(&self, idx: usize) -> usize {
        let id = id_of(&self.elems[idx]).to_string();
        let dot = format!("{id}.");
        let colon = format!("{id}:");
        let mut j = idx + 1;
        while j < self.elems.len() {
            let o = id_of(&self.elems[j]);
            if o.starts_with(&dot) || o.starts_with(&colon) {
                j += 1;
            } else {
                break;
            }
        }
        j
    }

    fn find_or_create(&mut self, id: &str, path: &str, slice: Option<&str>) -> Result<usize, String> {
        if let Some(i) = self.pos(id) {
            return Ok(i);
        }
        let (parent, last) = split_id(id);
        if let Some((name, slice_name)) = last.split_once(':') {
            // a new slice (or reslice) of `parent.name`
            let base_id = match slice_name.rsplit_once('/') {
                Some((outer, _)) => format!("{}{}:{}", parent.map(|p| format!("{p}.")).unwrap_or_default(), name, outer),
                None => format!("{}{}", parent.map(|p| format!("{p}.")).unwrap_or_default(), name),
            };
            let base_path = path.to_string();
            let bi = self.find_or_create(&base_id, &base_path, None)?;
            let end = self.subtree_end(bi);
            let mut ne = self.elems[bi].clone();
            ne.insert("id".into(), Value::String(id.to_string()));
            ne.insert("sliceName".into(), Value::String(slice.unwrap_or(slice_name).to_string()));
            ne.remove("slicing");
            // a type slice of a choice (value[x]:valueQuantity) restricts the type
            if name.ends_with("[x]") {
                let prefix = &name[..name.len() - 3];
                if let Some(t) = slice_name.strip_prefix(prefix) {
                    if let Some(types) = ne.get("type").and_then(Value::as_array) {
                        let keep: Vec<Value> = types.iter().filter(|tv| tv.get("code").and_then(Value::as_str).is_some_and(|c| c.eq_ignore_ascii_case(t))).cloned().collect();
                        if !keep.is_empty() {
                            ne.insert("type".into(), Value::Array(keep));
                        }
                    }
                }
            }
            // the new slice starts with the (unrolled) children of the sliced element
            let bid = id_of(&self.elems[bi]).to_string();
            let child_prefix = format!("{bid}.");
            let mut kids: Vec<Map<String, Value>> = Vec::new();
            let mut j = bi + 1;
            while j < self.elems.len() {
                let oid = id_of(&self.elems[j]).to_string();
                if let Some(rest) = oid.strip_prefix(&child_prefix) {
                    let mut k = self.elems[j].clone();
                    k.insert("id".into(), Value::String(format!("{id}.{rest}")));
                    kids.push(k);
                    j += 1;
                } else if oid.starts_with(&format!("{bid}:")) {
                    j += 1;
                    while j < self.elems.len() && id_of(&self.elems[j]).starts_with(&format!("{bid}:")) {
                        j += 1;
                    }
                } else {
                    break;
                }
            }
            // nested slices of the children stay with the base: drop child slices
            kids.retain(|k| !id_of(k)[id.len()..].contains(':'));
            self.elems.insert(end, ne);
            let n = kids.len();
            self.elems.splice(end + 1..end + 1, kids);
            let _ = n;
            return Ok(end);
        }
        let parent = parent.ok_or_else(|| format!("element {id} not found in base"))?;
        let parent_path = path.rsplit_once('.').map(|(p, _)| p).unwrap_or(parent);
        let pi = self.find_or_create(parent, parent_path, None)?;
        // unroll the parent's type if it has no children yet
        let child_prefix = format!("{parent}.");
        let has_children = self.elems.get(pi + 1).is_some_and(|e| id_of(e).starts_with(&child_prefix));
        if !has_children {
            self.unroll(pi)?;
            if let Some(i) = self.pos(id) {
                return Ok(i);
            }
        }
        // a choice renamed to a type-specific name (Observation.valueQuantity)
        for j in pi + 1..self.subtree_end(pi) {
            let oid = id_of(&self.elems[j]);
            if let Some(rest) = oid.strip_prefix(&child_prefix) {
                if let Some(stem) = rest.strip_suffix("[x]") {
                    let plast = path.rsplit('.').next().unwrap_or(last);
                    if let Some(tname) = plast.strip_prefix(stem).or_else(|| last.strip_prefix(stem)) {
                        let types = self.elems[j].get("type").and_then(Value::as_array).cloned().unwrap_or_default();
                        let keep: Vec<Value> = types.into_iter().filter(|t| t.get("code").and_then(Value::as_str).is_some_and(|c| c.eq_ignore_ascii_case(tname))).collect();
                        if keep.is_empty() {
                            return Err(format!("The path must be '{}' not '{}' when the type list is not constrained", path.rsplit_once('.').map(|(p, _)| format!("{p}.{stem}[x]")).unwrap_or_default(), path));
                        }
                        self.elems[j].insert("type".into(), Value::Array(keep));
                        return Ok(j);
                    }
                }
            }
        }
        Err(format!("element {id} (path {path}) not found in the base definition"))
    }

    /// Insert the children of element `pi`'s type after it.
    fn unroll(&mut self, pi: usize) -> Result<(), String> {
        let pe = &self.elems[pi];
        let pid = id_of(pe).to_string();
        let ppath = pe.get("path").and_then(Value::as_str).unwrap_or("").to_string();
        let mut children: Vec<Map<String, Value>> = Vec::new();
        if let Some(cr) = pe.get("contentReference").and_then(Value::as_str) {
            let target = cr.trim_start_matches('#').to_string();
            let Some(ti) = self.elems.iter().position(|e| id_of(e) == target || e.get("path").and_then(Value::as_str) == Some(&target)) else {
                return Err(format!("contentReference {cr} not found"));
            };
            let tprefix = format!("{target}.");
            for e in &self.elems[ti + 1..] {
                if !id_of(e).starts_with(&tprefix) {
                    break;
                }
                children.push(rebase(e, &target, &pid, &target, &ppath));
            }
        } else {
            let types = pe.get("type").and_then(Value::as_array).cloned().unwrap_or_default();
            if types.is_empty() {
                return Err(format!("cannot unroll {pid}: it has no type"));
            }
            // several types (a choice): only the children they all share (id, extension)
            let element = serde_json::json!({ "code": "Element" });
            let t = if types.len() == 1 { &types[0] } else { &element };
            let code = t.get("code").and_then(Value::as_str).unwrap_or("");
            let prof = t.get("profile").and_then(Value::as_array).and_then(|a| a.first()).and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("http://hl7.org/fhir/StructureDefinition/{code}"));
            let tsd = snapshot_of(self.store, &prof)?;
            let els = tsd["snapshot"]["element"].as_array().ok_or("type has no snapshot")?;
            let mut tel: Vec<Map<String, Value>> = els.iter().filter_map(|e| e.as_object().cloned()).collect();
            ensure_ids(&mut tel);
            let root = id_of(&tel[0]).to_string();
            let rootpath = tel[0].get("path").and_then(Value::as_str).unwrap_or("").to_string();
            for e in &tel[1..] {
                children.push(rebase(e, &root, &pid, &rootpath, &ppath));
            }
        }
        let at = pi + 1;
        self.elems.splice(at..at, children);
        Ok(())
    }
}

fn rebase(e: &Map<String, Value>, old_id: &str, new_id: &str, old_path: &str, new_path: &str) -> Map<String, Value> {
    let mut n = e.clone();
    if let Some(id) = e.get("id").and_then(Value::as_str) {
        if let Some(rest) = id.strip_prefix(old_id) {
            n.insert("id".into(), Value::String(format!("{new_id}{rest}")));
        }
    }
    if let Some(p) = e.get("path").and_then(Value::as_str) {
        if let Some(rest) = p.strip_prefix(old_path) {
            n.insert("path".into(), Value::String(format!("{new_path}{rest}")));
        }
    }
    n
}

/// Apply a differential element onto a snapshot element.
fn merge(target: &mut Map<String, Value>, d: &Map<String, Value>) {
    // a new fixed/pattern replaces any inherited one
    if d.keys().any(|k| k.starts_with("fixed") || k.starts_with("pattern")) {
        target.retain(|k, _| !(k.starts_with("fixed") || k.starts_with("pattern")));
    }
    for (k, v) in d {
        match k.as_str() {
            "id" | "path" => {}
            "constraint" | "condition" => {
                let arr = target.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                if let (Some(a), Some(add)) = (arr.as_array_mut(), v.as_array()) {
                    for c in add {
                        let key = c.get("key");
                        if key.is_none() || !a.iter().any(|x| x.get("key") == key) {
                            a.push(c.clone());
                        } else if let Some(pos) = a.iter().position(|x| x.get("key") == key) {
                            a[pos] = c.clone();
                        }
                    }
                }
            }
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}
