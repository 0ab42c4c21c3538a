//! Robustness: every FHIRPath expression in the R4 core package (and the JP packages) must parse,
//! and the core invariants must evaluate without errors on the package's own resources.

#[allow(dead_code)]
mod common;

use fhirpath::{Context, Expression, Item, evaluate_items, evaluate_items_bool};
use serde_json::Value;
use std::io::Read;

fn package_json(name: &str, prefixes: &[&str]) -> Vec<Value> {
    let path = common::shared().join("fhir-packages").join(name);
    let f = std::fs::File::open(&path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = Vec::new();
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let p = entry.path().unwrap().to_string_lossy().to_string();
        let file = p.rsplit('/').next().unwrap_or("").to_string();
        if !file.ends_with(".json") || !prefixes.iter().any(|x| file.starts_with(x)) {
            continue;
        }
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).unwrap();
        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
            out.push(v);
        }
    }
    out
}

fn expressions(v: &Value, out: &mut Vec<(String, String)>) {
    if let Some(e) = v.get("expression").and_then(Value::as_str) {
        if v.get("resourceType").and_then(Value::as_str) == Some("SearchParameter") {
            out.push((format!("SP {}", v["id"].as_str().unwrap_or("")), e.to_string()));
        }
    }
    for el in v.pointer("/snapshot/element").and_then(Value::as_array).into_iter().flatten() {
        for c in el.get("constraint").and_then(Value::as_array).into_iter().flatten() {
            if let Some(e) = c.get("expression").and_then(Value::as_str) {
                out.push((format!("{} {}", el["path"].as_str().unwrap_or(""), c["key"].as_str().unwrap_or("")), e.to_string()));
            }
        }
    }
}

#[test]
fn all_package_expressions_parse() {
    let mut exprs = Vec::new();
    for pkg in ["hl7.fhir.r4.core-4.0.1.tgz", "jp-core.r4-1.1.2-url.tgz", "jp-eCSCLINS.r4-1.x.x-temp.tgz"] {
        for v in package_json(pkg, &["SearchParameter-", "StructureDefinition-"]) {
            expressions(&v, &mut exprs);
        }
    }
    let mut bad = Vec::new();
    for (w, e) in &exprs {
        if let Err(err) = Expression::parse(e) {
            bad.push(format!("{w}: {e} -> {err}"));
        }
    }
    println!("{} expressions, {} failed to parse", exprs.len(), bad.len());
    for b in &bad {
        println!("  {b}");
    }
    assert!(exprs.len() > 3000);
    assert!(bad.is_empty());
}

#[test]
fn core_invariants_evaluate_on_package_resources() {
    let m = common::model();
    let sds = common::load_core_sds();
    // resource type -> [(element path, key, expression)]
    let mut cons: std::collections::HashMap<String, Vec<(String, String, Expression)>> = Default::default();
    for sd in &sds {
        if sd.get("kind").and_then(Value::as_str) != Some("resource") || sd.get("derivation").and_then(Value::as_str) != Some("specialization") {
            continue;
        }
        let ty = sd["type"].as_str().unwrap().to_string();
        for el in sd.pointer("/snapshot/element").and_then(Value::as_array).into_iter().flatten() {
            let path = el["path"].as_str().unwrap().replace("[x]", "");
            for c in el.get("constraint").and_then(Value::as_array).into_iter().flatten() {
                let (Some(e), Some(k)) = (c.get("expression").and_then(Value::as_str), c.get("key").and_then(Value::as_str)) else { continue };
                cons.entry(ty.clone()).or_default().push((path.clone(), k.to_string(), Expression::parse(e).unwrap()));
            }
        }
    }
    let resources = package_json("hl7.fhir.r4.core-4.0.1.tgz", &["ValueSet-", "CodeSystem-", "SearchParameter-", "OperationDefinition-", "ConceptMap-", "CapabilityStatement-", "CompartmentDefinition-"]);
    let mut errors = Vec::new();
    let mut evaluated = 0usize;
    let mut failed = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        if i % 7 != 0 {
            continue; // sample to keep debug-mode runtime reasonable
        }
        let ty = r["resourceType"].as_str().unwrap();
        let ctx = Context::new(m).with_resource(r);
        let root = vec![Item::from_json(m, r, None, "")];
        for (path, key, e) in cons.get(ty).into_iter().flatten() {
            let pe = Expression::parse(path).unwrap();
            let focus = match evaluate_items(&pe, &ctx, root.clone()) {
                Ok(f) => f,
                Err(err) => {
                    errors.push(format!("{ty}/{} path {path}: {err}", r["id"]));
                    continue;
                }
            };
            for f in focus {
                evaluated += 1;
                match evaluate_items_bool(e, &ctx, vec![f]) {
                    Ok(Some(false)) => failed.push(format!("{ty}/{} {key}", r["id"].as_str().unwrap_or(""))),
                    Ok(_) => {}
                    Err(err) => errors.push(format!("{ty}/{} {key} ({path}): {err}", r["id"].as_str().unwrap_or(""))),
                }
            }
        }
    }
    println!("{evaluated} invariant evaluations, {} false, {} errors", failed.len(), errors.len());
    for f in failed.iter().take(30) {
        println!("  false: {f}");
    }
    for e in &errors {
        println!("  error: {e}");
    }
    assert!(evaluated > 1000);
    assert!(errors.is_empty());
}
