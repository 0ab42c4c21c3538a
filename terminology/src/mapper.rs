//! The ingestion mapper: adds the international coding beside every original coding that an
//! active mapping table maps, and reports the codes of mappable systems that no table maps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::FastMap;
use crate::conceptmap::Equivalence;
use crate::systems::Systems;
use crate::table::MappingTable;

/// Extension on an added Coding: the mapping table (ConceptMap `url|version`) that produced it (valueCanonical).
pub const EXT_MAPPED_BY: &str = "http://jpfhir.jp/fhir/gateway/StructureDefinition/mapped-by";
/// Extension on an added Coding: the ConceptMap equivalence of the mapping (valueCode).
pub const EXT_MAPPED_EQUIVALENCE: &str = "http://jpfhir.jp/fhir/gateway/StructureDefinition/mapped-equivalence";
/// Extension on a bare Coding (one that is not in a `coding` array, e.g. `Bundle.meta.tag`): the
/// mapped Coding (valueCoding), since a sibling cannot be added there.
pub const EXT_MAPPED_CODING: &str = "http://jpfhir.jp/fhir/gateway/StructureDefinition/mapped-coding";

/// A target: row `row` of table `table` (indices into the mapper's tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRef {
    pub table: u32,
    pub row: u32,
}

/// Targets of one source code. No allocation for the usual single target.
#[derive(Debug, Clone)]
pub enum Targets {
    /// The table lists the code as `unmatched`/`disjoint` (table index).
    Unmatched(u32),
    One(TargetRef),
    Many(Box<[TargetRef]>),
}

impl Targets {
    pub fn as_slice(&self) -> &[TargetRef] {
        match self {
            Targets::Unmatched(_) => &[],
            Targets::One(r) => std::slice::from_ref(r),
            Targets::Many(v) => v,
        }
    }
    fn table(&self) -> u32 {
        match self {
            Targets::Unmatched(t) => *t,
            Targets::One(r) => r.table,
            Targets::Many(v) => v[0].table,
        }
    }
    fn push(&mut self, r: TargetRef) {
        *self = match std::mem::replace(self, Targets::Unmatched(0)) {
            Targets::Unmatched(_) => Targets::One(r),
            Targets::One(a) => Targets::Many(vec![a, r].into_boxed_slice()),
            Targets::Many(v) => {
                let mut v = v.into_vec();
                v.push(r);
                Targets::Many(v.into_boxed_slice())
            }
        }
    }
}

#[derive(Default)]
struct SystemEntry {
    global: FastMap<Box<str>, Targets>,
    by_institution: FastMap<Box<str>, FastMap<Box<str>, Targets>>,
}

/// A coding that was mapped.
#[derive(Debug, Clone)]
pub struct MappedCode {
    pub source_system: String,
    pub source_code: String,
    pub target_system: Arc<str>,
    pub target_code: String,
    pub equivalence: Equivalence,
    /// ConceptMap `url|version` of the table that produced it.
    pub table: Arc<str>,
}

/// What [`Mapper::map_resource`] did.
#[derive(Debug, Default, Clone)]
pub struct MappingReport {
    /// Codings added (one per target).
    pub mapped: Vec<MappedCode>,
    /// Codes of mappable source systems (systems that some table maps from) without a mapping: (system, code).
    pub unmapped: Vec<(String, String)>,
    /// Codes a table explicitly marks `unmatched`/`disjoint` (reviewed, nothing to add; not queued).
    pub explicitly_unmatched: usize,
}

struct IndexedTable {
    table: Arc<MappingTable>,
    target_system: Arc<str>,
    canonical: Arc<str>,
}

/// Immutable index of the active mapping tables. Build one per activation state and share it (`Arc`).
/// The index holds (table, row) references: building it allocates one key per source code.
pub struct Mapper {
    by_system: FastMap<Box<str>, u32>,
    entries: Vec<SystemEntry>,
    tables: Vec<IndexedTable>,
}

fn fill(dest: &mut FastMap<Box<str>, Targets>, t: &MappingTable, ti: u32) {
    dest.reserve(t.rows.len());
    for (ri, r) in t.rows.iter().enumerate() {
        let code = r.source_code.as_str();
        let usable = r.equivalence.is_match() && !r.target_code.is_empty();
        let tref = TargetRef { table: ti, row: ri as u32 };
        match dest.get_mut(code) {
            // a code already indexed by an earlier table keeps that table's targets
            Some(existing) if existing.table() != ti => {}
            Some(existing) => {
                if usable {
                    existing.push(tref);
                }
            }
            None => {
                dest.insert(code.into(), if usable { Targets::One(tref) } else { Targets::Unmatched(ti) });
            }
        }
    }
}

fn is_mapper_output(obj: &Map<String, Value>) -> bool {
    obj.get("extension").and_then(Value::as_array).is_some_and(|a| a.iter().any(|e| e.get("url").and_then(Value::as_str) == Some(EXT_MAPPED_BY)))
}

impl Mapper {
    /// Index the given (active) tables. Every alias of a source system is indexed, so a coding
    /// using the OID form of a system maps like the URL form. When two tables of the same scope map
    /// the same code, the one listed first wins.
    pub fn new(tables: &[Arc<MappingTable>], systems: &Systems) -> Mapper {
        let mut m = Mapper { by_system: FastMap::default(), entries: Vec::new(), tables: Vec::new() };
        for t in tables {
            let canon = systems.canonical(&t.meta.source_system).to_string();
            let idx = match m.by_system.get(canon.as_str()) {
                Some(&i) => i,
                None => {
                    let i = m.entries.len() as u32;
                    m.entries.push(SystemEntry::default());
                    for alias in systems.aliases_of(&canon).into_iter().chain([canon.clone(), t.meta.source_system.clone()]) {
                        m.by_system.entry(alias.into_boxed_str()).or_insert(i);
                    }
                    i
                }
            };
            let ti = m.tables.len() as u32;
            m.tables.push(IndexedTable { table: t.clone(), target_system: Arc::from(t.meta.target_system.as_str()), canonical: Arc::from(t.canonical()) });
            let entry = &mut m.entries[idx as usize];
            let dest = match &t.meta.institution {
                Some(inst) => entry.by_institution.entry(inst.as_str().into()).or_default(),
                None => &mut entry.global,
            };
            fill(dest, t, ti);
        }
        m
    }

    /// `url|version` of every indexed table.
    pub fn tables(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.canonical.to_string()).collect()
    }

    /// Is some table mapping from this system?
    pub fn is_mappable_system(&self, system: &str) -> bool {
        self.by_system.contains_key(system)
    }

    /// Targets for (system, code) for an institution: its own tables first, then the global ones.
    /// `None`: the system is not mappable. `Some(None)`: mappable, no entry for the code.
    #[inline]
    pub fn lookup(&self, system: &str, code: &str, institution: &str) -> Option<Option<&Targets>> {
        let &i = self.by_system.get(system)?;
        let e = &self.entries[i as usize];
        if !e.by_institution.is_empty()
            && let Some(t) = e.by_institution.get(institution).and_then(|m| m.get(code)) {
                return Some(Some(t));
            }
        Some(e.global.get(code))
    }

    /// (target system, target code) of a target.
    pub fn target(&self, r: TargetRef) -> (&str, &str) {
        let t = &self.tables[r.table as usize];
        (&t.target_system, &t.table.rows[r.row as usize].target_code)
    }

    /// The Coding to add for a target: system/code/display, `userSelected` false, and the
    /// `mapped-by` (table url|version) and `mapped-equivalence` extensions.
    pub fn coding(&self, r: TargetRef) -> Value {
        let t = &self.tables[r.table as usize];
        let row = &t.table.rows[r.row as usize];
        let mut c = Map::new();
        c.insert(
            "extension".into(),
            json!([
                {"url": EXT_MAPPED_BY, "valueCanonical": &*t.canonical},
                {"url": EXT_MAPPED_EQUIVALENCE, "valueCode": row.equivalence.as_str()}
            ]),
        );
        c.insert("system".into(), Value::String(t.target_system.to_string()));
        c.insert("code".into(), Value::String(row.target_code.clone()));
        if !row.target_display.is_empty() {
            c.insert("display".into(), Value::String(row.target_display.clone()));
        }
        c.insert("userSelected".into(), Value::Bool(false));
        Value::Object(c)
    }

    fn mapped_code(&self, source_system: String, source_code: String, r: TargetRef) -> MappedCode {
        let t = &self.tables[r.table as usize];
        let row = &t.table.rows[r.row as usize];
        MappedCode { source_system, source_code, target_system: t.target_system.clone(), target_code: row.target_code.clone(), equivalence: row.equivalence, table: t.canonical.clone() }
    }

    /// Add the mapped codings to every coded element of `resource` (CodeableConcept.coding and
    /// bare Codings, at any depth, contained resources and Bundle entries included). Originals
    /// are never changed; codings the mapper added earlier are neither mapped again nor duplicated.
    /// One level of chaining: an added coding is itself mapped (e.g. local code -> JLAC10 -> LOINC).
    pub fn map_resource(&self, resource: &mut Value, institution: &str) -> MappingReport {
        let mut report = MappingReport::default();
        self.walk(resource, institution, &mut report);
        report
    }

    /// Remove what an earlier mapping added (codings and bare-coding extensions carrying the
    /// mapper's extensions), then map again with this mapper (used to re-map stored data with a
    /// new table version).
    pub fn remap_resource(&self, resource: &mut Value, institution: &str) -> MappingReport {
        strip_mapped(resource);
        self.map_resource(resource, institution)
    }

    fn walk(&self, v: &mut Value, inst: &str, report: &mut MappingReport) {
        match v {
            Value::Object(obj) => {
                // One pass over the (few) keys rather than four hashed look-ups on every object of
                // every submitted resource.
                let (mut codings, mut system, mut code, mut value) = (false, false, false, false);
                for (k, child) in obj.iter() {
                    match k.as_str() {
                        "coding" => codings = child.is_array(),
                        "system" => system = child.is_string(),
                        "code" => code = child.is_string(),
                        "value" => value = true,
                        _ => {}
                    }
                }
                if codings {
                    if let Some(Value::Array(codings)) = obj.get_mut("coding") {
                        self.map_codings(codings, inst, report);
                    }
                    for (k, child) in obj.iter_mut() {
                        if k != "coding" && (child.is_object() || child.is_array()) {
                            self.walk(child, inst, report);
                        }
                    }
                    return;
                }
                if system && code && !value {
                    self.map_bare(obj, inst, report);
                    return;
                }
                for (_, child) in obj.iter_mut() {
                    if child.is_object() || child.is_array() {
                        self.walk(child, inst, report);
                    }
                }
            }
            Value::Array(a) => {
                for x in a {
                    if x.is_object() || x.is_array() {
                        self.walk(x, inst, report);
                    }
                }
            }
            _ => {}
        }
    }

    fn resolve<'a>(&'a self, system: &str, code: &str, inst: &str, report: &mut MappingReport) -> Option<&'a [TargetRef]> {
        match self.lookup(system, code, inst) {
            None => None,
            Some(Some(Targets::Unmatched(_))) => {
                report.explicitly_unmatched += 1;
                None
            }
            Some(Some(t)) => Some(t.as_slice()),
            Some(None) => {
                report.unmapped.push((system.to_string(), code.to_string()));
                None
            }
        }
    }

    fn map_codings(&self, codings: &mut Vec<Value>, inst: &str, report: &mut MappingReport) {
        let mut adds: Vec<(Option<usize>, TargetRef)> = Vec::new();
        for (i, c) in codings.iter().enumerate() {
            let Some(obj) = c.as_object() else { continue };
            let (Some(system), Some(code)) = (obj.get("system").and_then(Value::as_str), obj.get("code").and_then(Value::as_str)) else { continue };
            if is_mapper_output(obj) {
                continue;
            }
            if let Some(targets) = self.resolve(system, code, inst, report) {
                adds.extend(targets.iter().map(|t| (Some(i), *t)));
            }
        }
        if adds.is_empty() {
            return;
        }
        // one level of chaining: map the new codings too
        let first_level = adds.len();
        for k in 0..first_level {
            let (sys, code) = self.target(adds[k].1);
            if let Some(Some(ts)) = self.lookup(sys, code, inst) {
                let more: Vec<TargetRef> = ts.as_slice().to_vec();
                adds.extend(more.into_iter().map(|t| (None, t)));
            }
        }
        for (src, t) in adds {
            let (tsys, tcode) = self.target(t);
            let exists = codings.iter().any(|c| c.get("system").and_then(Value::as_str) == Some(tsys) && c.get("code").and_then(Value::as_str) == Some(tcode));
            if !exists {
                let (src_system, src_code) = match src {
                    Some(i) => (
                        codings[i].get("system").and_then(Value::as_str).unwrap_or("").to_string(),
                        codings[i].get("code").and_then(Value::as_str).unwrap_or("").to_string(),
                    ),
                    None => (String::from("(chained)"), String::new()),
                };
                codings.push(self.coding(t));
                report.mapped.push(self.mapped_code(src_system, src_code, t));
            }
        }
    }

    fn map_bare(&self, obj: &mut Map<String, Value>, inst: &str, report: &mut MappingReport) {
        if is_mapper_output(obj) {
            return;
        }
        let (system, code) = match (obj.get("system"), obj.get("code")) {
            (Some(Value::String(s)), Some(Value::String(c))) => (s.as_str(), c.as_str()),
            _ => return,
        };
        let Some(targets) = self.resolve(system, code, inst, report) else { return };
        let (system, code) = (system.to_string(), code.to_string());
        let ext = obj.entry("extension").or_insert_with(|| Value::Array(Vec::new()));
        let Some(arr) = ext.as_array_mut() else { return };
        for &t in targets {
            let (tsys, tcode) = self.target(t);
            let exists = arr.iter().any(|e| {
                e.get("url").and_then(Value::as_str) == Some(EXT_MAPPED_CODING) && e.pointer("/valueCoding/system").and_then(Value::as_str) == Some(tsys) && e.pointer("/valueCoding/code").and_then(Value::as_str) == Some(tcode)
            });
            if !exists {
                arr.push(json!({"url": EXT_MAPPED_CODING, "valueCoding": self.coding(t)}));
                report.mapped.push(self.mapped_code(system.clone(), code.clone(), t));
            }
        }
    }
}

/// Remove every coding / extension the mapper added (see [`Mapper::remap_resource`]).
pub fn strip_mapped(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            if let Some(Value::Array(codings)) = obj.get_mut("coding") {
                codings.retain(|c| !c.as_object().is_some_and(is_mapper_output));
            }
            if let Some(Value::Array(ext)) = obj.get_mut("extension") {
                ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(EXT_MAPPED_CODING));
                if ext.is_empty() {
                    obj.remove("extension");
                }
            }
            for (_, c) in obj.iter_mut() {
                strip_mapped(c);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_mapped),
        _ => {}
    }
}

/// One line of the unmapped-code queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmappedEntry {
    pub institution: String,
    pub system: String,
    pub code: String,
    pub count: u64,
}

/// In-memory unmapped-code queue, counted per institution, code system and code. The gateway
/// reads it through its API and persists it (e.g. by draining it into the database periodically).
#[derive(Default)]
pub struct UnmappedQueue {
    inner: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl UnmappedQueue {
    pub fn new() -> UnmappedQueue {
        UnmappedQueue::default()
    }

    /// Count the unmapped codes of one mapping report.
    pub fn record(&self, institution: &str, report: &MappingReport) {
        if report.unmapped.is_empty() {
            return;
        }
        let mut g = self.inner.lock().unwrap();
        for (s, c) in &report.unmapped {
            *g.entry((institution.to_string(), s.clone(), c.clone())).or_insert(0) += 1;
        }
    }

    /// Entries, optionally for one institution and/or system, sorted by institution, system, code.
    pub fn entries(&self, institution: Option<&str>, system: Option<&str>) -> Vec<UnmappedEntry> {
        self.inner
            .lock()
            .unwrap()
            .iter()
            .filter(|((i, s, _), _)| institution.is_none_or(|x| x == i) && system.is_none_or(|x| x == s))
            .map(|((i, s, c), n)| UnmappedEntry { institution: i.clone(), system: s.clone(), code: c.clone(), count: *n })
            .collect()
    }

    /// Per (institution, system): number of distinct codes and total occurrences.
    pub fn summary(&self) -> Vec<(String, String, usize, u64)> {
        let mut out: BTreeMap<(String, String), (usize, u64)> = BTreeMap::new();
        for ((i, s, _), n) in self.inner.lock().unwrap().iter() {
            let e = out.entry((i.clone(), s.clone())).or_insert((0, 0));
            e.0 += 1;
            e.1 += n;
        }
        out.into_iter().map(|((i, s), (d, n))| (i, s, d, n)).collect()
    }

    /// Drop the entries that `mapper` now maps (after a new table version is activated).
    pub fn retain_unmapped(&self, mapper: &Mapper) {
        self.inner.lock().unwrap().retain(|(i, s, c), _| !matches!(mapper.lookup(s, c, i), Some(Some(_))));
    }

    /// Take every entry out (for persisting).
    pub fn drain(&self) -> Vec<UnmappedEntry> {
        std::mem::take(&mut *self.inner.lock().unwrap()).into_iter().map(|((i, s, c), n)| UnmappedEntry { institution: i, system: s, code: c, count: n }).collect()
    }
}

/// Progress of a background re-mapping job (the gateway runs the job over stored resources,
/// calling [`Mapper::remap_resource`] for each, and exposes this through its API).
#[derive(Debug, Default)]
pub struct RemapProgress {
    pub total: AtomicUsize,
    pub done: AtomicUsize,
    pub changed: AtomicUsize,
    pub failed: AtomicUsize,
    pub cancelled: AtomicBool,
    pub finished: AtomicBool,
}

/// A point-in-time view of [`RemapProgress`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemapStatus {
    pub total: usize,
    pub done: usize,
    pub changed: usize,
    pub failed: usize,
    pub cancelled: bool,
    pub finished: bool,
}

impl RemapProgress {
    pub fn status(&self) -> RemapStatus {
        RemapStatus {
            total: self.total.load(Ordering::Relaxed),
            done: self.done.load(Ordering::Relaxed),
            changed: self.changed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
        }
    }

    /// Re-map a batch in place; returns the indices of the resources whose content changed
    /// (the caller writes those back). Stops early when cancelled.
    pub fn remap_batch(&self, mapper: &Mapper, batch: &mut [(Value, String)]) -> Vec<usize> {
        let mut changed = Vec::new();
        for (i, (res, inst)) in batch.iter_mut().enumerate() {
            if self.cancelled.load(Ordering::Relaxed) {
                break;
            }
            let before = res.clone();
            mapper.remap_resource(res, inst);
            if *res != before {
                changed.push(i);
                self.changed.fetch_add(1, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }
}
