//! Hostile input: mutated copies of the official examples must never panic the validator.

mod common;

use fhir_profiles::{ValidationOptions, Validator};
use serde_json::{Value, json};

fn mutations(v: &Value, out: &mut Vec<Vec<String>>, path: &mut Vec<String>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                path.push(k.clone());
                out.push(path.clone());
                *budget = budget.saturating_sub(1);
                mutations(x, out, path, budget);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(3) {
                path.push(i.to_string());
                out.push(path.clone());
                mutations(x, out, path, budget);
                path.pop();
            }
        }
        _ => {}
    }
}

fn set(v: &mut Value, path: &[String], new: Value) {
    let mut cur = v;
    for (i, seg) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        cur = match cur {
            Value::Object(o) => {
                if last {
                    o.insert(seg.clone(), new);
                    return;
                }
                o.get_mut(seg).unwrap()
            }
            Value::Array(a) => {
                let idx: usize = seg.parse().unwrap();
                if last {
                    a[idx] = new;
                    return;
                }
                &mut a[idx]
            }
            _ => return,
        };
    }
}

#[test]
fn mutated_examples_do_not_panic() {
    let validator = Validator::new(common::store());
    let replacements = [json!(null), json!({}), json!([]), json!(""), json!(1.5), json!("日本語テキスト"), json!([{}]), json!({ "reference": "#x" }), json!(true)];
    let mut n = 0;
    for name in ["Bundle-Bundle-CLINS-Observations-Example-01.json", "Patient-Example-JP-Patient-eCS-MAKINO.json", "MedicationRequest-Example-JP-MedReq-PO-TID-2days.json", "Condition-Example-JP-Condition-eCS-01.json"] {
        let base: Value = serde_json::from_slice(&std::fs::read(common::shared().join("examples/jp-clins").join(name)).unwrap()).unwrap();
        let mut paths = Vec::new();
        let mut budget = 120;
        mutations(&base, &mut paths, &mut Vec::new(), &mut budget);
        for (i, p) in paths.iter().enumerate() {
            let mut m = base.clone();
            set(&mut m, p, replacements[i % replacements.len()].clone());
            let _ = validator.validate(&m, &ValidationOptions::default());
            n += 1;
        }
    }
    assert!(n > 100);
    // a deeply nested extension chain
    let mut e = json!({ "url": "http://example.org/x", "valueString": "v" });
    for _ in 0..100 {
        e = json!({ "url": "http://example.org/x", "extension": [e] });
    }
    let _ = validator.validate(&json!({ "resourceType": "Patient", "extension": [e] }), &ValidationOptions::default());
}
