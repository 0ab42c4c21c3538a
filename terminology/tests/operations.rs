//! The terminology operations against the FHIR R4 definitions of $lookup, $validate-code,
//! $expand and $translate, on real package content.

mod common;
use common::*;
use serde_json::json;
use terminology::{Snapshot, TerminologyService, TranslateRequest, pairs_from_parameters};

const SIMPLE_OBS_CAT: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS";
const MEDIS_URL: &str = "http://medis.or.jp/CodeSystem/master-disease-exCode";
const MEDIS_OID: &str = "urn:oid:1.2.392.200119.4.101.6";
const JFAGY_FOOD: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS";
const ALLERGY_VS: &str = "http://jpfhir.jp/fhir/core/ValueSet/JP_AllergyIntolerance_VS";
const CORE_LAB: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";

fn small() -> TerminologyService {
    let mut s = Snapshot::empty();
    s.add_resource(
        json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "version": "1", "name": "ExampleCS", "content": "complete", "caseSensitive": true,
            "property": [{"code": "status", "type": "code"}],
            "concept": [
                {"code": "a", "display": "Alpha", "definition": "the first", "designation": [{"language": "ja", "value": "アルファ"}],
                 "concept": [{"code": "a1", "display": "Alpha one"}, {"code": "a2", "display": "Alpha two", "property": [{"code": "status", "valueCode": "retired"}]}]},
                {"code": "b", "display": "Beta"}]}),
        "test",
    )
    .unwrap();
    s.add_resource(json!({"resourceType": "CodeSystem", "url": "http://example.org/cs", "version": "2", "name": "ExampleCS", "content": "complete", "concept": [{"code": "c", "display": "Gamma"}]}), "test").unwrap();
    s.add_resource(json!({"resourceType": "CodeSystem", "url": "http://example.org/np", "content": "not-present"}), "test").unwrap();
    s.add_resource(json!({"resourceType": "CodeSystem", "url": "http://example.org/frag", "content": "fragment", "concept": [{"code": "x", "display": "Ex"}]}), "test").unwrap();
    s.add_resource(json!({"resourceType": "ValueSet", "url": "http://example.org/vs-all", "compose": {"include": [{"system": "http://example.org/cs", "version": "1"}]}}), "test").unwrap();
    s.add_resource(json!({"resourceType": "ValueSet", "url": "http://example.org/vs-isa", "compose": {"include": [{"system": "http://example.org/cs", "version": "1", "filter": [{"property": "concept", "op": "is-a", "value": "a"}]}], "exclude": [{"system": "http://example.org/cs", "concept": [{"code": "a2"}]}]}}), "test").unwrap();
    s.add_resource(json!({"resourceType": "ValueSet", "url": "http://example.org/vs-np", "compose": {"include": [{"system": "http://example.org/np"}]}}), "test").unwrap();
    s.add_resource(json!({"resourceType": "ConceptMap", "url": "http://example.org/cm", "version": "3", "group": [{"source": "http://example.org/cs", "target": "http://example.org/other",
        "element": [{"code": "a", "target": [{"code": "A", "display": "Big A", "equivalence": "equivalent"}]}, {"code": "b", "target": [{"equivalence": "unmatched"}]}]}]}), "test").unwrap();
    TerminologyService::new(s)
}

#[test]
fn lookup_returns_name_display_designations_properties() {
    let t = small();
    let p = t.lookup("http://example.org/cs", "a", Some("1"), None).unwrap();
    assert_eq!(p["resourceType"], "Parameters");
    assert_eq!(param(&p, "name").unwrap(), "ExampleCS");
    assert_eq!(param(&p, "version").unwrap(), "1");
    assert_eq!(param(&p, "display").unwrap(), "Alpha");
    let d = &params(&p, "designation")[0];
    assert_eq!(part(d, "language").unwrap(), "ja");
    assert_eq!(part(d, "value").unwrap(), "アルファ");
    let props: Vec<(String, String)> = params(&p, "property").iter().map(|x| (part(x, "code").unwrap().as_str().unwrap().to_string(), part(x, "value").unwrap().as_str().unwrap().to_string())).collect();
    assert!(props.contains(&("child".into(), "a1".into())));
    assert!(props.contains(&("definition".into(), "the first".into())));
    // displayLanguage picks the designation
    let p = t.lookup("http://example.org/cs", "a", Some("1"), Some("ja")).unwrap();
    assert_eq!(param(&p, "display").unwrap(), "アルファ");
    // parent of a child
    let p = t.lookup("http://example.org/cs", "a1", Some("1"), None).unwrap();
    assert!(params(&p, "property").iter().any(|x| part(x, "code").unwrap() == "parent" && part(x, "value").unwrap() == "a"));
}

#[test]
fn lookup_unknown_code_or_system_is_an_error_outcome() {
    let t = small();
    let e = t.lookup("http://example.org/cs", "zz", None, None).unwrap_err();
    assert_eq!(e.status, 404);
    assert_eq!(e.outcome["resourceType"], "OperationOutcome");
    assert_eq!(e.outcome["issue"][0]["code"], "not-found");
    assert!(e.message().contains("zz"));
    let e = t.lookup("http://example.org/nope", "a", None, None).unwrap_err();
    assert!(e.message().contains("Unknown code system"));
    let e = t.lookup("http://example.org/np", "a", None, None).unwrap_err();
    assert!(e.message().contains("not-present"));
}

#[test]
fn versions_side_by_side() {
    let t = small();
    // default = last loaded (2), explicit version 1 still there
    assert_eq!(param(&t.lookup("http://example.org/cs", "c", None, None).unwrap(), "version").unwrap(), "2");
    assert!(t.lookup("http://example.org/cs", "c", Some("1"), None).is_err());
    assert!(t.lookup("http://example.org/cs", "a", Some("1"), None).is_ok());
    let p = t.validate_code_cs("http://example.org/cs", "a", Some("1"), None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    let p = t.validate_code_cs("http://example.org/cs", "a", Some("2"), None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
}

#[test]
fn validate_code_codesystem() {
    let t = small();
    let p = t.validate_code_cs("http://example.org/cs", "b", Some("1"), Some("Beta")).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert_eq!(param(&p, "display").unwrap(), "Beta");
    assert!(param(&p, "message").is_none());
    // wrong display: still valid, with a warning message (R4 $validate-code: message carries hints when result is true)
    let p = t.validate_code_cs("http://example.org/cs", "b", Some("1"), Some("Bravo")).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("Wrong display"));
    // unknown code
    let p = t.validate_code_cs("http://example.org/cs", "q", Some("1"), None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("Unknown code 'q'"));
    // inactive concept: valid, with a message
    let p = t.validate_code_cs("http://example.org/cs", "a2", Some("1"), None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("inactive"));
}

#[test]
fn content_not_present_and_fragment_cannot_be_checked() {
    let t = small();
    let p = t.validate_code_cs("http://example.org/np", "anything", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("cannot be checked"));
    assert_eq!(param(&p, "x-cannot-decide").unwrap(), true);
    let p = t.validate_code_cs("http://example.org/frag", "x", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    let p = t.validate_code_cs("http://example.org/frag", "y", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    assert_eq!(param(&p, "x-cannot-decide").unwrap(), true);
    let p = t.validate_code_vs("http://example.org/vs-np", Some("http://example.org/np"), "z", None).unwrap();
    assert_eq!(param(&p, "x-cannot-decide").unwrap(), true);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("cannot be checked"));
    // the validator's view
    use fhir_profiles::{Membership, Terminology};
    assert!(matches!(t.validate_code("http://example.org/vs-np", Some("http://example.org/np"), "z"), Membership::Unknown(_)));
    // unknown system
    let p = t.validate_code_cs("http://example.org/unknown", "z", None, None).unwrap();
    assert_eq!(param(&p, "x-caused-by-unknown-system").unwrap(), "http://example.org/unknown");
}

#[test]
fn validate_code_valueset() {
    let t = small();
    let p = t.validate_code_vs("http://example.org/vs-isa", Some("http://example.org/cs"), "a1", None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert_eq!(param(&p, "display").unwrap(), "Alpha one");
    // excluded
    let p = t.validate_code_vs("http://example.org/vs-isa", Some("http://example.org/cs"), "a2", None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    // not in the filter
    let p = t.validate_code_vs("http://example.org/vs-isa", Some("http://example.org/cs"), "b", None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("not in the value set"));
    // display mismatch: true + warning
    let p = t.validate_code_vs("http://example.org/vs-all", Some("http://example.org/cs"), "b", Some("Nope")).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert!(param(&p, "message").unwrap().as_str().unwrap().contains("Wrong display"));
    // unknown value set: error
    assert_eq!(t.validate_code_vs("http://example.org/none", None, "a", None).unwrap_err().status, 404);
}

#[test]
fn expand_with_filter_count_offset_and_total() {
    let t = small();
    let v = t.expand("http://example.org/vs-all", None, None, None).unwrap();
    assert_eq!(v["resourceType"], "ValueSet");
    assert_eq!(v["expansion"]["total"], 4);
    assert!(v["expansion"]["timestamp"].is_string());
    let codes: Vec<&str> = v["expansion"]["contains"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["a", "a1", "a2", "b"]);
    assert_eq!(v["expansion"]["contains"][2]["inactive"], true);
    let v = t.expand("http://example.org/vs-all", None, Some(2), Some(1)).unwrap();
    assert_eq!(v["expansion"]["total"], 4);
    assert_eq!(v["expansion"]["offset"], 1);
    let codes: Vec<&str> = v["expansion"]["contains"].as_array().unwrap().iter().map(|c| c["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["a1", "a2"]);
    let v = t.expand("http://example.org/vs-all", Some("alpha"), None, None).unwrap();
    assert_eq!(v["expansion"]["total"], 3);
    let v = t.expand("http://example.org/vs-isa", None, None, None).unwrap();
    assert_eq!(v["expansion"]["total"], 2);
    // not enumerable
    let e = t.expand("http://example.org/vs-np", None, None, None).unwrap_err();
    assert_eq!(e.outcome["issue"][0]["code"], "not-supported");
}

#[test]
fn expand_refuses_too_large() {
    let t = small();
    let mut s = (*t.snapshot()).clone();
    s.expansion_limit = 3;
    let e = s.expand("http://example.org/vs-all", None, None, None).unwrap_err();
    assert_eq!(e.outcome["issue"][0]["code"], "too-costly");
    // the real JFAGY allergy value set (~29,000 codes) pages fine under the default limit
    let t = service();
    let v = t.expand(ALLERGY_VS, None, Some(5), Some(10)).unwrap();
    assert!(v["expansion"]["total"].as_u64().unwrap() > 25_000);
    assert_eq!(v["expansion"]["contains"].as_array().unwrap().len(), 5);
    // LOINC content is not loaded: infinite for us, refused
    let mut s = (*t.snapshot()).clone();
    s.add_resource(json!({"resourceType": "ValueSet", "url": "http://example.org/all-loinc", "compose": {"include": [{"system": "http://loinc.org"}]}}), "t").unwrap();
    let e = s.expand("http://example.org/all-loinc", None, Some(10), None).unwrap_err();
    assert!(e.message().contains("LOINC"));
}

#[test]
fn translate_with_equivalence() {
    let t = small();
    let req = TranslateRequest { system: Some("http://example.org/cs".into()), code: Some("a".into()), ..Default::default() };
    let p = t.translate(&req).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    let m = &params(&p, "match")[0];
    assert_eq!(part(m, "equivalence").unwrap(), "equivalent");
    assert_eq!(part(m, "concept").unwrap()["code"], "A");
    assert_eq!(part(m, "concept").unwrap()["system"], "http://example.org/other");
    assert_eq!(part(m, "source").unwrap(), "http://example.org/cm|3");
    // explicit unmatched: result false (R4: result is true only with a match that is not unmatched/disjoint)
    let req = TranslateRequest { url: Some("http://example.org/cm".into()), system: Some("http://example.org/cs".into()), code: Some("b".into()), ..Default::default() };
    let p = t.translate(&req).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    assert_eq!(part(params(&p, "match")[0], "equivalence").unwrap(), "unmatched");
    // no mapping
    let req = TranslateRequest { system: Some("http://example.org/cs".into()), code: Some("zz".into()), ..Default::default() };
    let p = t.translate(&req).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    assert!(param(&p, "message").is_some());
    // reverse
    let req = TranslateRequest { system: Some("http://example.org/other".into()), code: Some("A".into()), reverse: true, ..Default::default() };
    let p = t.translate(&req).unwrap();
    assert_eq!(part(params(&p, "match")[0], "concept").unwrap()["code"], "a");
    // unknown map
    let req = TranslateRequest { url: Some("http://example.org/none".into()), system: Some("s".into()), code: Some("c".into()), ..Default::default() };
    assert_eq!(t.translate(&req).unwrap_err().status, 404);
}

#[test]
fn translate_with_package_concept_map() {
    // hl7.fhir.r4.core ConceptMap cm-administrative-gender-v2 (FHIR gender -> HL7 v2 table 0001)
    let t = service();
    let p = t.run_operation("ConceptMap/$translate", &[("url", "http://hl7.org/fhir/ConceptMap/cm-administrative-gender-v2"), ("system", "http://hl7.org/fhir/administrative-gender"), ("code", "female")]).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert_eq!(part(params(&p, "match")[0], "concept").unwrap()["code"], "F");
}

#[test]
fn real_package_content() {
    let t = service();
    // JP-Core CodeSystem
    let p = t.validate_code_cs(SIMPLE_OBS_CAT, "laboratory", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true, "{p}");
    let p = t.validate_code_cs(SIMPLE_OBS_CAT, "no-such-category", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    // JFAGY allergen, by code system and through the required CLINS value set
    let p = t.validate_code_cs(JFAGY_FOOD, "J9FA15000000", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert_eq!(param(&p, "display").unwrap(), "小麦");
    let p = t.validate_code_vs(ALLERGY_VS, Some(JFAGY_FOOD), "J9FA15000000", None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    let p = t.validate_code_vs(ALLERGY_VS, Some(JFAGY_FOOD), "J9FZZZZZZZZZ", None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), false);
    // MEDIS exchange code, under the OID (as in the file) and the URL alias used by CLINS data
    for sys in [MEDIS_OID, MEDIS_URL] {
        let p = t.validate_code_cs(sys, "A006", None, Some("結節性肝硬変")).unwrap();
        assert_eq!(param(&p, "result").unwrap(), true, "{sys}");
        assert!(param(&p, "message").is_none());
    }
    // case-insensitive (caseSensitive false)
    let p = t.validate_code_cs(MEDIS_URL, "a006", None, None).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    // hierarchy of the CLINS core-lab code system: a 17-digit JLAC10 code is a child of its item
    let p = t.lookup(CORE_LAB, "3B035000002327201", None, None).unwrap();
    assert!(params(&p, "property").iter().any(|x| part(x, "code").unwrap() == "parent" && part(x, "value").unwrap() == "AST"));
    // the CLINS LOINC subset (2 codes under the real LOINC URL) is ignored: LOINC cannot be checked here
    let p = t.validate_code_cs("http://loinc.org", "2345-7", None, None).unwrap();
    assert_eq!(param(&p, "x-cannot-decide").unwrap(), true);
    // a CLINS value set with descendent-of filters (one per lab item)
    let snap = t.snapshot();
    let vs_url = fhir_profiles::PackageStore::load_with_rules(&[shared().join("fhir-packages")], None)
        .unwrap()
        .urls_of_type("ValueSet")
        .into_iter()
        .find(|u| u.contains("AST") && u.contains("clins"));
    if let Some(u) = vs_url {
        let p = snap.validate_code_vs(&u, Some(CORE_LAB), "3B035000002327201", None).unwrap();
        assert_eq!(param(&p, "result").unwrap(), true, "{u}: {p}");
    }
    // core FHIR value set expansion
    let v = t.expand("http://hl7.org/fhir/ValueSet/administrative-gender", None, None, None).unwrap();
    assert_eq!(v["expansion"]["total"], 4);
}

#[test]
fn validator_binding_checks_use_the_service() {
    use fhir_profiles::{Membership, Terminology};
    let t = service();
    assert_eq!(t.validate_code(ALLERGY_VS, Some(JFAGY_FOOD), "J9FA15000000"), Membership::Member);
    assert_eq!(t.validate_code(ALLERGY_VS, Some(JFAGY_FOOD), "nope"), Membership::NotMember);
    assert!(matches!(t.validate_code("http://example.org/missing-vs", None, "x"), Membership::Unknown(_)));
    assert!(t.value_set_name(ALLERGY_VS).is_some());
}

#[test]
fn operations_from_pairs_and_parameters() {
    let t = small();
    let p = t.run_operation("CodeSystem/$lookup", &[("system", "http://example.org/cs"), ("code", "b"), ("version", "1")]).unwrap();
    assert_eq!(param(&p, "display").unwrap(), "Beta");
    let p = t.run_operation("ValueSet/$validate-code", &[("url", "http://example.org/vs-all"), ("system", "http://example.org/cs"), ("code", "b")]).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    let v = t.run_operation("ValueSet/$expand", &[("url", "http://example.org/vs-all"), ("count", "1"), ("offset", "3")]).unwrap();
    assert_eq!(v["expansion"]["contains"][0]["code"], "b");
    assert_eq!(t.run_operation("ValueSet/$expand", &[("url", "http://example.org/vs-all"), ("count", "x")]).unwrap_err().status, 400);
    let input = json!({"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": "http://example.org/cm"}, {"name": "coding", "valueCoding": {"system": "http://example.org/cs", "code": "a"}}]});
    let pairs = pairs_from_parameters(&input);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let p = t.run_operation("ConceptMap/$translate", &pairs).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    assert_eq!(t.run_operation("CodeSystem/$subsumes", &[]).unwrap_err().status, 400);
}

#[test]
fn database_resources_swap_in_without_disturbing_readers() {
    let t = small();
    let before = t.snapshot();
    t.add_resource(json!({"resourceType": "CodeSystem", "url": "http://example.org/db", "content": "complete", "concept": [{"code": "k"}]})).unwrap();
    assert_eq!(param(&t.validate_code_cs("http://example.org/db", "k", None, None).unwrap(), "result").unwrap(), true);
    // an old snapshot still answers as before
    assert_eq!(param(&before.validate_code_cs("http://example.org/db", "k", None, None).unwrap(), "x-cannot-decide").unwrap(), true);
    assert!(t.add_resource(json!({"resourceType": "Patient"})).is_err());
}

#[test]
fn profile_validator_uses_the_service_for_bindings() {
    use fhir_profiles::{ValidationOptions, Validator};
    let pk = shared().join("fhir-packages");
    let store = fhir_profiles::PackageStore::load_with_rules(std::slice::from_ref(&pk), None).unwrap();
    // Patient.gender has a required binding to administrative-gender. The service gets its own
    // (narrower) version of that value set: the validator must follow the service, not the package.
    let mut snap = (*service().snapshot()).clone();
    snap.add_resource(
        json!({"resourceType": "ValueSet", "url": "http://hl7.org/fhir/ValueSet/administrative-gender", "version": "4.0.1",
            "compose": {"include": [{"system": "http://hl7.org/fhir/administrative-gender", "concept": [{"code": "female"}]}]}}),
        "test",
    )
    .unwrap();
    let term = std::sync::Arc::new(TerminologyService::new(snap));
    let v = Validator::with_terminology(store, term);
    let ok = v.validate(&json!({"resourceType": "Patient", "gender": "female"}), &ValidationOptions::default());
    assert!(!ok.iter().any(|i| i.expression.contains("gender")), "{ok:?}");
    let bad = v.validate(&json!({"resourceType": "Patient", "gender": "male"}), &ValidationOptions::default());
    assert!(bad.iter().any(|i| i.expression.contains("gender")), "{bad:?}");
}
