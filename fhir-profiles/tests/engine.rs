//! Unit tests of the engine: snapshot generation, slicing, cardinality, fixed/pattern, choice types,
//! extensions, bindings, primitive formats and the JSON rules.

mod common;

use std::sync::Arc;

use fhir_profiles::{Issue, PackageStore, ValidationOptions, Validator, generate_snapshot, has_errors};
use serde_json::{Value, json};

const T: &str = "http://example.org/test/StructureDefinition/";

fn sd(id: &str, ty: &str, base: &str, elements: Value) -> Value {
    json!({
        "resourceType": "StructureDefinition", "id": id, "url": format!("{T}{id}"), "version": "1.0.0", "name": id,
        "status": "active", "kind": if ty.starts_with(|c: char| c.is_lowercase()) || ty == "Extension" { "complex-type" } else { "resource" },
        "abstract": false, "type": ty, "baseDefinition": base, "derivation": "constraint",
        "differential": { "element": elements }
    })
}

fn store_with(resources: &[Value]) -> Arc<PackageStore> {
    let s = common::store().child();
    for r in resources {
        s.add_resource(r.clone()).unwrap();
    }
    s
}

fn check(store: &Arc<PackageStore>, profile: &str, instance: &Value) -> Vec<Issue> {
    Validator::new(store.clone()).validate(instance, &ValidationOptions::with_profile(format!("{T}{profile}")))
}

fn has(issues: &[Issue], needle: &str) -> bool {
    issues.iter().any(|i| i.severity.is_error() && i.message.contains(needle))
}

fn patient_profile() -> Value {
    sd(
        "pat",
        "Patient",
        "http://hl7.org/fhir/StructureDefinition/Patient",
        json!([
            { "id": "Patient.identifier", "path": "Patient.identifier", "min": 1,
              "slicing": { "discriminator": [{ "type": "value", "path": "system" }], "rules": "open" } },
            { "id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn", "min": 1, "max": "1" },
            { "id": "Patient.identifier:mrn.system", "path": "Patient.identifier.system", "min": 1, "fixedUri": "urn:oid:1.2.3" },
            { "id": "Patient.identifier:mrn.value", "path": "Patient.identifier.value", "min": 1, "maxLength": 5 },
            { "id": "Patient.gender", "path": "Patient.gender", "min": 1, "fixedCode": "female" },
            { "id": "Patient.name", "path": "Patient.name", "max": "1" },
            { "id": "Patient.name.family", "path": "Patient.name.family", "min": 1 },
            { "id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "type": [{ "code": "boolean" }] },
            { "id": "Patient.maritalStatus", "path": "Patient.maritalStatus", "patternCodeableConcept": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M" }] } }
        ]),
    )
}

#[test]
fn snapshot_generation_from_differential() {
    let s = store_with(&[patient_profile()]);
    let p = s.resolve(&format!("{T}pat")).unwrap();
    let snap = generate_snapshot(&s, &p).unwrap();
    let els = snap["snapshot"]["element"].as_array().unwrap();
    let ids: Vec<&str> = els.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"Patient.identifier:mrn"));
    assert!(ids.contains(&"Patient.identifier:mrn.system"));
    assert!(ids.contains(&"Patient.name.family"), "datatype unrolled where constrained");
    let pos = |id: &str| ids.iter().position(|x| *x == id).unwrap();
    assert!(pos("Patient.identifier") < pos("Patient.identifier:mrn") && pos("Patient.identifier:mrn") < pos("Patient.active"));
    let ident = &els[pos("Patient.identifier")];
    assert_eq!(ident["min"], 1);
    assert_eq!(els[pos("Patient.identifier:mrn.system")]["fixedUri"], "urn:oid:1.2.3");
    // base elements are kept
    assert!(ids.contains(&"Patient.birthDate") && ids.contains(&"Patient.contact.name"));
    // compiled
    let cp = s.profile(&format!("{T}pat")).unwrap();
    assert!(cp.snapshot_error.is_none());
}

#[test]
fn snapshot_error_on_bad_path() {
    let bad = sd("bad", "Observation", "http://hl7.org/fhir/StructureDefinition/Observation", json!([{ "id": "Observation.valueBla", "path": "Observation.valueBla" }]));
    let s = store_with(&[bad.clone()]);
    let e = generate_snapshot(&s, &bad).unwrap_err();
    assert!(e.contains("value[x]"), "{e}");
}

#[test]
fn value_slicing_cardinality_fixed_maxlength() {
    let s = store_with(&[patient_profile()]);
    let good = json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:9.9", "value": "x" }, { "system": "urn:oid:1.2.3", "value": "12345" }] });
    let i = check(&s, "pat", &good);
    assert!(!has_errors(&i), "{}", common::show(&i));
    let no_slice = json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:9.9", "value": "x" }] });
    assert!(has(&check(&s, "pat", &no_slice), "Patient.identifier:mrn: minimum required = 1"));
    let no_ident = json!({ "resourceType": "Patient", "gender": "female" });
    assert!(has(&check(&s, "pat", &no_ident), "Patient.identifier: minimum required = 1"));
    let two = json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:1.2.3", "value": "1" }, { "system": "urn:oid:1.2.3", "value": "2" }] });
    assert!(has(&check(&s, "pat", &two), "max allowed = 1"));
    let fixed = json!({ "resourceType": "Patient", "gender": "male", "identifier": [{ "system": "urn:oid:1.2.3", "value": "1" }] });
    let i = check(&s, "pat", &fixed);
    assert!(has(&i, "fixed to '\"female\"'"), "{}", common::show(&i));
    let long = json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:1.2.3", "value": "123456" }] });
    assert!(has(&check(&s, "pat", &long), "maximum length 5"));
    let i = check(&s, "pat", &json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:1.2.3", "value": "1" }], "name": [{ "given": ["A"] }] }));
    assert!(has(&i, "Patient.name.family: minimum required = 1"), "{}", common::show(&i));
    let i = check(&s, "pat", &json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:1.2.3", "value": "1" }], "name": [{ "family": "A" }, { "family": "B" }] }));
    assert!(has(&i, "Patient.name: max allowed = 1"), "{}", common::show(&i));
}

#[test]
fn pattern_and_choice_types() {
    let s = store_with(&[patient_profile()]);
    let base = json!({ "resourceType": "Patient", "gender": "female", "identifier": [{ "system": "urn:oid:1.2.3", "value": "1" }] });
    let mut ok = base.clone();
    ok["maritalStatus"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married" }], "text": "married" });
    ok["deceasedBoolean"] = json!(false);
    let i = check(&s, "pat", &ok);
    assert!(!has_errors(&i), "{}", common::show(&i));
    let mut bad = base.clone();
    bad["maritalStatus"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "S" }] });
    assert!(has(&check(&s, "pat", &bad), "does not match the required pattern"));
    let mut bad = base.clone();
    bad["deceasedDateTime"] = json!("2020-01-01");
    assert!(has(&check(&s, "pat", &bad), "not allowed"));
    let mut bad = base.clone();
    bad["deceasedBoolean"] = json!(true);
    bad["deceasedDateTime"] = json!("2020-01-01");
    assert!(has_errors(&check(&s, "pat", &bad)));
    let mut bad = base.clone();
    bad["deceasedFoo"] = json!(true);
    assert!(has_errors(&check(&s, "pat", &bad)));
}

fn obs_profile() -> Value {
    sd(
        "obs",
        "Observation",
        "http://hl7.org/fhir/StructureDefinition/Observation",
        json!([
            { "id": "Observation.code.coding", "path": "Observation.code.coding",
              "slicing": { "discriminator": [{ "type": "pattern", "path": "$this" }], "rules": "closed", "ordered": true } },
            { "id": "Observation.code.coding:loinc", "path": "Observation.code.coding", "sliceName": "loinc", "min": 1, "max": "1",
              "patternCoding": { "system": "http://loinc.org", "code": "8310-5" } },
            { "id": "Observation.code.coding:local", "path": "Observation.code.coding", "sliceName": "local", "min": 0, "max": "1",
              "patternCoding": { "system": "http://example.org/local" } },
            { "id": "Observation.component", "path": "Observation.component",
              "slicing": { "discriminator": [{ "type": "exists", "path": "value" }], "rules": "open" } },
            { "id": "Observation.component:withValue", "path": "Observation.component", "sliceName": "withValue", "min": 1 },
            { "id": "Observation.component:withValue.value[x]", "path": "Observation.component.value[x]", "min": 1 },
            { "id": "Observation.value[x]", "path": "Observation.value[x]",
              "slicing": { "discriminator": [{ "type": "type", "path": "$this" }], "rules": "open" } },
            { "id": "Observation.value[x]:valueQuantity", "path": "Observation.value[x]", "sliceName": "valueQuantity", "min": 0, "type": [{ "code": "Quantity" }] },
            { "id": "Observation.value[x]:valueQuantity.value", "path": "Observation.value[x].value", "min": 1, "minValueDecimal": 30 }
        ]),
    )
}

fn obs(codings: Value) -> Value {
    json!({ "resourceType": "Observation", "status": "final", "code": { "coding": codings },
            "component": [{ "code": { "text": "c" }, "valueString": "v" }] })
}

#[test]
fn pattern_exists_type_slicing_closed_ordered() {
    let s = store_with(&[obs_profile()]);
    let loinc = json!({ "system": "http://loinc.org", "code": "8310-5" });
    let local = json!({ "system": "http://example.org/local", "code": "t" });
    let i = check(&s, "obs", &obs(json!([loinc, local])));
    assert!(!has_errors(&i), "{}", common::show(&i));
    // ordered
    assert!(has(&check(&s, "obs", &obs(json!([local, loinc]))), "out of order"));
    // closed
    let other = json!({ "system": "http://snomed.info/sct", "code": "1" });
    assert!(has(&check(&s, "obs", &obs(json!([loinc, other]))), "CLOSED"));
    // pattern slice required
    assert!(has(&check(&s, "obs", &obs(json!([local]))), "coding:loinc: minimum required = 1"));
    // exists discriminator: no component with a value
    let mut o = obs(json!([loinc]));
    o["component"] = json!([{ "code": { "text": "c" } }]);
    assert!(has(&check(&s, "obs", &o), "Observation.component:withValue: minimum required = 1"));
    // type discriminator on a choice: the Quantity slice's constraint applies to valueQuantity only
    let mut o = obs(json!([loinc]));
    o["valueQuantity"] = json!({ "value": 20, "unit": "C" });
    let i = check(&s, "obs", &o);
    assert!(has(&i, "less than the specified minimum value"), "{}", common::show(&i));
    let mut o = obs(json!([loinc]));
    o["valueString"] = json!("20");
    assert!(!has_errors(&check(&s, "obs", &o)));
}

#[test]
fn profile_discriminator() {
    let female = sd("female", "Patient", "http://hl7.org/fhir/StructureDefinition/Patient", json!([{ "id": "Patient.gender", "path": "Patient.gender", "min": 1, "fixedCode": "female" }]));
    let bundle = sd(
        "bun",
        "Bundle",
        "http://hl7.org/fhir/StructureDefinition/Bundle",
        json!([
            { "id": "Bundle.entry", "path": "Bundle.entry", "slicing": { "discriminator": [{ "type": "profile", "path": "resource" }], "rules": "closed" } },
            { "id": "Bundle.entry:women", "path": "Bundle.entry", "sliceName": "women", "min": 1 },
            { "id": "Bundle.entry:women.resource", "path": "Bundle.entry.resource", "type": [{ "code": "Patient", "profile": [format!("{T}female")] }] }
        ]),
    );
    let s = store_with(&[female, bundle]);
    let b = |g: &str| json!({ "resourceType": "Bundle", "type": "collection", "entry": [{ "fullUrl": "urn:uuid:0b8e4f4e-5c8f-4b5e-9f0e-2f4c1d2e3a4b", "resource": { "resourceType": "Patient", "gender": g } }] });
    let i = check(&s, "bun", &b("female"));
    assert!(!has_errors(&i), "{}", common::show(&i));
    let i = check(&s, "bun", &b("male"));
    assert!(has(&i, "CLOSED") && has(&i, "entry:women: minimum required = 1"), "{}", common::show(&i));
}

#[test]
fn extensions() {
    let ext = json!({
        "resourceType": "StructureDefinition", "id": "ext", "url": format!("{T}ext"), "name": "ext", "status": "active",
        "kind": "complex-type", "abstract": false, "context": [{ "type": "element", "expression": "Patient" }],
        "type": "Extension", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension", "derivation": "constraint",
        "differential": { "element": [
            { "id": "Extension.url", "path": "Extension.url", "fixedUri": format!("{T}ext") },
            { "id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1, "type": [{ "code": "string" }] }
        ] }
    });
    let s = store_with(&[ext]);
    let v = Validator::new(s.clone());
    let p = |e: Value| json!({ "resourceType": "Patient", "extension": [e] });
    let ok = v.validate(&p(json!({ "url": format!("{T}ext"), "valueString": "x" })), &ValidationOptions::default());
    assert!(!has_errors(&ok), "{}", common::show(&ok));
    let wrong_type = v.validate(&p(json!({ "url": format!("{T}ext"), "valueBoolean": true })), &ValidationOptions::default());
    assert!(has(&wrong_type, "is not allowed"), "{}", common::show(&wrong_type));
    let unknown = v.validate(&p(json!({ "url": "http://example.org/unknown", "valueString": "x" })), &ValidationOptions::default());
    assert!(has(&unknown, "could not be found"), "{}", common::show(&unknown));
    let ctx = v.validate(&json!({ "resourceType": "Observation", "status": "final", "code": { "text": "x" }, "extension": [{ "url": format!("{T}ext"), "valueString": "x" }] }), &ValidationOptions::default());
    assert!(has(&ctx, "not allowed to be used at this point"), "{}", common::show(&ctx));
    let both = v.validate(&p(json!({ "url": format!("{T}ext"), "valueString": "x", "extension": [{ "url": "a", "valueString": "b" }] })), &ValidationOptions::default());
    assert!(has(&both, "ext-1"), "{}", common::show(&both));
}

#[test]
fn bindings() {
    let cs = json!({ "resourceType": "CodeSystem", "url": "http://example.org/cs", "status": "active", "content": "complete",
        "concept": [{ "code": "a", "concept": [{ "code": "a1" }] }, { "code": "b" }] });
    let vs = json!({ "resourceType": "ValueSet", "url": "http://example.org/vs", "status": "active",
        "compose": { "include": [{ "system": "http://example.org/cs", "filter": [{ "property": "concept", "op": "is-a", "value": "a" }] }] } });
    let vs2 = json!({ "resourceType": "ValueSet", "url": "http://example.org/vs2", "status": "active",
        "compose": { "include": [{ "system": "http://example.org/unknown-cs" }] } });
    let prof = sd("bind", "Observation", "http://hl7.org/fhir/StructureDefinition/Observation", json!([
        { "id": "Observation.code", "path": "Observation.code", "binding": { "strength": "required", "valueSet": "http://example.org/vs" } },
        { "id": "Observation.method", "path": "Observation.method", "binding": { "strength": "required", "valueSet": "http://example.org/vs2" } }
    ]));
    let s = store_with(&[cs, vs, vs2, prof]);
    let o = |code: &str| json!({ "resourceType": "Observation", "status": "final", "code": { "coding": [{ "system": "http://example.org/cs", "code": code }] } });
    assert!(!has_errors(&check(&s, "bind", &o("a1"))));
    let i = check(&s, "bind", &o("b"));
    assert!(has(&i, "was not found in the value set"), "{}", common::show(&i));
    let mut m = o("a");
    m["method"] = json!({ "coding": [{ "system": "http://example.org/unknown-cs", "code": "zz" }] });
    let i = check(&s, "bind", &m);
    assert!(!has_errors(&i) && i.iter().any(|x| x.message.contains("could not be checked")), "{}", common::show(&i));
    // core required binding
    let v = Validator::new(s.clone());
    let i = v.validate(&json!({ "resourceType": "Observation", "status": "done", "code": { "text": "x" } }), &ValidationOptions::default());
    assert!(has(&i, "observation-status"), "{}", common::show(&i));
}

#[test]
fn primitive_formats_and_json_rules() {
    let v = Validator::new(common::store());
    let val = |j: Value| v.validate(&j, &ValidationOptions::default());
    let p = |extra: Value| {
        let mut b = json!({ "resourceType": "Patient" });
        for (k, x) in extra.as_object().unwrap() {
            b[k] = x.clone();
        }
        b
    };
    assert!(!has_errors(&val(p(json!({ "birthDate": "1980-02", "active": true, "_birthDate": { "extension": [{ "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1980-02-01T10:00:00+09:00" }] } })))));
    assert!(has(&val(p(json!({ "birthDate": "not a date" }))), "Not a valid date format"));
    assert!(has(&val(p(json!({ "deceasedDateTime": "2020-01-01T10:00:00" }))), "timezone"));
    assert!(has(&val(p(json!({ "active": "true" }))), "must be a boolean"));
    assert!(has(&val(p(json!({ "id": "bad id" }))), "Invalid Resource id"));
    assert!(has(&val(p(json!({ "multipleBirthInteger": 1.5 }))), "not a valid integer"));
    assert!(has_errors(&val(p(json!({ "gender": "" })))));
    assert!(has_errors(&val(p(json!({ "gender": null })))));
    assert!(has(&val(p(json!({ "name": [] }))), "Array cannot be empty"));
    assert!(has(&val(p(json!({ "name": [{}] }))), "empty objects"));
    assert!(has(&val(p(json!({ "foo": 1 }))), "Unrecognized property 'foo'"));
    assert!(has(&val(p(json!({ "name": { "family": "x" } }))), "must be a JSON array"));
    assert!(has(&val(p(json!({ "gender": ["male"] }))), "must not be an array"));
    assert!(has_errors(&val(json!({ "name": "x" }))));
    assert!(has(&val(json!({ "resourceType": "Nonsense" })), "Unknown resource type"));
    assert!(has(&val(p(json!({ "photo": [{ "data": "AAA=", "size": 5 }] }))), "does not match actual attachment size 2"));
    assert!(has(&val(p(json!({ "photo": [{ "data": "A.A=" }] }))), "not valid base64"));
    let bad_json = v.validate_json(b"{\"resourceType\": \"Patient\", // comment\n}", &ValidationOptions::default());
    assert!(has_errors(&bad_json));
}

#[test]
fn bundle_rules_and_references() {
    let v = Validator::new(common::store());
    let b = json!({ "resourceType": "Bundle", "type": "collection", "entry": [
        { "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": { "resourceType": "Patient", "id": "p" } },
        { "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": { "resourceType": "Patient", "id": "q" } },
        { "fullUrl": "Patient/r", "resource": { "resourceType": "Observation", "status": "final", "code": { "text": "x" },
          "subject": { "reference": "#nope" }, "performer": [{ "reference": "Observation/x" }] } }
    ] });
    let i = v.validate(&b, &ValidationOptions::default());
    assert!(has(&i, "Duplicate fullUrl"), "{}", common::show(&i));
    assert!(has(&i, "must be an absolute URL"));
    assert!(has(&i, "Unable to resolve resource with reference '#nope'"));
    assert!(has(&i, "is not a valid Target"), "{}", common::show(&i));
    let e = i.iter().find(|x| x.message.contains("#nope")).unwrap();
    assert_eq!(e.expression, "Bundle.entry[2].resource.subject");
    // document: first entry must be a Composition (bdl-11 via FHIRPath)
    let d = json!({ "resourceType": "Bundle", "type": "document", "identifier": { "system": "urn:x", "value": "1" }, "timestamp": "2024-01-01T00:00:00Z",
        "entry": [{ "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": { "resourceType": "Patient" } }] });
    let i = v.validate(&d, &ValidationOptions::default());
    assert!(i.iter().any(|x| x.rule.as_deref() == Some("bdl-11")), "{}", common::show(&i));
}

#[test]
fn operation_outcome() {
    let oo = fhir_profiles::to_operation_outcome(&[]);
    assert_eq!(oo["issue"][0]["severity"], "information");
    let oo = fhir_profiles::to_operation_outcome(&[Issue::error("required", "Patient.name", "missing")]);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.name");
    assert_eq!(oo["issue"][0]["code"], "required");
}

#[test]
fn package_precedence_and_versions() {
    let shared = common::shared();
    let both = PackageStore::load(&[shared.join("fhir-packages"), shared.join("fhir-packages-echeckup")]).unwrap();
    let names: Vec<&str> = both.packages().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.first(), Some(&"hl7.fhir.r4.core"), "dependencies first: {names:?}");
    assert_eq!(names.last(), Some(&"jp-eCheckupReport.r4"), "{names:?}");
    // the doc-typecodes CodeSystem is redefined by eCheckup: the later package wins in that set
    let url = "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes";
    assert_eq!(both.package_of(url).unwrap().name, "jp-eCheckupReport.r4");
    assert_eq!(common::store().package_of(url).unwrap().name, "jp-eCSCLINS.r4");
    // |version resolution
    let st = common::store();
    assert!(st.resolve("http://hl7.org/fhir/StructureDefinition/Patient|4.0.1").is_some());
    assert!(st.resolve("http://hl7.org/fhir/StructureDefinition/Patient|4.0").is_some(), "version prefix");
    assert!(st.resolve("http://hl7.org/fhir/StructureDefinition/Patient|3.0.2").is_none());
    // the core SearchParameters and FHIRPath model are exposed
    assert!(st.search_parameters().count() > 1000);
    assert!(st.fhirpath_model().is_resource_type("Patient"));
}

#[test]
fn validate_operation_helper() {
    let v = Validator::new(common::store());
    let body = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "resource", "resource": { "resourceType": "Patient", "gender": "x" } },
        { "name": "profile", "valueUri": "http://hl7.org/fhir/StructureDefinition/Patient" } ] });
    let (oo, ok) = fhir_profiles::validate_operation(&v, &body, None, None);
    assert!(!ok && oo["resourceType"] == "OperationOutcome", "{oo}");
    let (oo, ok) = fhir_profiles::validate_operation(&v, &json!({ "resourceType": "Patient" }), Some("Patient"), None);
    assert!(ok, "{oo}");
    assert_eq!(oo["issue"][0]["severity"], "information");
    let (_, ok) = fhir_profiles::validate_operation(&v, &json!({ "resourceType": "Patient" }), Some("Observation"), None);
    assert!(!ok);
    assert!(common::store().precompile(&["http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_CLINS"]).is_empty());
}

#[test]
fn shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PackageStore>();
    assert_send_sync::<Validator>();
    let v = Validator::new(common::store());
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let v = v.clone();
            std::thread::spawn(move || {
                let p = json!({ "resourceType": "Patient", "gender": "female" });
                v.validate(&p, &ValidationOptions::default())
            })
        })
        .collect();
    for h in handles {
        assert!(!has_errors(&h.join().unwrap()));
    }
}
