//! Validate files: `cargo run --release -p fhir-profiles --example validate -- [--profile URL] [--load FILE] FILE...`
use std::path::PathBuf;

use fhir_profiles::{PackageStore, ValidationOptions, Validator, has_errors};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut profiles = Vec::new();
    let mut loads = Vec::new();
    let mut files = Vec::new();
    let mut extra_dirs: Vec<PathBuf> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--profile" => profiles.push(args.next().expect("URL")),
            "--load" => loads.push(PathBuf::from(args.next().expect("FILE"))),
            "--dir" => extra_dirs.push(PathBuf::from(args.next().expect("DIR"))),
            _ => files.push(PathBuf::from(a)),
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    let t = std::time::Instant::now();
    let mut dirs = vec![root.join("fhir-packages"), root.join("terminology")];
    dirs.extend(extra_dirs);
    let store = PackageStore::load(&dirs).expect("load");
    eprintln!("loaded in {:?}", t.elapsed());
    for l in &loads {
        store.add_file_any(l).expect("load file");
    }
    let v = Validator::new(store);
    let opts = ValidationOptions { profiles };
    let mut bad = false;
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        let t = std::time::Instant::now();
        let mut issues = v.validate_json(&bytes, &opts);
        let mut el = t.elapsed();
        let repeat: usize = std::env::var("REPEAT").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        if repeat > 0 {
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            let t = std::time::Instant::now();
            for _ in 0..repeat {
                issues = v.validate(&value, &opts);
            }
            el = t.elapsed() / repeat as u32;
        }
        println!("== {} ({:?}) {}", f.display(), el, if has_errors(&issues) { "INVALID" } else { "valid" });
        for i in &issues {
            println!("  {} [{}] {} @ {}", i.severity.as_str(), i.code, i.message, i.expression);
        }
        bad |= has_errors(&issues);
    }
    std::process::exit(if bad { 1 } else { 0 });
}
