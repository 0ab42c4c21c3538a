//! Unit tests for the tricky parts of the engine.

#[allow(dead_code)]
mod common;
use common as suite;

use fhirpath::{Context, Expression, Item, Resolver, TerminologyHook, evaluate, evaluate_bool};
use serde_json::{Value, json};

fn eval_on<'a>(ctx: &Context<'a>, focus: &'a Value, src: &str) -> Vec<Item<'a>> {
    let e = Expression::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    evaluate(&e, ctx, focus, "").unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn strs(items: &[Item<'_>]) -> Vec<String> {
    items.iter().map(|i| i.to_string()).collect()
}

fn check(focus: &Value, src: &str, expected: &[&str]) {
    let ctx = Context::new(suite::model()).with_resource(focus);
    let got = strs(&eval_on(&ctx, focus, src));
    assert_eq!(got, expected, "{src}");
}

fn empty() -> Value {
    json!({"resourceType": "Basic"})
}

#[test]
fn precision_aware_dates() {
    let r = empty();
    check(&r, "@2018-03 < @2018-03-01", &[]);
    check(&r, "@2018-03 = @2018-03-01", &[]);
    check(&r, "@2018-03 ~ @2018-03-01", &["false"]);
    check(&r, "@2018-03-01 < @2018-04", &["true"]);
    check(&r, "@2018-03-01T10:30 = @2018-03-01T10:30:00", &[]);
    check(&r, "@T10:30:00 = @T10:30:00.000", &["true"]);
    check(&r, "@2017-11-05T01:30:00-04:00 = @2017-11-05T00:30:00-05:00", &["true"]);
    check(&r, "@2012-04-15T15:00:00Z = @2012-04-15T10:00:00", &[]);
    check(&r, "@2014-01-31 + 1 month", &["2014-02-28"]);
    check(&r, "@2014-01-01 + 1 month", &["2014-02-01"]);
    check(&r, "@2014-01-01T10:00:00Z - 90 minutes", &["2014-01-01T08:30:00Z"]);
    let p = json!({"resourceType": "Patient", "birthDate": "1974-12"});
    check(&p, "birthDate < @1975", &["true"]);
    check(&p, "birthDate < @1974-12-25", &[]);
    check(&p, "birthDate.type().name", &["date"]);
}

#[test]
fn decimal_arithmetic() {
    let r = empty();
    check(&r, "0.1 + 0.2 = 0.3", &["true"]);
    check(&r, "1.50 + 1", &["2.50"]);
    check(&r, "10 / 4", &["2.5"]);
    check(&r, "7 div 2", &["3"]);
    check(&r, "7 mod 2", &["1"]);
    check(&r, "7.5 mod 2", &["1.5"]);
    check(&r, "1 / 0", &[]);
    check(&r, "2147483647 + 1", &[]);
    check(&r, "1.0 ~ 1.06", &["false"]);
    check(&r, "1.0 ~ 1.01", &["true"]);
    check(&r, "(1.234).round(2)", &["1.23"]);
    check(&r, "4.0 'g' = 4000 'mg'", &["true"]);
    check(&r, "1 'cm' < 1 'm'", &["true"]);
    check(&r, "1 'cm' < 1 's'", &[]);
    // decimals from JSON keep their written precision
    let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": 185.50, "unit": "lbs"}});
    let o2: Value = serde_json::from_str(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":185.50,"unit":"lbs"}}"#).unwrap();
    let _ = o;
    check(&o2, "Observation.value.value.toString()", &["185.50"]);
    check(&o2, "Observation.value.value = 185.5", &["true"]);
    check(&o2, "Observation.value.value > 185", &["true"]);
}

#[test]
fn choice_types() {
    let m = suite::model();
    let o = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
        "effectiveDateTime": "2020-01-02T10:00:00+09:00",
        "valueQuantity": {"value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
        "subject": {"reference": "Patient/123"}});
    let ctx = Context::new(m).with_resource(&o);
    let v = eval_on(&ctx, &o, "Observation.code");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].type_name(), "CodeableConcept");
    let v = eval_on(&ctx, &o, "Observation.effective");
    assert_eq!(v[0].type_name(), "dateTime");
    assert_eq!(v[0].as_str(), Some("2020-01-02T10:00:00+09:00"));
    let v = eval_on(&ctx, &o, "Observation.value");
    assert_eq!(v[0].type_name(), "Quantity");
    check(&o, "Observation.value is Quantity", &["true"]);
    check(&o, "Observation.value.ofType(Quantity).unit", &["mg"]);
    check(&o, "(Observation.value as Quantity) = 5 'mg'", &["true"]);
    check(&o, "Observation.value.as(string)", &[]);
    check(&o, "Observation.effective is dateTime", &["true"]);
    check(&o, "Observation.effective.ofType(Period)", &[]);
    // lenient mode accepts the JSON name of a choice variant, strict mode rejects it
    check(&o, "Observation.valueQuantity.unit", &["mg"]);
    let e = Expression::parse("Observation.valueQuantity.unit").unwrap();
    assert!(evaluate(&e, &ctx.clone().with_strict(true), &o, "Observation").is_err());
    // unknown elements are semantic errors
    let e = Expression::parse("Observation.valeu").unwrap();
    assert!(evaluate(&e, &ctx, &o, "Observation").is_err());
    // Resource.id / DomainResource.text polymorphic starts
    let p = json!({"resourceType": "Patient", "id": "x", "text": {"status": "generated", "div": "<div/>"}});
    check(&p, "Resource.id", &["x"]);
    check(&p, "DomainResource.text.status", &["generated"]);
}

#[test]
fn primitive_extension_merging() {
    let m = suite::model();
    let p = json!({"resourceType": "Patient",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1970-01-01T10:00:00+09:00"}]},
        "name": [{"given": ["Taro", null, "Jiro"],
                  "_given": [null, {"extension": [{"url": "http://example.org/x", "valueString": "absent"}]}, {"id": "g3"}]}]});
    let ctx = Context::new(m).with_resource(&p);
    check(&p, "birthDate.extension.url", &["http://hl7.org/fhir/StructureDefinition/patient-birthTime"]);
    check(&p, "birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", &["1970-01-01T10:00:00+09:00"]);
    check(&p, "name.given.count()", &["3"]);
    check(&p, "name.given.where(hasValue()).count()", &["2"]);
    check(&p, "name.given[1].hasValue()", &["false"]);
    check(&p, "name.given[1].extension.value", &["absent"]);
    check(&p, "name.given[2].id", &["g3"]);
    check(&p, "name.given.id", &["g3"]);
    let v = eval_on(&ctx, &p, "name.given[1]");
    let node = v[0].as_node().unwrap();
    assert!(node.json().is_none());
    assert!(node.primitive_extension().is_some());
    assert_eq!(v[0].type_name(), "string");
    check(&p, "birthDate.hasValue()", &["true"]);
    check(&p, "birthDate.getValue().type().namespace", &["System"]);
}

#[test]
fn three_valued_logic() {
    let r = empty();
    check(&r, "{} and false", &["false"]);
    check(&r, "{} and true", &[]);
    check(&r, "{} or true", &["true"]);
    check(&r, "{} or false", &[]);
    check(&r, "{} xor true", &[]);
    check(&r, "true implies {}", &[]);
    check(&r, "false implies {}", &["true"]);
    check(&r, "{} implies true", &["true"]);
    check(&r, "{} implies false", &[]);
    check(&r, "({}).not()", &[]);
    let m = suite::model();
    let ctx = Context::new(m);
    let e = Expression::parse("{}").unwrap();
    assert_eq!(evaluate_bool(&e, &ctx, &r, "").unwrap(), None);
    let e = Expression::parse("'x'").unwrap();
    assert_eq!(evaluate_bool(&e, &ctx, &r, "").unwrap(), Some(true));
    let e = Expression::parse("false").unwrap();
    assert_eq!(evaluate_bool(&e, &ctx, &r, "").unwrap(), Some(false));
    let e = Expression::parse("(1 | 2)").unwrap();
    assert!(evaluate_bool(&e, &ctx, &r, "").is_err());
}

struct MapResolver(Value);
impl Resolver for MapResolver {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        (reference == "Practitioner/9").then_some(&self.0)
    }
}

#[test]
fn resolve_stubs_and_targets() {
    let m = suite::model();
    let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Device", "id": "d1"}],
        "subject": {"reference": "Patient/123"},
        "performer": [{"reference": "http://example.org/fhir/Practitioner/9/_history/2"},
                      {"reference": "#d1"}, {"reference": "Organization/1"}]});
    let ctx = Context::new(m).with_resource(&o);
    let v = eval_on(&ctx, &o, "Observation.subject.where(resolve() is Patient)");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].type_name(), "Reference");
    check(&o, "Observation.performer.resolve().type().name", &["Practitioner", "Device", "Organization"]);
    check(&o, "Observation.performer.where(resolve() is Device).reference", &["#d1"]);
    check(&o, "Observation.performer.resolve().ofType(Device).id", &["d1"]);
    check(&o, "Observation.subject.resolve() is Group", &["false"]);
    // with a Resolver, the real resource is used
    let prac = json!({"resourceType": "Practitioner", "id": "9", "active": true});
    let res = MapResolver(prac);
    let o2 = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "performer": [{"reference": "Practitioner/9"}]});
    let ctx2 = Context::new(m).with_resource(&o2).with_resolver(&res);
    assert_eq!(strs(&eval_on(&ctx2, &o2, "performer.resolve().active")), ["true"]);
    // Bundle-internal references (no resolver)
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1111", "resource": {"resourceType": "Patient", "id": "p", "gender": "female"}},
        {"fullUrl": "http://x.org/fhir/Encounter/e1", "resource": {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}},
        {"fullUrl": "urn:uuid:2222", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "urn:uuid:1111"}, "encounter": {"reference": "Encounter/e1"}}}]});
    let obs = &b["entry"][2]["resource"];
    let ctx3 = Context::new(m).with_resource(obs).with_root_resource(&b);
    assert_eq!(strs(&eval_on(&ctx3, obs, "subject.resolve().gender")), ["female"]);
    assert_eq!(strs(&eval_on(&ctx3, obs, "encounter.resolve().status")), ["finished"]);
    assert_eq!(strs(&eval_on(&ctx3, obs, "%rootResource.entry.count()")), ["3"]);
}

struct Hook;
impl TerminologyHook for Hook {
    fn member_of(&self, item: &Item<'_>, vs: &str) -> Option<bool> {
        if vs != "http://example.org/vs" {
            return None;
        }
        let code = item.as_json().and_then(|j| j.get("code")).and_then(Value::as_str).or(item.as_str());
        Some(code == Some("ok"))
    }
}

#[test]
fn member_of_and_variables() {
    let m = suite::model();
    let c = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "s", "code": "ok"}, {"system": "s", "code": "bad"}]}});
    let ctx = Context::new(m).with_resource(&c);
    assert!(eval_on(&ctx, &c, "code.coding.memberOf('http://example.org/vs')").is_empty());
    let ctx = ctx.with_terminology(&Hook).with_string_variable("vs-x", "http://example.org/vs");
    assert_eq!(strs(&eval_on(&ctx, &c, "code.coding.memberOf(%`vs-x`)")), ["true", "false"]);
    assert_eq!(strs(&eval_on(&ctx, &c, "code.coding.memberOf(%'vs-x')")), ["true", "false"]);
    assert_eq!(strs(&eval_on(&ctx, &c, "%ucum")), ["http://unitsofmeasure.org"]);
    assert_eq!(strs(&eval_on(&ctx, &c, "%`vs-administrative-gender`")), ["http://hl7.org/fhir/ValueSet/administrative-gender"]);
}

#[test]
fn model_queries() {
    let m = suite::model();
    assert!(m.is_resource_type("Patient"));
    assert!(m.is_resource_type("DomainResource"));
    assert!(!m.is_resource_type("HumanName"));
    assert!(m.is_type("HumanName") && m.is_type("dateTime"));
    assert!(m.is_subtype("Patient", "Resource"));
    assert!(m.is_subtype("Age", "Quantity"));
    assert!(m.is_subtype("SimpleQuantity", "Quantity"));
    assert!(!m.is_subtype("Quantity", "Age"));
    let el = m.child_element("Observation", "value").unwrap();
    assert!(el.choice && el.types.len() > 5);
    assert!(m.child_element("Patient", "name").unwrap().many);
    assert!(!m.child_element("Patient", "birthDate").unwrap().many);
    // contentReference recursion
    let item = m.child_element("Questionnaire.item", "item").unwrap();
    assert_eq!(m.type_key(item.types[0]), "Questionnaire.item");
    assert_eq!(m.type_name(item.types[0]), "BackboneElement");
    assert!(m.type_id("Questionnaire.item.item.item").is_some());
    let q = json!({"resourceType": "Questionnaire", "status": "active",
        "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "item": [{"linkId": "1.1.1", "type": "string"}]}]}]});
    check(&q, "Questionnaire.item.item.item.linkId", &["1.1.1"]);
    check(&q, "Questionnaire.repeat(item).linkId", &["1", "1.1", "1.1.1"]);
    check(&q, "Questionnaire.descendants().ofType(string).count()", &["3"]);
}

#[test]
fn parse_errors_and_eval_errors() {
    for bad in ["1 +", "name.", "where(", "'abc", "@2014-13", "foo()", "substring()", "1 2"] {
        assert!(Expression::parse(bad).is_err(), "{bad} should not parse");
    }
    let m = suite::model();
    let p = json!({"resourceType": "Patient", "name": [{"family": "a"}, {"family": "b"}]});
    let ctx = Context::new(m).with_resource(&p);
    for bad in ["name.single()", "name.family + 1", "name.family.substring(1)", "'a' < 1"] {
        let e = Expression::parse(bad).unwrap();
        assert!(evaluate(&e, &ctx, &p, "Patient").is_err(), "{bad} should fail");
    }
    let e = Expression::parse("  name.`family`  // comment").unwrap();
    assert_eq!(e.source(), "  name.`family`  // comment");
    assert_eq!(strs(&evaluate(&e, &ctx, &p, "Patient").unwrap()), ["a", "b"]);
}

#[test]
fn no_panics_on_odd_input() {
    let m = suite::model();
    let p = json!({"resourceType": "Patient", "birthDate": "19é0-01-01", "name": [{"given": ["ü"]}],
                   "multipleBirthInteger": 9223372036854775807i64});
    let ctx = Context::new(m).with_resource(&p);
    for src in [
        "birthDate < today()", "'é1'.toTime()", "'ééé'.toDate()", "'2014-ü'.toDateTime()",
        "99999999999999999999999999.0 * 99999999999999999999999999.0",
        "99999999999999999999999999.0 'kg' * 99999999999999999999999999.0 'kg'",
        "99999999999999999999999999.0 'kg' + 99999999999999999999999999.0 'kg'",
        "@2014-01-01 + 99999999999999999999999999.0 days", "multipleBirth.abs()", "-multipleBirth",
        "name.given.substring(5, 100)", "name.given.toChars()", "'abc'.substring(-1)",
        "'a'.replaceMatches('(', 'x')", "1 '{{}' = 1 'm'", "'x'.matches('[')",
    ] {
        // invalid regex literals are parse errors; everything else must evaluate or error, not panic
        if let Ok(e) = Expression::parse(src) {
            let _ = evaluate(&e, &ctx, &p, "Patient");
        }
    }
}
