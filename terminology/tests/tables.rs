//! Mapping tables: the CSV checker, CSV <-> ConceptMap, diff, the shipped tables, the mapper on
//! ingestion, the unmapped queue and the maintainer workflow (upload, diff, activate, rollback, audit, re-map).

mod common;
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use terminology::{CheckOptions, EXT_MAPPED_BY, MappingTable, TableRegistry, TranslateRequest, UnmappedQueue, diff, load_tables_dir};

const HEADER: &str = "# name: t1\n# version: 1\n# effective-date: 2026-01-01\n# source-system: http://example.org/local\n# target-system: http://loinc.org\n# publisher: test\nsource_code,source_display,target_code,target_display,equivalence,comment\n";
const CORE_LAB: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";
const LOCAL: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS";

fn parse(body: &str) -> Result<MappingTable, terminology::TableReport> {
    MappingTable::parse_csv(&format!("{HEADER}{body}"), &CheckOptions::default())
}

fn problem_lines(r: &terminology::TableReport) -> Vec<usize> {
    r.problems.iter().map(|p| p.line).collect()
}

#[test]
fn good_table_parses() {
    let t = parse("L1,local one,1920-8,AST,equivalent,\n\"L,2\",\"quoted \"\"x\"\"\",1742-6,ALT,wider,a comment\nL3,,,,unmatched,no target\n").unwrap();
    assert_eq!(t.rows.len(), 3);
    assert_eq!(t.rows[1].source_code, "L,2");
    assert_eq!(t.rows[1].source_display, "quoted \"x\"");
    assert_eq!(t.meta.name, "t1");
    assert_eq!(t.url(), "http://jpfhir.jp/fhir/gateway/ConceptMap/t1");
}

#[test]
fn unknown_equivalence_is_refused_with_the_row() {
    let r = parse("L1,,1920-8,,equivalent,\nL2,,1742-6,,same-as,\n").unwrap_err();
    assert_eq!(problem_lines(&r), [9]);
    assert_eq!(r.problems[0].row, Some(2));
    assert!(r.problems[0].message.contains("unknown equivalence 'same-as'"));
    assert!(r.to_string().contains("line 9"));
}

#[test]
fn duplicate_source_with_conflicting_targets_is_refused() {
    let r = parse("L1,,1920-8,,equivalent,\nL2,,1742-6,,equivalent,\nL1,,2345-7,,equivalent,\n").unwrap_err();
    assert_eq!(problem_lines(&r), [10]);
    assert!(r.problems[0].message.contains("line 8"), "{}", r.problems[0].message);
    // same source and target with another equivalence
    let r = parse("L1,,1920-8,,equivalent,\nL1,,1920-8,,wider,\n").unwrap_err();
    assert!(r.problems[0].message.contains("conflicting"));
    // exact duplicate
    let r = parse("L1,,1920-8,,equivalent,\nL1,,1920-8,,equivalent,\n").unwrap_err();
    assert!(r.problems[0].message.contains("duplicate row"));
    // one source split into several narrower targets is fine
    assert!(parse("L1,,A,,narrower,\nL1,,B,,narrower,\n").is_ok());
}

#[test]
fn unknown_or_blank_systems_are_refused() {
    let text = HEADER.replace("http://example.org/local", "").replace("http://loinc.org", "loinc");
    let r = MappingTable::parse_csv(&format!("{text}L1,,1,,equivalent,\n"), &CheckOptions::default()).unwrap_err();
    let fields: Vec<&str> = r.problems.iter().filter_map(|p| p.field.as_deref()).collect();
    assert!(fields.contains(&"source-system") && fields.contains(&"target-system"), "{r}");
    assert_eq!(r.problems.iter().find(|p| p.field.as_deref() == Some("target-system")).unwrap().line, 5);
    // known-system check through the service
    let t = service();
    let snap = t.snapshot();
    let known = |s: &str| snap.knows_system(s);
    let opts = CheckOptions { known_system: Some(&known), ..Default::default() };
    let r = MappingTable::parse_csv(&format!("{HEADER}L1,,1920-8,,equivalent,\n"), &opts).unwrap_err();
    assert!(r.problems[0].message.contains("unknown code system 'http://example.org/local'"));
    let ok = HEADER.replace("http://example.org/local", LOCAL);
    assert!(MappingTable::parse_csv(&format!("{ok}L1,,1920-8,,equivalent,\n"), &opts).is_ok());
}

#[test]
fn malformed_csv_and_wrong_column_counts_are_refused() {
    let r = parse("L1,,1920-8,,equivalent,\n\"L2,,1742-6,,equivalent,\nL3,1920-8,equivalent\nL4,,x\"y,,equivalent,\n").unwrap_err();
    assert_eq!(problem_lines(&r), [9, 10, 11]);
    assert!(r.problems[0].message.contains("malformed CSV"));
    assert!(r.problems[1].message.contains("wrong number of columns: expected 6, found 3"));
    assert!(r.problems[2].message.contains("stray double quote"));
    // bad header, bad date, missing metadata, blank target for a mapping row
    let r = MappingTable::parse_csv("# name: x\n# version: 1\n# effective-date: 2026-13-40\n# colour: red\nsource,target\nL1,,,,equivalent,\n", &CheckOptions::default()).unwrap_err();
    let msgs = r.to_string();
    for needle in ["unknown metadata key 'colour'", "column header must be", "not a valid YYYY-MM-DD", "'source-system' is missing", "'publisher' is missing", "target_code is blank"] {
        assert!(msgs.contains(needle), "{needle} in {msgs}");
    }
    let oo = r.to_operation_outcome();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"].as_array().unwrap().len(), r.problems.len());
}

#[test]
fn csv_concept_map_round_trip() {
    let t = parse("L1,local one,1920-8,AST,equivalent,\nL2,two,1742-6,ALT,wider,note, with comma\n").unwrap_err();
    let _ = t; // 7 columns: refused
    let t = parse("L1,local one,1920-8,AST,equivalent,\nL2,two,1742-6,ALT,wider,\"note, with comma\"\nL3,,A,,narrower,\nL3,,B,,narrower,\n").unwrap();
    let cm = t.to_concept_map();
    assert_eq!(cm["resourceType"], "ConceptMap");
    assert_eq!(cm["version"], "1");
    assert_eq!(cm["group"][0]["source"], "http://example.org/local");
    assert_eq!(cm["group"][0]["element"].as_array().unwrap().len(), 3);
    assert_eq!(cm["group"][0]["element"][2]["target"].as_array().unwrap().len(), 2);
    let back = MappingTable::from_concept_map(&cm, &CheckOptions::default()).unwrap();
    assert_eq!(back.meta, t.meta);
    let strip = |t: &MappingTable| t.rows.iter().map(|r| (r.source_code.clone(), r.source_display.clone(), r.target_code.clone(), r.target_display.clone(), r.equivalence, r.comment.clone())).collect::<Vec<_>>();
    assert_eq!(strip(&back), strip(&t));
    let again = MappingTable::parse_csv(&back.to_csv(), &CheckOptions::default()).unwrap();
    assert_eq!(strip(&again), strip(&t));
    // a ConceptMap with a bad equivalence is refused with the element named
    let mut bad = cm.clone();
    bad["group"][0]["element"][1]["target"][0]["equivalence"] = json!("similar");
    let r = MappingTable::from_concept_map(&bad, &CheckOptions::default()).unwrap_err();
    assert!(r.problems[0].field.as_deref().unwrap().contains("element[1]"));
}

#[test]
fn diff_reports_added_removed_changed() {
    let old = parse("L1,,1920-8,,equivalent,\nL2,,1742-6,,equivalent,\nL3,,2345-7,,equivalent,\n").unwrap();
    let new = MappingTable::parse_csv(&format!("{}L1,,1920-8,,equivalent,\nL2,,1742-6,,wider,\nL4,,718-7,,equivalent,\n", HEADER.replace("# version: 1", "# version: 2")), &CheckOptions::default()).unwrap();
    let d = diff(&old, &new);
    assert_eq!(d.metadata, [("version".to_string(), "1".to_string(), "2".to_string())]);
    assert_eq!(d.added.iter().map(|r| r.source_code.as_str()).collect::<Vec<_>>(), ["L4"]);
    assert_eq!(d.removed.iter().map(|r| r.source_code.as_str()).collect::<Vec<_>>(), ["L3"]);
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].source_code, "L2");
    assert!(diff(&old, &old).is_empty());
}

fn shipped() -> Vec<MappingTable> {
    let t = service();
    let snap = t.snapshot();
    let known = |s: &str| snap.knows_system(s);
    load_tables_dir(&root().join("mapping-tables"), &CheckOptions { known_system: Some(&known), ..Default::default() }).unwrap_or_else(|e| panic!("{:?}", e.iter().map(|(p, r)| format!("{}: {r}", p.display())).collect::<Vec<_>>()))
}

#[test]
fn shipped_tables_pass_the_checker_and_their_sources_exist() {
    let tables = shipped();
    let names: Vec<&str> = tables.iter().map(|t| t.meta.name.as_str()).collect();
    for n in ["jlac10-corelab-to-loinc", "jlac10-infection-to-loinc", "mhlw-icd10-to-icd10", "yj-to-rxnorm", "1318814790-lab-to-jlac10"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    // every JLAC10 source code of the core-lab table is a code of the package CodeSystem
    let t = service();
    let core = tables.iter().find(|t| t.meta.name == "jlac10-corelab-to-loinc").unwrap();
    for r in &core.rows {
        let p = t.validate_code_cs(CORE_LAB, &r.source_code, None, None).unwrap();
        assert_eq!(param(&p, "result").unwrap(), true, "{}", r.source_code);
    }
    let local = tables.iter().find(|t| t.meta.institution.is_some()).unwrap();
    assert_eq!(local.meta.institution.as_deref(), Some("1318814790"));
}

fn registry_with_shipped() -> TableRegistry {
    let mut reg = TableRegistry::new();
    for t in shipped() {
        let (n, v) = (t.meta.name.clone(), t.meta.version.clone());
        reg.upload(t, "setup").unwrap();
        reg.activate(&n, &v, "2026-11-22", "setup").unwrap();
    }
    reg
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "contained": [{"resourceType": "Specimen", "id": "sp", "type": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS", "code": "023"}]}}],
        "meta": {"tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": "LTS"}]},
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory"}]}],
        "code": {"coding": [
            {"system": LOCAL, "code": "10001", "display": "AST(GOT)"},
            {"system": CORE_LAB, "code": "3B035000002327201", "display": "AST"}
        ], "text": "AST"},
        "valueQuantity": {"value": 25, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}
    })
}

#[test]
fn mapper_adds_codings_and_never_changes_originals() {
    let reg = registry_with_shipped();
    let t = service();
    let mapper = reg.mapper_at("2026-11-22", t.snapshot().systems());
    let original = observation();
    let mut obs = original.clone();
    let rep = mapper.map_resource(&mut obs, "1318814790");
    let codings = obs["code"]["coding"].as_array().unwrap();
    // originals untouched, in place
    assert_eq!(codings[0], original["code"]["coding"][0]);
    assert_eq!(codings[1], original["code"]["coding"][1]);
    // local -> JLAC10 (institution table), core-lab -> LOINC
    let added: Vec<(&str, &str)> = codings[2..].iter().map(|c| (c["system"].as_str().unwrap(), c["code"].as_str().unwrap())).collect();
    assert!(added.contains(&("http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "3B035000002327201")), "{added:?}");
    assert!(added.contains(&("http://loinc.org", "1920-8")), "{added:?}");
    for c in &codings[2..] {
        assert_eq!(c["userSelected"], false);
        let by = c["extension"].as_array().unwrap().iter().find(|e| e["url"] == EXT_MAPPED_BY).unwrap();
        assert!(by["valueCanonical"].as_str().unwrap().starts_with("http://jpfhir.jp/fhir/gateway/ConceptMap/"));
        assert!(by["valueCanonical"].as_str().unwrap().ends_with("|1.0.0"));
    }
    assert!(rep.mapped.len() >= 2);
    // everything else unchanged
    let mut rest = obs.clone();
    rest["code"] = original["code"].clone();
    assert_eq!(rest, original);
    // idempotent: mapping again adds nothing
    let again = obs.clone();
    let rep2 = mapper.map_resource(&mut obs, "1318814790");
    assert_eq!(obs, again);
    assert!(rep2.mapped.is_empty());
}

#[test]
fn institution_tables_apply_only_to_their_institution_and_unmapped_is_reported() {
    let reg = registry_with_shipped();
    let t = service();
    let mapper = reg.mapper_at("2026-11-22", t.snapshot().systems());
    let mut obs = observation();
    let rep = mapper.map_resource(&mut obs, "2710000001");
    // the local code of another institution is not mapped, and is queued
    assert_eq!(rep.unmapped, [(LOCAL.to_string(), "10001".to_string())]);
    assert!(obs["code"]["coding"].as_array().unwrap().iter().any(|c| c["code"] == "1920-8"));
    let q = UnmappedQueue::new();
    q.record("2710000001", &rep);
    q.record("2710000001", &rep);
    let e = q.entries(Some("2710000001"), None);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].count, 2);
    assert_eq!(q.summary(), [("2710000001".to_string(), LOCAL.to_string(), 1, 2)]);
    // a contained resource and a bare Coding are visited too
    let mut mapped = json!({"resourceType": "Condition", "contained": [{"resourceType": "Observation", "code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full", "code": "E119"}]}}],
        "meta": {"tag": [{"system": "http://www.mhlw.go.jp/toukei/sippei/2013/ICD10-JP", "code": "I10"}]}});
    let rep = mapper.map_resource(&mut mapped, "1318814790");
    assert_eq!(mapped["contained"][0]["code"]["coding"][1]["code"], "E11.9");
    assert_eq!(mapped["meta"]["tag"][0]["code"], "I10");
    assert_eq!(mapped["meta"]["tag"][0]["extension"][0]["valueCoding"]["code"], "I10");
    assert_eq!(rep.mapped.len(), 2);
    // unknown ICD code of a mappable system is reported
    let mut c = json!({"resourceType": "Condition", "code": {"coding": [{"system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full", "code": "Z999"}]}});
    assert_eq!(mapper.map_resource(&mut c, "1318814790").unmapped.len(), 1);
    // non-mappable systems are not counted
    let mut c = json!({"resourceType": "Condition", "code": {"coding": [{"system": "http://example.org/other", "code": "x"}]}});
    assert!(mapper.map_resource(&mut c, "1318814790").unmapped.is_empty());
    // after a new local table maps it, the queue entry can be dropped
    let mut reg2 = reg.clone();
    let csv = format!("# name: 2710000001-lab-to-jlac10\n# version: 1\n# effective-date: 2026-11-22\n# source-system: {LOCAL}\n# target-system: http://medis.or.jp/CodeSystem/master-JLAC10-17digits\n# publisher: t\n# institution: 2710000001\nsource_code,source_display,target_code,target_display,equivalence,comment\n10001,,3B035000002327201,,equivalent,\n");
    reg2.upload(MappingTable::parse_csv(&csv, &CheckOptions::default()).unwrap(), "maint").unwrap();
    reg2.activate("2710000001-lab-to-jlac10", "1", "2026-11-22", "maint").unwrap();
    q.retain_unmapped(&reg2.mapper_at("2026-11-22", t.snapshot().systems()));
    assert!(q.entries(None, None).is_empty());
}

#[test]
fn maintainer_workflow_end_to_end() {
    let t = service();
    let systems = t.snapshot().systems().clone();
    let mut reg = TableRegistry::new();
    let v1 = MappingTable::parse_csv(&format!("{HEADER}L1,,1920-8,AST,equivalent,\nL2,,1742-6,ALT,equivalent,\n"), &CheckOptions::default()).unwrap();
    let out = reg.upload(v1, "alice").unwrap();
    assert!(out.new && out.diff.is_none());
    reg.activate("t1", "1", "2026-01-01", "alice").unwrap();
    // v2 uploaded as a ConceptMap: L2 retargeted, L3 added
    let v2csv = MappingTable::parse_csv(&format!("{}L1,,1920-8,AST,equivalent,\nL2,,2345-7,Glucose,equivalent,\nL3,,718-7,Hb,equivalent,\n", HEADER.replace("# version: 1", "# version: 2")), &CheckOptions::default()).unwrap();
    let cm = v2csv.to_concept_map();
    let v2 = MappingTable::from_concept_map(&cm, &CheckOptions::default()).unwrap();
    let out = reg.upload(v2, "bob").unwrap();
    let d = out.diff.unwrap();
    assert_eq!(out.compared_with.as_deref(), Some("1"));
    assert_eq!((d.added.len(), d.removed.len(), d.changed.len()), (1, 0, 1));
    // same version again with other content is refused; identical is a no-op
    let clash = MappingTable::parse_csv(&format!("{HEADER}L9,,1,,equivalent,\n"), &CheckOptions::default()).unwrap();
    assert!(reg.upload(clash, "eve").is_err());
    assert!(!reg.upload(MappingTable::from_concept_map(&cm, &CheckOptions::default()).unwrap(), "bob").unwrap().new);
    // activate v2 at a future date: before it v1 applies, from it v2
    reg.activate("t1", "2", "2027-04-01", "bob").unwrap();
    assert_eq!(reg.version_active_at("t1", "2027-03-31").unwrap().meta.version, "1");
    assert_eq!(reg.version_active_at("t1", "2027-04-01").unwrap().meta.version, "2");
    let m1 = reg.mapper_at("2027-03-31", &systems);
    let m2 = reg.mapper_at("2027-04-01", &systems);
    let res = || json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://example.org/local", "code": "L2"}]}});
    let mut a = res();
    m1.map_resource(&mut a, "x");
    assert_eq!(a["code"]["coding"][1]["code"], "1742-6");
    // re-map stored data with the new version, as a background job with progress
    let progress = terminology::RemapProgress::default();
    let mut batch = vec![(a.clone(), "x".to_string()), (json!({"resourceType": "Observation"}), "x".to_string())];
    progress.total.store(batch.len(), std::sync::atomic::Ordering::Relaxed);
    let changed = progress.remap_batch(&m2, &mut batch);
    assert_eq!(changed, [0]);
    assert_eq!(batch[0].0["code"]["coding"].as_array().unwrap().len(), 2);
    assert_eq!(batch[0].0["code"]["coding"][1]["code"], "2345-7");
    assert!(batch[0].0["code"]["coding"][1]["extension"][0]["valueCanonical"].as_str().unwrap().ends_with("t1|2"));
    let st = progress.status();
    assert_eq!((st.total, st.done, st.changed), (2, 2, 1));
    // rollback undoes the v2 activation
    assert_eq!(reg.rollback("t1", "carol").unwrap().as_deref(), Some("1"));
    assert_eq!(reg.version_active_at("t1", "2027-04-01").unwrap().meta.version, "1");
    reg.rollback("t1", "carol").unwrap();
    assert!(reg.version_active_at("t1", "2027-04-01").is_none());
    assert!(reg.rollback("t1", "carol").is_err());
    assert!(reg.activate("t1", "9", "2027-01-01", "x").is_err());
    assert!(reg.activate("t1", "1", "2027-02-30", "x").is_err());
    // every change audited, with actor
    let actions: Vec<(&str, &str)> = reg.audit.iter().map(|a| (a.action.as_str(), a.actor.as_str())).collect();
    assert_eq!(actions, [("upload", "alice"), ("activate", "alice"), ("upload", "bob"), ("activate", "bob"), ("rollback", "carol"), ("rollback", "carol")]);
    // persisted and restored
    let back = TableRegistry::from_json(reg.to_json()).unwrap();
    assert_eq!(back.audit, reg.audit);
    assert_eq!(back.all_versions().len(), 2);
    // $translate sees every version, the active one by default
    let svc = terminology::TerminologyService::new((*t.snapshot()).clone());
    reg.activate("t1", "2", "2026-01-02", "bob").unwrap();
    svc.install_tables(&reg.all_versions(), &reg.active_at("2026-06-01"));
    let req = |v: Option<&str>| TranslateRequest { url: Some("http://jpfhir.jp/fhir/gateway/ConceptMap/t1".into()), concept_map_version: v.map(str::to_string), system: Some("http://example.org/local".into()), code: Some("L2".into()), ..Default::default() };
    let p = svc.translate(&req(None)).unwrap();
    assert_eq!(part(params(&p, "match")[0], "concept").unwrap()["code"], "2345-7");
    let p = svc.translate(&req(Some("1"))).unwrap();
    assert_eq!(part(params(&p, "match")[0], "concept").unwrap()["code"], "1742-6");
    // nothing in force (every activation rolled back): only an explicit version answers
    while reg.rollback("t1", "carol").is_ok() {}
    svc.install_tables(&reg.all_versions(), &reg.active_at("2026-06-01"));
    assert_eq!(svc.translate(&req(None)).unwrap_err().status, 404);
    let by_system = TranslateRequest { system: Some("http://example.org/local".into()), code: Some("L2".into()), ..Default::default() };
    assert!(params(&svc.translate(&by_system).unwrap(), "match").is_empty());
    let p = svc.translate(&req(Some("2"))).unwrap();
    assert_eq!(part(params(&p, "match")[0], "concept").unwrap()["code"], "2345-7");
    // activated again: the default once more
    reg.activate("t1", "1", "2026-01-01", "alice").unwrap();
    svc.install_tables(&reg.all_versions(), &reg.active_at("2026-06-01"));
    assert_eq!(part(params(&svc.translate(&req(None)).unwrap(), "match")[0], "concept").unwrap()["code"], "1742-6");
    let _ = Arc::new(reg);
}

#[test]
fn shipped_tables_translate() {
    let reg = registry_with_shipped();
    let t = terminology::TerminologyService::new((*service().snapshot()).clone());
    t.install_tables(&reg.all_versions(), &reg.active_at("2026-11-22"));
    let p = t.run_operation("ConceptMap/$translate", &[("system", CORE_LAB), ("code", "3B035000002327201"), ("targetsystem", "http://loinc.org")]).unwrap();
    assert_eq!(param(&p, "result").unwrap(), true);
    let m = params(&p, "match")[0];
    assert_eq!(part(m, "concept").unwrap()["code"], "1920-8");
    assert_eq!(part(m, "equivalence").unwrap(), "wider");
    // the OID alias of the source system translates the same way
    let p = t.run_operation("ConceptMap/$translate", &[("system", "urn:oid:1.2.392.100495.20.2.73"), ("code", "2171022F1010")]).unwrap();
    assert_eq!(part(params(&p, "match")[0], "concept").unwrap()["code"], "17767");
}

#[test]
fn registry_restored_from_rows_keeps_activations_and_numbering() {
    let mut reg = TableRegistry::new();
    let v1 = parse("L1,,1920-8,AST,equivalent,\n").unwrap();
    let v2 = MappingTable::parse_csv(&format!("{}L1,,1742-6,ALT,equivalent,\n", HEADER.replace("# version: 1", "# version: 2")), &CheckOptions::default()).unwrap();
    reg.upload(v1.clone(), "a").unwrap();
    reg.activate("t1", "1", "2026-01-01", "a").unwrap();
    reg.upload(v2.clone(), "a").unwrap();
    reg.activate("t1", "2", "2026-06-01", "a").unwrap();
    reg.activate("t1", "2", "2027-01-01", "a").unwrap();
    reg.rollback("t1", "a").unwrap();
    // what a database holds: versions in upload order, the activations in force, the audit trail
    let activations = reg.tables["t1"].activations.iter().map(|a| ("t1".to_string(), a.clone())).collect();
    let mut back = TableRegistry::restore(vec![v1, v2], activations, reg.audit.clone()).unwrap();
    for date in ["2025-12-31", "2026-01-01", "2026-06-01", "2027-01-02"] {
        assert_eq!(back.version_active_at("t1", date).map(|t| t.meta.version.clone()), reg.version_active_at("t1", date).map(|t| t.meta.version.clone()), "{date}");
    }
    // later actions are numbered after every restored one
    back.activate("t1", "1", "2026-06-01", "b").unwrap();
    let last = back.tables["t1"].activations.last().unwrap().seq;
    assert!(last > reg.audit.iter().map(|a| a.seq).max().unwrap(), "{last}");
    assert_eq!(back.version_active_at("t1", "2026-06-01").unwrap().meta.version, "1", "same date: the later action wins");
    // an activation of a version that is not there is refused
    let bad = vec![("t1".to_string(), terminology::registry::Activation { version: "9".into(), from: "2026-01-01".into(), seq: 1 })];
    assert!(TableRegistry::restore(vec![parse("L1,,1,,equivalent,\n").unwrap()], bad, Vec::new()).is_err());
}
