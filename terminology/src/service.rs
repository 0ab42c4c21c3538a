//! The terminology service: an immutable [`Snapshot`] of code systems, value sets and concept maps,
//! shared behind [`TerminologyService`] and replaced as a whole (copy-on-write) when resources or
//! mapping tables change.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use fhir_profiles::PackageStore;
use serde_json::Value;

use crate::codesystem::CodeSystem;
use crate::conceptmap::ConceptMap;
use crate::systems::Systems;
use crate::table::MappingTable;
use crate::valueset::{CompiledValueSet, CsRef, Resolver};
use crate::{FastMap, FastSet, TermError};

/// Default cap on the number of codes in one expansion (a larger one is refused as too costly).
pub const DEFAULT_EXPANSION_LIMIT: usize = 50_000;

type Cache<T> = Arc<RwLock<FastMap<String, T>>>;

/// One immutable state of the service. Cheap to share (`Arc`); caches inside are filled on use.
pub struct Snapshot {
    pub(crate) systems: Arc<Systems>,
    pub(crate) store: Option<Arc<PackageStore>>,
    /// canonical system URI -> versions in load order (the last one is the default).
    pub(crate) code_systems: FastMap<String, Vec<Arc<CodeSystem>>>,
    /// url -> versions in load order.
    pub(crate) value_sets: FastMap<String, Vec<Arc<Value>>>,
    /// url -> versions in load order.
    pub(crate) concept_maps: FastMap<String, Vec<Arc<ConceptMap>>>,
    /// Mapping-table ConceptMaps with no version in force (every activation rolled back, or not
    /// yet effective): reachable by `url|version` only, never the default.
    pub(crate) inactive_maps: FastSet<String>,
    /// The default ConceptMaps by the canonical URI of a group's source system (key "" for groups
    /// without a source, which apply to any system), sorted by URL; built on first `$translate`.
    translate_index: std::sync::OnceLock<FastMap<String, Vec<Arc<ConceptMap>>>>,
    /// Compiled CodeSystems from the package store (shared between snapshots: the store does not change).
    pkg_code_systems: Cache<Option<Arc<CodeSystem>>>,
    /// Compiled ValueSets (per snapshot: resources may change between snapshots).
    vs_cache: Cache<Option<Arc<CompiledValueSet>>>,
    /// Expansion size limit.
    pub expansion_limit: usize,
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        Snapshot {
            systems: self.systems.clone(),
            store: self.store.clone(),
            code_systems: self.code_systems.clone(),
            value_sets: self.value_sets.clone(),
            concept_maps: self.concept_maps.clone(),
            inactive_maps: self.inactive_maps.clone(),
            translate_index: std::sync::OnceLock::new(),
            pkg_code_systems: self.pkg_code_systems.clone(),
            vs_cache: Arc::new(RwLock::new(FastMap::default())),
            expansion_limit: self.expansion_limit,
        }
    }
}

fn version_matches(have: Option<&str>, want: &str) -> bool {
    match have {
        Some(h) => h == want || (h.starts_with(want) && matches!(h.as_bytes().get(want.len()), Some(b'.') | Some(b'-'))),
        None => false,
    }
}

fn pick_version<'a, T>(list: &'a [T], version: Option<&str>, ver: impl Fn(&T) -> Option<&str>) -> Option<&'a T> {
    match version {
        None => list.last(),
        Some(v) => list.iter().rev().find(|x| ver(x) == Some(v)).or_else(|| list.iter().rev().find(|x| version_matches(ver(x), v))),
    }
}

/// Split `url|version`.
pub fn split_canonical(c: &str) -> (&str, Option<&str>) {
    match c.split_once('|') {
        Some((u, v)) => (u, Some(v)),
        None => (c, None),
    }
}

impl Snapshot {
    /// An empty snapshot with the default system identity data.
    pub fn empty() -> Snapshot {
        Snapshot {
            systems: Arc::new(Systems::defaults()),
            store: None,
            code_systems: FastMap::default(),
            value_sets: FastMap::default(),
            concept_maps: FastMap::default(),
            inactive_maps: FastSet::default(),
            translate_index: std::sync::OnceLock::new(),
            pkg_code_systems: Arc::new(RwLock::new(FastMap::default())),
            vs_cache: Arc::new(RwLock::new(FastMap::default())),
            expansion_limit: DEFAULT_EXPANSION_LIMIT,
        }
    }

    pub fn systems(&self) -> &Systems {
        &self.systems
    }

    /// Replace the system identity data.
    pub fn set_systems(&mut self, systems: Systems) {
        self.systems = Arc::new(systems);
        self.vs_cache = Arc::new(RwLock::new(FastMap::default()));
    }

    /// Use a package store as a source of CodeSystems and ValueSets (resolved lazily; resources
    /// added to the snapshot win over it).
    pub fn set_package_store(&mut self, store: Arc<PackageStore>) {
        self.store = Some(store);
        self.pkg_code_systems = Arc::new(RwLock::new(FastMap::default()));
        self.vs_cache = Arc::new(RwLock::new(FastMap::default()));
    }

    /// Add a CodeSystem, ValueSet, ConceptMap or NamingSystem (a Bundle adds its entries).
    /// Same url and version as an existing resource: replaces it; otherwise versions sit side by side.
    pub fn add_resource(&mut self, resource: Value, origin: &str) -> Result<(), TermError> {
        let rt = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
        if rt == "Bundle" {
            for e in resource.get("entry").and_then(Value::as_array).into_iter().flatten() {
                if let Some(r) = e.get("resource") {
                    self.add_resource(r.clone(), origin)?;
                }
            }
            return Ok(());
        }
        if rt == "NamingSystem" {
            Arc::make_mut(&mut self.systems).add_naming_system(&resource);
            self.vs_cache = Arc::new(RwLock::new(FastMap::default()));
            return Ok(());
        }
        let Some(url) = resource.get("url").and_then(Value::as_str).map(str::to_string) else {
            return Err(TermError::Resource(format!("{rt} from {origin} has no url")));
        };
        let version = resource.get("version").and_then(Value::as_str).map(str::to_string);
        match rt {
            "CodeSystem" => {
                let cs = Arc::new(CodeSystem::from_json(&resource, origin));
                let key = self.systems.canonical(&url).to_string();
                let list = self.code_systems.entry(key).or_default();
                list.retain(|c| c.version != version);
                list.push(cs);
            }
            "ValueSet" => {
                let list = self.value_sets.entry(url).or_default();
                list.retain(|v| v.get("version").and_then(Value::as_str).map(str::to_string) != version);
                list.push(Arc::new(resource));
            }
            "ConceptMap" => {
                let cm = ConceptMap::from_json(&resource, origin).map_err(|e| TermError::Resource(format!("ConceptMap {url}: {e}")))?;
                self.add_concept_map(Arc::new(cm));
            }
            other => return Err(TermError::Resource(format!("unsupported resource type '{other}' (expected CodeSystem, ValueSet, ConceptMap, NamingSystem or Bundle)"))),
        }
        self.vs_cache = Arc::new(RwLock::new(FastMap::default()));
        Ok(())
    }

    /// Add a compiled ConceptMap (replacing one with the same url and version; it becomes the default version).
    pub fn add_concept_map(&mut self, cm: Arc<ConceptMap>) {
        self.translate_index = std::sync::OnceLock::new();
        let list = self.concept_maps.entry(cm.url.clone()).or_default();
        list.retain(|c| c.version != cm.version);
        list.push(cm);
    }

    /// Make the mapping tables available to `$translate` as ConceptMaps: every version in
    /// `all_versions`, with the `active` ones as the default (unversioned) version of their URL.
    /// A table with no active version answers only when asked for a version.
    pub fn install_tables(&mut self, all_versions: &[Arc<MappingTable>], active: &[Arc<MappingTable>]) {
        for t in all_versions.iter().chain(active.iter()) {
            self.add_concept_map(Arc::new(t.compiled_concept_map()));
        }
        let active_urls: FastSet<String> = active.iter().map(|t| t.url()).collect();
        for t in all_versions {
            if !active_urls.contains(&t.url()) {
                self.inactive_maps.insert(t.url());
            }
        }
        self.inactive_maps.retain(|url| !active_urls.contains(url));
        self.translate_index = std::sync::OnceLock::new();
    }

    /// Load every `*.json` resource file in a directory (not recursive; CodeSystem, ValueSet,
    /// ConceptMap, NamingSystem, Bundle; other resource types are skipped). Returns how many were loaded.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, TermError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| TermError::Io(dir.to_path_buf(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut n = 0;
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| TermError::Io(f.clone(), e))?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| TermError::Json(f.clone(), e))?;
            if matches!(v.get("resourceType").and_then(Value::as_str), Some("CodeSystem" | "ValueSet" | "ConceptMap" | "NamingSystem" | "Bundle")) {
                self.add_resource(v, &f.display().to_string())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Read the ConceptMaps and NamingSystems of FHIR packages (`.tgz` files or unpacked package
    /// directories in `dirs`; the package store does not index these types). Returns how many
    /// resources were loaded.
    pub fn load_package_extras(&mut self, dirs: &[PathBuf]) -> Result<usize, TermError> {
        let mut n = 0;
        for d in dirs {
            let mut paths: Vec<PathBuf> = if d.is_dir() && !d.join("package").is_dir() {
                std::fs::read_dir(d).map_err(|e| TermError::Io(d.clone(), e))?.filter_map(|e| e.ok().map(|e| e.path())).collect()
            } else {
                vec![d.clone()]
            };
            paths.sort();
            for p in paths {
                let wanted = |name: &str| {
                    let base = name.rsplit('/').next().unwrap_or(name);
                    (base.starts_with("ConceptMap-") || base.starts_with("NamingSystem-")) && base.ends_with(".json")
                };
                let mut found: Vec<(String, Vec<u8>)> = Vec::new();
                if p.is_file() && p.extension().is_some_and(|x| x == "tgz") {
                    let f = std::fs::File::open(&p).map_err(|e| TermError::Io(p.clone(), e))?;
                    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
                    for entry in ar.entries().map_err(|e| TermError::Io(p.clone(), e))? {
                        let mut entry = entry.map_err(|e| TermError::Io(p.clone(), e))?;
                        let name = entry.path().map(|x| x.to_string_lossy().to_string()).unwrap_or_default();
                        if name.matches('/').count() <= 1 && wanted(&name) {
                            let mut buf = Vec::new();
                            entry.read_to_end(&mut buf).map_err(|e| TermError::Io(p.clone(), e))?;
                            found.push((name, buf));
                        }
                    }
                } else if p.is_dir() {
                    let pkg = if p.join("package").is_dir() { p.join("package") } else { p.clone() };
                    for e in std::fs::read_dir(&pkg).map_err(|e| TermError::Io(pkg.clone(), e))?.flatten() {
                        let name = e.file_name().to_string_lossy().to_string();
                        if wanted(&name) {
                            found.push((name, std::fs::read(e.path()).map_err(|er| TermError::Io(e.path(), er))?));
                        }
                    }
                }
                found.sort_by(|a, b| a.0.cmp(&b.0));
                for (name, bytes) in found {
                    let origin = format!("{}:{}", p.display(), name);
                    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else { continue };
                    // A package ConceptMap with a problem is skipped, not fatal.
                    if self.add_resource(v, &origin).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Resolve a code system (any alias of its URI; `version` exact or prefix `1` -> `1.2`).
    pub fn code_system(&self, system: &str, version: Option<&str>) -> CsRef {
        let canon = self.systems.canonical(system);
        if let Some(list) = self.code_systems.get(canon)
            && let Some(cs) = pick_version(list, version, |c| c.version.as_deref()) {
                return CsRef::Found(cs.clone());
            }
        if let Some(store) = &self.store {
            for alias in self.systems.aliases_of(system) {
                if self.systems.ignored_package_definition(&alias).is_some() {
                    continue;
                }
                let key = match version {
                    Some(v) => format!("{alias}|{v}"),
                    None => alias.clone(),
                };
                if let Some(hit) = self.pkg_code_systems.read().unwrap().get(&key) {
                    match hit {
                        Some(cs) => return CsRef::Found(cs.clone()),
                        None => continue,
                    }
                }
                let compiled = store
                    .resolve(&key)
                    .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("CodeSystem"))
                    .map(|r| {
                        let origin = store.package_of(&key).map(|p| format!("package {}#{}", p.name, p.version)).unwrap_or_else(|| "package store".into());
                        Arc::new(CodeSystem::from_json(&r, &origin))
                    });
                self.pkg_code_systems.write().unwrap().insert(key, compiled.clone());
                if let Some(cs) = compiled {
                    return CsRef::Found(cs);
                }
            }
        }
        match self.systems.external_name(system) {
            Some(n) => CsRef::External(n.to_string()),
            None => CsRef::Unknown,
        }
    }

    /// Is the system known (loaded, in the package store, or declared external)?
    pub fn knows_system(&self, system: &str) -> bool {
        !matches!(self.code_system(system, None), CsRef::Unknown)
    }

    /// The ValueSet resource for a canonical (`url` or `url|version`).
    pub fn value_set_resource(&self, canonical: &str) -> Option<Arc<Value>> {
        let (url, version) = split_canonical(canonical);
        if let Some(list) = self.value_sets.get(url)
            && let Some(v) = pick_version(list, version, |v| v.get("version").and_then(Value::as_str)) {
                return Some(v.clone());
            }
        let store = self.store.as_ref()?;
        store.resolve(canonical).filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("ValueSet"))
    }

    /// The compiled ValueSet (cached).
    pub fn compiled_value_set(&self, canonical: &str) -> Option<Arc<CompiledValueSet>> {
        self.compiled_value_set_depth(canonical, 0)
    }

    fn compiled_value_set_depth(&self, canonical: &str, depth: usize) -> Option<Arc<CompiledValueSet>> {
        if let Some(hit) = self.vs_cache.read().unwrap().get(canonical) {
            return hit.clone();
        }
        if depth > 16 {
            return None;
        }
        let res = self.value_set_resource(canonical).map(|vs| {
            let r = DepthResolver { snap: self, depth: depth + 1 };
            Arc::new(CompiledValueSet::compile(&vs, &r, depth))
        });
        self.vs_cache.write().unwrap().insert(canonical.to_string(), res.clone());
        res
    }

    /// A ConceptMap by canonical (`url` or `url|version`).
    pub fn concept_map(&self, canonical: &str) -> Option<Arc<ConceptMap>> {
        let (url, version) = split_canonical(canonical);
        if version.is_none() && self.inactive_maps.contains(url) {
            return None;
        }
        let list = self.concept_maps.get(url)?;
        pick_version(list, version, |c| c.version.as_deref()).cloned()
    }

    /// The default ConceptMaps that may map codes of `system` (a group with that source, or with
    /// none), sorted by URL: what an unscoped `$translate` searches, without a scan of every map.
    pub fn concept_maps_from(&self, system: &str) -> Vec<Arc<ConceptMap>> {
        let index = self.translate_index.get_or_init(|| {
            let mut index: FastMap<String, Vec<Arc<ConceptMap>>> = FastMap::default();
            for map in self.concept_maps() {
                for group in &map.groups {
                    index.entry(group.source.as_deref().map_or("", |s| self.systems.canonical(s)).to_string()).or_default().push(map.clone());
                }
            }
            // Maps with a source-less group apply to every system: merged into each list here,
            // once, rather than on every call.
            let any_system = index.get("").cloned().unwrap_or_default();
            for (key, maps) in index.iter_mut() {
                if !key.is_empty() {
                    maps.extend(any_system.iter().cloned());
                }
                maps.sort_by(|a, b| a.url.cmp(&b.url));
                maps.dedup_by(|a, b| Arc::ptr_eq(a, b));
            }
            index
        });
        index.get(self.systems.canonical(system)).or_else(|| index.get("")).cloned().unwrap_or_default()
    }

    /// The default version of every ConceptMap.
    pub fn concept_maps(&self) -> impl Iterator<Item = &Arc<ConceptMap>> {
        self.concept_maps.iter().filter(|(url, _)| !self.inactive_maps.contains(*url)).filter_map(|(_, l)| l.last())
    }

    /// Every version of every own CodeSystem (not the package store's).
    pub fn own_code_systems(&self) -> impl Iterator<Item = &Arc<CodeSystem>> {
        self.code_systems.values().flatten()
    }
}

struct DepthResolver<'a> {
    snap: &'a Snapshot,
    depth: usize,
}

impl Resolver for DepthResolver<'_> {
    fn code_system(&self, system: &str, version: Option<&str>) -> CsRef {
        self.snap.code_system(system, version)
    }
    fn value_set(&self, canonical: &str) -> Option<Arc<CompiledValueSet>> {
        self.snap.compiled_value_set_depth(canonical, self.depth)
    }
    fn canonical_system<'b>(&'b self, system: &'b str) -> &'b str {
        self.snap.systems.canonical(system)
    }
}

/// The shared service: the current [`Snapshot`], swapped as a whole.
pub struct TerminologyService {
    current: RwLock<Arc<Snapshot>>,
}

impl TerminologyService {
    /// A service over a prepared snapshot.
    pub fn new(snapshot: Snapshot) -> TerminologyService {
        TerminologyService { current: RwLock::new(Arc::new(snapshot)) }
    }

    /// The usual set-up: CodeSystems/ValueSets from the package store, ConceptMaps and
    /// NamingSystems from the package files in `package_dirs`, and every resource in
    /// `resource_dirs` (e.g. `../shared/terminology/`).
    pub fn load(store: Option<Arc<PackageStore>>, package_dirs: &[PathBuf], resource_dirs: &[PathBuf]) -> Result<Arc<TerminologyService>, TermError> {
        let mut s = Snapshot::empty();
        if let Some(st) = store {
            s.set_package_store(st);
        }
        s.load_package_extras(package_dirs)?;
        for d in resource_dirs {
            s.load_dir(d)?;
        }
        Ok(Arc::new(TerminologyService::new(s)))
    }

    /// The current snapshot (hold it for a consistent view across several calls).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap().clone()
    }

    /// Replace the snapshot.
    pub fn swap(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        std::mem::replace(&mut *self.current.write().unwrap(), Arc::new(snapshot))
    }

    /// Copy-on-write change: `f` edits a copy of the current snapshot, which then replaces it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Snapshot) -> Result<R, TermError>) -> Result<R, TermError> {
        let mut guard = self.current.write().unwrap();
        let mut next = (**guard).clone();
        let r = f(&mut next)?;
        *guard = Arc::new(next);
        Ok(r)
    }

    /// Add a resource coming from the database (CodeSystem, ValueSet, ConceptMap, NamingSystem, Bundle).
    pub fn add_resource(&self, resource: Value) -> Result<(), TermError> {
        self.update(|s| s.add_resource(resource, "database"))
    }

    /// Publish mapping tables to `$translate` (see [`Snapshot::install_tables`]).
    pub fn install_tables(&self, all_versions: &[Arc<MappingTable>], active: &[Arc<MappingTable>]) {
        let _ = self.update(|s| {
            s.install_tables(all_versions, active);
            Ok(())
        });
    }
}

impl fhir_profiles::Terminology for TerminologyService {
    fn validate_code(&self, value_set: &str, system: Option<&str>, code: &str) -> fhir_profiles::Membership {
        self.snapshot().membership(value_set, system, code)
    }
    fn value_set_name(&self, value_set: &str) -> Option<String> {
        let snap = self.snapshot();
        snap.compiled_value_set(value_set).map(|v| v.label().to_string())
    }
}

impl Snapshot {
    /// Membership as the profile validator needs it.
    pub fn membership(&self, value_set: &str, system: Option<&str>, code: &str) -> fhir_profiles::Membership {
        use crate::valueset::Check;
        let Some(vs) = self.compiled_value_set(value_set).or_else(|| self.compiled_value_set(split_canonical(value_set).0)) else {
            return fhir_profiles::Membership::Unknown(format!("the value set {value_set} is not available"));
        };
        let sys = system.map(|s| self.systems.canonical(s));
        match vs.check(sys, code) {
            Check::Member { .. } => fhir_profiles::Membership::Member,
            Check::NotMember => fhir_profiles::Membership::NotMember,
            Check::Unknown(r) => fhir_profiles::Membership::Unknown(r),
        }
    }
}
