//! Benchmarks: $translate, $validate-code, the mapper per resource, loading a 1,000,000-row
//! mapping table, and per-call latency percentiles with 32 concurrent threads.
//!
//! `cd /work/main && CARGO_TARGET_DIR=/work/target-terminology cargo bench -p terminology`

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use terminology::{CheckOptions, Mapper, MappingTable, TableRegistry, TerminologyService, TranslateRequest, load_tables_dir};

const CORE_LAB: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";
const LOCAL: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS";
const ALLERGY_VS: &str = "http://jpfhir.jp/fhir/core/ValueSet/JP_AllergyIntolerance_VS";
const JFAGY_FOOD: &str = "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn setup() -> (Arc<TerminologyService>, Arc<Mapper>) {
    let pk = root().join("../shared/fhir-packages");
    let store = fhir_profiles::PackageStore::load_with_rules(std::slice::from_ref(&pk), None).unwrap();
    let svc = TerminologyService::load(Some(store), &[pk], &[root().join("../shared/terminology")]).unwrap();
    let tables = load_tables_dir(&root().join("mapping-tables"), &CheckOptions::default()).unwrap();
    let mut reg = TableRegistry::new();
    for t in tables {
        let (n, v) = (t.meta.name.clone(), t.meta.version.clone());
        reg.upload(t, "bench").unwrap();
        reg.activate(&n, &v, "2026-11-22", "bench").unwrap();
    }
    svc.install_tables(&reg.all_versions(), &reg.active_at("2026-11-22"));
    let mapper = Arc::new(reg.mapper_at("2026-11-22", svc.snapshot().systems()));
    (svc, mapper)
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "meta": {"profile": ["http://jpfhir.jp/fhir/eCS/StructureDefinition/JP_Observation_LabResult_eCS|1"], "tag": [{"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": "LTS"}]},
        "contained": [
            {"resourceType": "Encounter", "id": "enc", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
            {"resourceType": "Specimen", "id": "sp", "type": {"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationSampleMaterialCode_CS", "code": "023"}]}}
        ],
        "extension": [{"url": "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber", "valueIdentifier": {"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": "1318814790"}}],
        "identifier": [{"system": "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier", "value": "1318814790-OBS-1"}],
        "status": "final",
        "category": [{"coding": [{"system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory"}]}],
        "code": {"coding": [
            {"system": LOCAL, "code": "10001", "display": "AST(GOT)"},
            {"system": CORE_LAB, "code": "3B035000002327201", "display": "AST"}
        ], "text": "AST"},
        "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
        "encounter": {"reference": "#enc"},
        "effectiveDateTime": "2026-11-20",
        "valueQuantity": {"value": 25, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}],
        "specimen": {"reference": "#sp"}
    })
}

fn benches(c: &mut Criterion) {
    let (svc, mapper) = setup();
    let snap = svc.snapshot();
    let req = TranslateRequest { system: Some(CORE_LAB.into()), code: Some("3B035000002327201".into()), target_system: Some("http://loinc.org".into()), ..Default::default() };
    let req_url = TranslateRequest { url: Some("http://jpfhir.jp/fhir/gateway/ConceptMap/jlac10-corelab-to-loinc".into()), ..req.clone() };
    c.bench_function("translate (by source/target system)", |b| b.iter(|| black_box(snap.translate(black_box(&req)).unwrap())));
    c.bench_function("translate (by ConceptMap url)", |b| b.iter(|| black_box(snap.translate(black_box(&req_url)).unwrap())));
    c.bench_function("validate-code ValueSet (JP_AllergyIntolerance_VS, 29k codes)", |b| b.iter(|| black_box(snap.validate_code_vs(ALLERGY_VS, Some(JFAGY_FOOD), black_box("J9FA15000000"), Some("小麦")).unwrap())));
    c.bench_function("validate-code CodeSystem (MEDIS exchange code, 26k codes)", |b| b.iter(|| black_box(snap.validate_code_cs("http://medis.or.jp/CodeSystem/master-disease-exCode", black_box("A006"), None, None).unwrap())));
    c.bench_function("validator binding check (Terminology::validate_code)", |b| {
        use fhir_profiles::Terminology;
        b.iter(|| black_box(svc.validate_code(ALLERGY_VS, Some(JFAGY_FOOD), black_box("J9FA15000000"))))
    });
    let obs = observation();
    c.bench_function("mapper: map one Observation (clone included)", |b| {
        b.iter(|| {
            let mut r = obs.clone();
            black_box(mapper.map_resource(&mut r, "1318814790"))
        })
    });
    c.bench_function("clone of the same Observation (baseline to subtract)", |b| b.iter(|| black_box(obs.clone())));
    let mut mapped = obs.clone();
    mapper.map_resource(&mut mapped, "1318814790");
    c.bench_function("mapper: already-mapped Observation (no match adds, no clone)", |b| b.iter(|| black_box(mapper.map_resource(&mut mapped, "1318814790"))));

    // 1,000,000-row table: generated into a temp dir, read + parsed + checked, then indexed.
    let dir = std::env::temp_dir().join(format!("terminology-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.csv");
    {
        let mut s = String::with_capacity(60_000_000);
        s.push_str(&format!("# name: big\n# version: 1\n# effective-date: 2026-11-22\n# source-system: {LOCAL}\n# target-system: http://loinc.org\n# publisher: bench\n# institution: 1318814790\nsource_code,source_display,target_code,target_display,equivalence,comment\n"));
        for i in 0..1_000_000u32 {
            s.push_str(&format!("L{i:07},local item {i},{}-{},LOINC item {i},equivalent,\n", 10000 + i % 90000, i % 10));
        }
        std::fs::write(&path, s).unwrap();
    }
    let mut g = c.benchmark_group("load 1,000,000-row table");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.bench_function("read + parse + check", |b| b.iter(|| black_box(MappingTable::parse_csv(&std::fs::read_to_string(&path).unwrap(), &CheckOptions::default()).unwrap())));
    let table = Arc::new(MappingTable::parse_csv(&std::fs::read_to_string(&path).unwrap(), &CheckOptions::default()).unwrap());
    g.bench_function("build mapper index", |b| b.iter(|| black_box(Mapper::new(std::slice::from_ref(&table), snap.systems()))));
    g.bench_function("read + parse + check + mapper index + ConceptMap for $translate", |b| {
        b.iter(|| {
            let t = Arc::new(MappingTable::parse_csv(&std::fs::read_to_string(&path).unwrap(), &CheckOptions::default()).unwrap());
            let m = Mapper::new(std::slice::from_ref(&t), snap.systems());
            let cm = t.compiled_concept_map();
            black_box((m, cm))
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);

    // Per-call latency with 32 threads calling concurrently (no HTTP): p50/p99/max.
    for (name, f) in [
        ("translate", Box::new(|s: &TerminologyService| drop(s.translate(&req).unwrap())) as Box<dyn Fn(&TerminologyService) + Sync>),
        ("validate-code VS", Box::new(|s: &TerminologyService| drop(s.validate_code_vs(ALLERGY_VS, Some(JFAGY_FOOD), "J9FA15000000", None).unwrap()))),
    ] {
        let per_thread = 5_000;
        let lat: Vec<Duration> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..32)
                .map(|_| {
                    let (svc, f) = (&svc, &f);
                    sc.spawn(move || {
                        let mut v = Vec::with_capacity(per_thread);
                        for _ in 0..per_thread {
                            let t0 = Instant::now();
                            f(svc);
                            v.push(t0.elapsed());
                        }
                        v
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut lat = lat;
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!("32 concurrent threads, {name}: {} calls, p50 {:?}, p99 {:?}, max {:?}", lat.len(), pct(0.50), pct(0.99), lat[lat.len() - 1]);
    }
}

criterion_group!(group, benches);
criterion_main!(group);
