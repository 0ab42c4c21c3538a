//! Criterion benchmarks: start-up (load the three packages), the JP-CLINS referral document, and
//! a five-item collection Bundle (the Observations example: Patient + 4 lab results).
//!
//! `cargo bench -p fhir-profiles --bench validate`

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fhir_profiles::{PackageStore, ValidationOptions, Validator, has_errors};
use serde_json::Value;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn dirs() -> Vec<PathBuf> {
    vec![shared().join("fhir-packages"), shared().join("terminology")]
}

fn example(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(shared().join("examples/jp-clins").join(name)).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("startup");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("load_three_packages", |b| b.iter(|| PackageStore::load(&dirs()).unwrap()));
    g.finish();

    let store = PackageStore::load(&dirs()).unwrap();
    let v = Validator::new(store);
    let opts = ValidationOptions::default();
    let referral = example("Bundle-Bundle-CLINS-Referral-Example-01.json");
    let five = example("Bundle-Bundle-CLINS-Observations-Example-01.json");
    assert_eq!(five["entry"].as_array().unwrap().len(), 5);
    // warm up: compile profiles and value sets once
    assert!(!has_errors(&v.validate(&referral, &opts)));
    assert!(!has_errors(&v.validate(&five, &opts)));

    let mut g = c.benchmark_group("validate");
    g.bench_function("referral_document", |b| b.iter(|| v.validate(&referral, &opts)));
    g.bench_function("collection_bundle_5_items", |b| b.iter(|| v.validate(&five, &opts)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
