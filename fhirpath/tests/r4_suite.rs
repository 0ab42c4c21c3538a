//! Runs the official FHIRPath R4 test suite (tests-fhir-r4.xml) against the engine.

mod common;

use common::{model, shared};
use fhirpath::{Context, DateTime, Expression, Item, evaluate_items, evaluate_items_bool};
use serde_json::Value;
use std::collections::HashMap;

struct Case {
    name: String,
    group: String,
    input: Option<String>,
    expr: String,
    invalid: Option<String>,
    predicate: bool,
    strict: bool,
    outputs: Vec<(Option<String>, String)>,
}

fn load_cases() -> Vec<Case> {
    let xml = std::fs::read_to_string(shared().join("conformance/fhirpath/tests-fhir-r4.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let mut cases = Vec::new();
    for g in doc.root_element().children().filter(|n| n.has_tag_name("group")) {
        let group = g.attribute("name").unwrap_or("").to_string();
        for t in g.children().filter(|n| n.has_tag_name("test") || n.has_tag_name("modeTest")) {
            let Some(e) = t.children().find(|n| n.has_tag_name("expression")) else { continue };
            let mode = t.attribute("mode").or_else(|| e.attribute("mode")).unwrap_or("");
            cases.push(Case {
                name: t.attribute("name").unwrap_or("(unnamed)").to_string(),
                group: group.clone(),
                input: t.attribute("inputfile").map(str::to_string),
                expr: e.text().unwrap_or("").to_string(),
                invalid: e.attribute("invalid").map(str::to_string),
                predicate: t.attribute("predicate") == Some("true"),
                strict: !mode.starts_with("lenient"),
                outputs: t
                    .children()
                    .filter(|n| n.has_tag_name("output"))
                    .map(|o| (o.attribute("type").map(str::to_string), o.text().unwrap_or("").to_string()))
                    .collect(),
            });
        }
    }
    cases
}

fn load_input(name: &str) -> Value {
    let base = name.rsplit_once('.').map(|x| x.0).unwrap_or(name);
    let p = shared().join(format!("conformance/fhirpath/inputs/{base}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn type_of(it: &Item) -> String {
    match it {
        Item::Node(n) => n.type_name().to_string(),
        _ => match it.type_name() {
            "Boolean" => "boolean",
            "String" => "string",
            "Integer" => "integer",
            "Decimal" => "decimal",
            "Date" => "date",
            "DateTime" => "dateTime",
            "Time" => "time",
            "Quantity" => "Quantity",
            other => other,
        }
        .to_string(),
    }
}

fn show(it: &Item) -> String {
    let s = it.to_string();
    match it.to_system() {
        Item::Date(_) | Item::DateTime(_) => format!("@{s}"),
        Item::Time(_) => format!("@T{s}"),
        _ => s,
    }
}

fn run_case(c: &Case, inputs: &HashMap<String, Value>) -> Result<(), String> {
    let m = model();
    let parsed = Expression::parse(&c.expr);
    let expr = match (parsed, &c.invalid) {
        (Err(_), Some(_)) => return Ok(()),
        (Err(e), None) => return Err(format!("parse error: {e}")),
        (Ok(x), _) => x,
    };
    let res = c.input.as_ref().map(|i| &inputs[i]);
    let mut ctx = Context::new(m).with_strict(c.strict).with_now(DateTime::now());
    if let Some(r) = res {
        ctx = ctx.with_resource(r);
    }
    let input: Vec<Item> = match res {
        Some(r) => vec![Item::from_json(m, r, None, "")],
        None => Vec::new(),
    };
    let result = if c.predicate {
        evaluate_items_bool(&expr, &ctx, input).map(|b| b.map(Item::Boolean).into_iter().collect())
    } else {
        evaluate_items(&expr, &ctx, input)
    };
    match (result, &c.invalid) {
        (Err(_), Some(_)) => Ok(()),
        (Ok(v), Some(kind)) => Err(format!("expected {kind} error, got [{}]", v.iter().map(show).collect::<Vec<_>>().join(", "))),
        (Err(e), None) => Err(format!("error: {e}")),
        (Ok(v), None) => {
            let actual: Vec<(String, String)> = v.iter().map(|i| (type_of(i), show(i))).collect();
            let ok = actual.len() == c.outputs.len()
                && actual.iter().zip(&c.outputs).all(|((at, av), (et, ev))| {
                    av == ev && et.as_ref().is_none_or(|et| et == at)
                });
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "expected [{}] got [{}]",
                    c.outputs.iter().map(|(t, v)| format!("{}:{v}", t.as_deref().unwrap_or("?"))).collect::<Vec<_>>().join(", "),
                    actual.iter().map(|(t, v)| format!("{t}:{v}")).collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
}

#[test]
fn r4_suite() {
    let cases = load_cases();
    assert!(cases.len() > 900, "suite not found or truncated: {} cases", cases.len());
    let mut inputs = HashMap::new();
    for c in &cases {
        if let Some(i) = &c.input {
            inputs.entry(i.clone()).or_insert_with(|| load_input(i));
        }
    }
    let mut failures = Vec::new();
    for c in &cases {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(c, &inputs)));
        let r = r.unwrap_or_else(|_| Err("PANIC".to_string()));
        if let Err(msg) = r {
            failures.push(format!("  {}/{}: `{}` -> {msg}", c.group, c.name, c.expr.replace('\n', " ")));
        }
    }
    let total = cases.len();
    let passed = total - failures.len();
    let rate = passed as f64 * 100.0 / total as f64;
    println!("FHIRPath R4 suite: {passed}/{total} passed ({rate:.1}%)");
    if !failures.is_empty() {
        println!("Failures ({}):", failures.len());
        for f in &failures {
            println!("{f}");
        }
    }
    assert!(rate >= 95.0, "pass rate {rate:.1}% is below 95%");
}
