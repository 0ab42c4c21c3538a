//! FHIR NPM package loading and the canonical-resource index.
//!
//! # Precedence (which definition wins)
//!
//! Packages are ordered so that every package comes after the packages it depends on (when they are
//! loaded); otherwise they keep the order in which they were found (directories in the order given,
//! entries of one directory sorted by file name). For a canonical URL defined by several packages,
//! an **unversioned** lookup returns the definition from the package that comes **last** in that
//! order (an IG that redefines a URL of its dependency overrides it), and resources added at run time
//! with [`PackageStore::add_resource`] win over all packages. A **versioned** lookup (`url|version`)
//! returns the definition with exactly that `version`; if none matches, one whose version starts
//! with the requested one followed by `.` or `-` (so `|1` finds `1.1.2`); if still none, the lookup
//! fails (the validator then falls back to the unversioned definition with a warning).
//!
//! To keep definitions of two IGs that redefine the same URLs apart (e.g. jp-eCheckupReport vs
//! jp-eCSCLINS), load them as separate stores ("package sets"): `PackageStore::load(&[clins_dirs])`
//! and `PackageStore::load(&[clins_dirs, echeckup_dir])`; within one store the rule above applies.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profile::CompiledProfile;
use crate::rules::GatewayRules;
use crate::terminology::{CodeSystemIndex, ValueSetMembership};

/// Errors while loading packages or resources.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid package {path}: {message}")]
    Package { path: PathBuf, message: String },
    #[error("invalid JSON in {path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("invalid resource: {0}")]
    Resource(String),
}

/// A loaded package (name, version, dependencies, where it came from).
#[derive(Debug, Clone)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    pub dependencies: Vec<(String, String)>,
    pub source: PathBuf,
}

/// Resource types kept in the index (everything else in a package is skipped).
const WANTED: &[&str] = &["StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter"];

/// Index entry of one conformance resource. The JSON is kept as bytes and parsed on demand.
pub(crate) struct Entry {
    pub pkg: u32,
    pub resource_type: Box<str>,
    pub url: Box<str>,
    pub version: Option<Box<str>>,
    pub kind: Option<Box<str>>,
    pub sd_type: Option<Box<str>>,
    pub derivation: Option<Box<str>>,
    pub data: Data,
}

pub(crate) enum Data {
    Bytes(Box<[u8]>),
    /// Already parsed (reserved for packages built in memory).
    #[allow(dead_code)]
    Parsed(Arc<Value>),
}

impl Entry {
    fn parse(&self) -> Option<Arc<Value>> {
        match &self.data {
            Data::Bytes(b) => serde_json::from_slice(b).ok().map(Arc::new),
            Data::Parsed(v) => Some(v.clone()),
        }
    }
}

/// The immutable part of a store: packages and their index.
pub(crate) struct BaseIndex {
    pub packages: Vec<PackageInfo>,
    pub entries: Vec<Entry>,
    /// url -> entry indices, in precedence order (last wins).
    pub by_url: HashMap<Box<str>, Vec<u32>>,
    pub model: OnceLock<fhirpath::Model>,
    pub search_parameters: OnceLock<Vec<Value>>,
}

/// Immutable-after-load store of conformance resources, shared between validators (`Arc`, Send+Sync).
/// Compiled profiles and value sets are cached inside it on first use.
pub struct PackageStore {
    pub(crate) base: Arc<BaseIndex>,
    overlay: RwLock<HashMap<String, Vec<Arc<Value>>>>,
    pub(crate) profiles: RwLock<HashMap<String, Option<Arc<CompiledProfile>>, crate::validator::FxBuild>>,
    pub(crate) valuesets: RwLock<HashMap<String, Arc<ValueSetMembership>, crate::validator::FxBuild>>,
    pub(crate) codesystems: RwLock<HashMap<String, Option<Arc<CodeSystemIndex>>, crate::validator::FxBuild>>,
    pub(crate) snapshots: RwLock<HashMap<String, Result<Arc<Value>, String>>>,
    pub(crate) rules: RwLock<Arc<GatewayRules>>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    url: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    #[serde(rename = "type")]
    sd_type: Option<Value>,
    derivation: Option<String>,
}

#[derive(Deserialize)]
struct PackageJson {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    dependencies: HashMap<String, String>,
}

#[derive(Deserialize)]
struct IndexJson {
    files: Vec<IndexFile>,
}

#[derive(Deserialize)]
struct IndexFile {
    filename: String,
    #[serde(rename = "resourceType")]
    resource_type: String,
    url: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    #[serde(rename = "type")]
    sd_type: Option<String>,
}

struct RawPackage {
    info: PackageInfo,
    files: Vec<(String, Vec<u8>)>,
    index: Option<IndexJson>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io { path: path.to_path_buf(), source }
}

/// Decide from a file name (`Type-id.json`) whether a package file may hold a wanted resource.
fn maybe_wanted(name: &str) -> bool {
    if !name.ends_with(".json") || name == "package.json" || name.starts_with('.') {
        return false;
    }
    match name.split_once('-') {
        Some((prefix, _)) if prefix.chars().all(|c| c.is_ascii_alphabetic()) && prefix.starts_with(|c: char| c.is_ascii_uppercase()) => {
            WANTED.contains(&prefix)
        }
        _ => true,
    }
}

fn read_tgz(path: &Path) -> Result<RawPackage, LoadError> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 16, f));
    let mut ar = tar::Archive::new(gz);
    let mut files = Vec::new();
    let mut pkg_json: Option<Vec<u8>> = None;
    let mut index = None;
    for e in ar.entries().map_err(io_err(path))? {
        let mut e = e.map_err(io_err(path))?;
        let p = e.path().map_err(io_err(path))?.to_string_lossy().into_owned();
        let Some(rest) = p.strip_prefix("package/") else { continue };
        if rest.contains('/') {
            continue; // example/, other/, openapi/, xml/ ...
        }
        if rest == "package.json" || rest == ".index.json" || maybe_wanted(rest) {
            let mut buf = Vec::with_capacity(e.size() as usize);
            e.read_to_end(&mut buf).map_err(io_err(path))?;
            match rest {
                "package.json" => pkg_json = Some(buf),
                ".index.json" => index = serde_json::from_slice::<IndexJson>(&buf).ok(),
                _ => files.push((rest.to_string(), buf)),
            }
        }
    }
    let info = package_info(path, pkg_json.as_deref())?;
    Ok(RawPackage { info, files, index })
}

fn package_info(path: &Path, pkg_json: Option<&[u8]>) -> Result<PackageInfo, LoadError> {
    let Some(bytes) = pkg_json else {
        return Err(LoadError::Package { path: path.to_path_buf(), message: "no package/package.json".into() });
    };
    let pj: PackageJson = serde_json::from_slice(bytes).map_err(|source| LoadError::Json { path: path.to_path_buf(), source })?;
    let mut dependencies: Vec<(String, String)> = pj.dependencies.into_iter().collect();
    dependencies.sort();
    Ok(PackageInfo {
        name: pj.name.unwrap_or_else(|| path.display().to_string()),
        version: pj.version.unwrap_or_default(),
        dependencies,
        source: path.to_path_buf(),
    })
}

/// An unpacked package directory (`dir/package/package.json` or `dir/package.json`), or a directory
/// of loose resource files (a pseudo-package named after the directory).
fn read_dir_package(dir: &Path, loose: bool) -> Result<RawPackage, LoadError> {
    let content = if dir.join("package").join("package.json").is_file() { dir.join("package") } else { dir.to_path_buf() };
    let pkg_json = std::fs::read(content.join("package.json")).ok();
    let info = if loose && pkg_json.is_none() {
        PackageInfo { name: format!("local:{}", dir.display()), version: String::new(), dependencies: vec![], source: dir.to_path_buf() }
    } else {
        package_info(dir, pkg_json.as_deref())?
    };
    let index = std::fs::read(content.join(".index.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let mut names: Vec<String> = std::fs::read_dir(&content)
        .map_err(io_err(&content))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| maybe_wanted(n))
        .collect();
    names.sort();
    let mut files = Vec::new();
    for n in names {
        let p = content.join(&n);
        files.push((n, std::fs::read(&p).map_err(io_err(&p))?));
    }
    Ok(RawPackage { info, files, index })
}

/// Find packages under one configured path.
fn discover(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if path.join("package").join("package.json").is_file() || path.join("package.json").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut loose = false;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path).map_err(io_err(path))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if p.is_file() && (name.ends_with(".tgz") || name.ends_with(".tar.gz")) {
            out.push(p);
        } else if p.is_dir() && (p.join("package").join("package.json").is_file()) {
            out.push(p);
        } else if p.is_file() && name.ends_with(".json") {
            loose = true;
        }
    }
    if loose {
        out.push(path.to_path_buf());
    }
    Ok(out)
}

fn load_one(p: &Path) -> Result<RawPackage, LoadError> {
    if p.is_file() {
        read_tgz(p)
    } else {
        let loose = !(p.join("package").join("package.json").is_file() || p.join("package.json").is_file());
        read_dir_package(p, loose)
    }
}

fn sd_type_str(v: &Option<Value>) -> Option<Box<str>> {
    v.as_ref().and_then(|v| v.as_str()).map(Into::into)
}

fn index_package(pkg_no: u32, raw: RawPackage, entries: &mut Vec<Entry>) {
    let by_name: HashMap<&str, &IndexFile> = raw.index.as_ref().map(|i| i.files.iter().map(|f| (f.filename.as_str(), f)).collect()).unwrap_or_default();
    for (name, bytes) in raw.files {
        let entry = if let Some(f) = by_name.get(name.as_str()) {
            if !WANTED.contains(&f.resource_type.as_str()) {
                continue;
            }
            let Some(url) = &f.url else { continue };
            // .index.json has no derivation: read it lazily from the head only for SDs
            let derivation = if f.resource_type == "StructureDefinition" {
                serde_json::from_slice::<Head>(&bytes).ok().and_then(|h| h.derivation)
            } else {
                None
            };
            Entry {
                pkg: pkg_no,
                resource_type: f.resource_type.as_str().into(),
                url: url.as_str().into(),
                version: f.version.as_deref().map(Into::into),
                kind: f.kind.as_deref().map(Into::into),
                sd_type: f.sd_type.as_deref().map(Into::into),
                derivation: derivation.map(Into::into),
                data: Data::Bytes(bytes.into_boxed_slice()),
            }
        } else {
            let Ok(h) = serde_json::from_slice::<Head>(&bytes) else { continue };
            let Some(rt) = h.resource_type else { continue };
            if !WANTED.contains(&rt.as_str()) {
                continue;
            }
            let Some(url) = h.url else { continue };
            Entry {
                pkg: pkg_no,
                resource_type: rt.into(),
                url: url.into(),
                version: h.version.map(Into::into),
                kind: h.kind.map(Into::into),
                sd_type: sd_type_str(&h.sd_type),
                derivation: h.derivation.map(Into::into),
                data: Data::Bytes(bytes.into_boxed_slice()),
            }
        };
        entries.push(entry);
    }
}

/// Trimmed StructureDefinition for the FHIRPath model (only what `Model` reads).
#[derive(Deserialize, Serialize)]
struct SdLite {
    #[serde(rename = "resourceType")]
    resource_type: String,
    url: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    #[serde(rename = "type")]
    sd_type: Option<String>,
    #[serde(rename = "abstract")]
    is_abstract: Option<bool>,
    #[serde(rename = "baseDefinition", skip_serializing_if = "Option::is_none")]
    base_definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    derivation: Option<String>,
    snapshot: Option<SnapLite>,
}
#[derive(Deserialize, Serialize)]
struct SnapLite {
    element: Vec<ElLite>,
}
#[derive(Deserialize, Serialize)]
struct ElLite {
    id: Option<String>,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<String>,
    #[serde(rename = "contentReference", skip_serializing_if = "Option::is_none")]
    content_reference: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    types: Option<Vec<TypeLite>>,
}
#[derive(Deserialize, Serialize)]
struct TypeLite {
    code: Option<String>,
}

impl PackageStore {
    /// Load every package found in `dirs` (each a `.tgz`, an unpacked package directory, or a
    /// directory holding such packages and/or loose resource JSON files), build the index and the
    /// FHIRPath model, and load the gateway rules from `fhir-profiles/definitions/`.
    ///
    /// The definitions directory is the one of this crate's source tree (compile-time path); when it
    /// does not exist (a deployed binary) this is an error rather than a silent loss of the gateway
    /// rules: use [`load_with_rules`](Self::load_with_rules) with the configured directory.
    pub fn load(dirs: &[PathBuf]) -> Result<Arc<PackageStore>, LoadError> {
        let defs = crate::rules::default_definitions_dir();
        if !defs.is_dir() {
            return Err(LoadError::Package { path: defs, message: "the gateway definitions directory does not exist; use PackageStore::load_with_rules with its location".into() });
        }
        Self::load_with_rules(dirs, Some(&defs))
    }

    /// Like [`load`](Self::load), with an explicit definitions directory (`None`: no gateway rules).
    pub fn load_with_rules(dirs: &[PathBuf], definitions: Option<&Path>) -> Result<Arc<PackageStore>, LoadError> {
        let mut paths = Vec::new();
        for d in dirs {
            paths.extend(discover(d)?);
        }
        // Read packages on two threads (the core package dominates).
        let mut raws: Vec<Option<Result<RawPackage, LoadError>>> = (0..paths.len()).map(|_| None).collect();
        if paths.len() > 1 {
            let (first, rest) = raws.split_at_mut(1);
            let big = paths
                .iter()
                .enumerate()
                .max_by_key(|(_, p)| std::fs::metadata(p).map(|m| if m.is_file() { m.len() } else { 0 }).unwrap_or(0))
                .map(|(i, _)| i)
                .unwrap_or(0);
            let mut results: Vec<(usize, Result<RawPackage, LoadError>)> = Vec::new();
            std::thread::scope(|s| {
                let h = s.spawn(|| load_one(&paths[big]));
                for (i, p) in paths.iter().enumerate() {
                    if i != big {
                        results.push((i, load_one(p)));
                    }
                }
                results.push((big, h.join().unwrap_or_else(|_| Err(LoadError::Resource("loader thread panicked".into())))));
            });
            let _ = (first, rest);
            for (i, r) in results {
                raws[i] = Some(r);
            }
        } else if let Some(p) = paths.first() {
            raws[0] = Some(load_one(p));
        }
        let mut raws: Vec<RawPackage> = raws.into_iter().map(|r| r.expect("loaded")).collect::<Result<_, _>>()?;
        // Dependency order (stable): a package comes after its loaded dependencies.
        let mut ordered: Vec<RawPackage> = Vec::with_capacity(raws.len());
        while !raws.is_empty() {
            let pos = raws
                .iter()
                .position(|r| r.info.dependencies.iter().all(|(d, _)| !raws.iter().any(|o| &o.info.name == d && o.info.name != r.info.name)))
                .unwrap_or(0);
            ordered.push(raws.remove(pos));
        }
        let mut entries = Vec::new();
        let mut packages = Vec::new();
        for (i, raw) in ordered.into_iter().enumerate() {
            packages.push(raw.info.clone());
            index_package(i as u32, raw, &mut entries);
        }
        let mut by_url: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_url.entry(e.url.clone()).or_default().push(i as u32);
        }
        let base = Arc::new(BaseIndex { packages, entries, by_url, model: OnceLock::new(), search_parameters: OnceLock::new() });
        let store = Arc::new(PackageStore::from_base(base));
        // Build the FHIRPath model eagerly (part of being ready).
        store.fhirpath_model();
        if let Some(dir) = definitions {
            let rules = GatewayRules::load(dir, &store)?;
            *store.rules.write().unwrap() = Arc::new(rules);
        }
        Ok(store)
    }

    fn from_base(base: Arc<BaseIndex>) -> PackageStore {
        PackageStore {
            base,
            overlay: RwLock::new(HashMap::new()),
            profiles: RwLock::new(HashMap::default()),
            valuesets: RwLock::new(HashMap::default()),
            codesystems: RwLock::new(HashMap::default()),
            snapshots: RwLock::new(HashMap::new()),
            rules: RwLock::new(Arc::new(GatewayRules::default())),
        }
    }

    /// A new store sharing this one's packages and FHIRPath model, with its own (initially copied)
    /// run-time resources and empty caches. Use it to load test- or request-specific resources
    /// without touching the shared store.
    pub fn child(&self) -> Arc<PackageStore> {
        let s = PackageStore::from_base(self.base.clone());
        *s.overlay.write().unwrap() = self.overlay.read().unwrap().clone();
        *s.rules.write().unwrap() = self.rules.read().unwrap().clone();
        Arc::new(s)
    }

    /// The loaded packages, in precedence order (later wins).
    pub fn packages(&self) -> &[PackageInfo] {
        &self.base.packages
    }

    /// Add a conformance resource at run time (`--load FILE`): a StructureDefinition, ValueSet,
    /// CodeSystem, ... (a Bundle adds each entry). It wins over package definitions of the same URL.
    /// Compiled caches are cleared.
    pub fn add_resource(&self, resource: Value) -> Result<(), LoadError> {
        if resource.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            if let Some(entries) = resource.get("entry").and_then(Value::as_array) {
                for e in entries {
                    if let Some(r) = e.get("resource") {
                        self.add_resource(r.clone())?;
                    }
                }
            }
            return Ok(());
        }
        let Some(url) = resource.get("url").and_then(Value::as_str) else {
            return Err(LoadError::Resource("resource has no url".into()));
        };
        let url = url.to_string();
        self.overlay.write().unwrap().entry(url).or_default().push(Arc::new(resource));
        self.profiles.write().unwrap().clear();
        self.valuesets.write().unwrap().clear();
        self.codesystems.write().unwrap().clear();
        self.snapshots.write().unwrap().clear();
        Ok(())
    }

    /// Load a resource file for [`add_resource`](Self::add_resource).
    pub fn add_file(&self, path: &Path) -> Result<(), LoadError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|source| LoadError::Json { path: path.to_path_buf(), source })?;
        self.add_resource(v)
    }

    /// Resolve a canonical (`url` or `url|version`) to the resource (see the module doc for precedence).
    pub fn resolve(&self, canonical: &str) -> Option<Arc<Value>> {
        let (url, version) = split_canonical(canonical);
        if let Some(list) = self.overlay.read().unwrap().get(url) {
            let found = match version {
                None => list.last().cloned(),
                Some(v) => list.iter().rev().find(|r| version_matches(r.get("version").and_then(Value::as_str), v)).cloned(),
            };
            if found.is_some() {
                return found;
            }
        }
        let idx = self.find_entry(url, version)?;
        self.base.entries[idx as usize].parse()
    }

    /// The version of the resource that `canonical` resolves to (without parsing it).
    pub fn resolve_version(&self, canonical: &str) -> Option<String> {
        let (url, version) = split_canonical(canonical);
        if let Some(list) = self.overlay.read().unwrap().get(url) {
            // the same choice as `resolve`
            let found = match version {
                None => list.last(),
                Some(v) => list.iter().rev().find(|r| version_matches(r.get("version").and_then(Value::as_str), v)),
            };
            if let Some(r) = found {
                return Some(r.get("version").and_then(Value::as_str).unwrap_or("").to_string());
            }
        }
        let idx = self.find_entry(url, version)?;
        Some(self.base.entries[idx as usize].version.as_deref().unwrap_or("").to_string())
    }

    /// Is the URL (any version) known?
    pub fn contains(&self, url: &str) -> bool {
        let (url, _) = split_canonical(url);
        self.overlay.read().unwrap().contains_key(url) || self.base.by_url.contains_key(url)
    }

    fn find_entry(&self, url: &str, version: Option<&str>) -> Option<u32> {
        let list = self.base.by_url.get(url)?;
        match version {
            None => list.last().copied(),
            Some(v) => {
                let ents = &self.base.entries;
                list.iter().rev().find(|&&i| ents[i as usize].version.as_deref() == Some(v)).copied().or_else(|| {
                    list.iter().rev().find(|&&i| version_matches(ents[i as usize].version.as_deref(), v)).copied()
                })
            }
        }
    }

    /// Which package defines the winning definition of `url` (None for run-time resources).
    pub fn package_of(&self, canonical: &str) -> Option<&PackageInfo> {
        let (url, version) = split_canonical(canonical);
        let idx = self.find_entry(url, version)?;
        self.base.packages.get(self.base.entries[idx as usize].pkg as usize)
    }

    /// All URLs of a resource type in the packages (and run-time resources).
    pub fn urls_of_type(&self, resource_type: &str) -> Vec<String> {
        let mut out: Vec<String> = self.base.by_url.iter().filter(|(_, l)| l.iter().any(|&i| &*self.base.entries[i as usize].resource_type == resource_type)).map(|(u, _)| u.to_string()).collect();
        for (u, l) in self.overlay.read().unwrap().iter() {
            if l.iter().any(|r| r.get("resourceType").and_then(Value::as_str) == Some(resource_type)) && !out.contains(u) {
                out.push(u.clone());
            }
        }
        out.sort();
        out
    }

    /// The SearchParameter resources of the loaded packages (parsed on first call).
    pub fn search_parameters(&self) -> impl Iterator<Item = &Value> {
        self.base
            .search_parameters
            .get_or_init(|| {
                self.base
                    .entries
                    .iter()
                    .filter(|e| &*e.resource_type == "SearchParameter")
                    .filter_map(|e| match &e.data {
                        Data::Bytes(b) => serde_json::from_slice(b).ok(),
                        Data::Parsed(v) => Some((**v).clone()),
                    })
                    .collect()
            })
            .iter()
    }

    /// The FHIRPath model built from the packages' type definitions (core types).
    pub fn fhirpath_model(&self) -> &fhirpath::Model {
        self.base.model.get_or_init(|| {
            let ents: Vec<&Entry> = self
                .base
                .entries
                .iter()
                .filter(|e| {
                    &*e.resource_type == "StructureDefinition"
                        && matches!(e.kind.as_deref(), Some("primitive-type" | "complex-type" | "resource"))
                        && e.derivation.as_deref() != Some("constraint")
                })
                .collect();
            let parse = |e: &&Entry| -> Option<Value> {
                match &e.data {
                    Data::Bytes(b) => serde_json::from_slice::<SdLite>(b).ok().and_then(|l| serde_json::to_value(l).ok()),
                    Data::Parsed(v) => Some((**v).clone()),
                }
            };
            // parse on two threads
            let mid = ents.len() / 2;
            let (a, b) = ents.split_at(mid);
            let (mut va, vb) = std::thread::scope(|s| {
                let h = s.spawn(|| b.iter().filter_map(parse).collect::<Vec<Value>>());
                let va = a.iter().filter_map(parse).collect::<Vec<Value>>();
                (va, h.join().unwrap_or_default())
            });
            va.extend(vb);
            // Later packages win for the same type: keep only the last definition per url.
            let mut seen = std::collections::HashSet::new();
            let mut uniq: Vec<&Value> = Vec::new();
            for v in va.iter().rev() {
                let url = v.get("url").and_then(Value::as_str).unwrap_or("");
                if seen.insert(url.to_string()) {
                    uniq.push(v);
                }
            }
            uniq.reverse();
            fhirpath::Model::from_structure_definitions(uniq)
        })
    }

    /// StructureDefinition metadata without parsing: (kind, type, derivation) of the winning definition.
    pub(crate) fn sd_meta(&self, url: &str) -> Option<(Option<Box<str>>, Option<Box<str>>)> {
        let (u, v) = split_canonical(url);
        if let Some(list) = self.overlay.read().unwrap().get(u) {
            if let Some(r) = list.last() {
                return Some((r.get("kind").and_then(Value::as_str).map(Into::into), r.get("type").and_then(Value::as_str).map(Into::into)));
            }
        }
        let i = self.find_entry(u, v)?;
        let e = &self.base.entries[i as usize];
        Some((e.kind.clone(), e.sd_type.clone()))
    }

    /// The gateway rules loaded from the definitions directory.
    pub fn rules(&self) -> Arc<GatewayRules> {
        self.rules.read().unwrap().clone()
    }

    /// Replace the gateway rules (e.g. to load another definitions directory).
    pub fn set_rules(&self, rules: GatewayRules) {
        *self.rules.write().unwrap() = Arc::new(rules);
        self.profiles.write().unwrap().clear();
    }
}

/// Split `url|version`.
pub fn split_canonical(c: &str) -> (&str, Option<&str>) {
    match c.split_once('|') {
        Some((u, v)) => (u, Some(v)),
        None => (c, None),
    }
}

fn version_matches(have: Option<&str>, want: &str) -> bool {
    match have {
        Some(h) => h == want || (h.starts_with(want) && matches!(h.as_bytes().get(want.len()), Some(b'.') | Some(b'-'))),
        None => false,
    }
}
