//! Mapping tables: versioned CSV files with a `#` metadata header (see `mapping-tables/README.md`),
//! a strict checker whose report names the bad rows, conversion to and from ConceptMap, and diff.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::FastMap;
use crate::conceptmap::{ConceptMap, Equivalence, Group, TableGroup};

/// Base of the canonical URL of a table's ConceptMap (`<base><name>`), unless the header gives `url`.
pub const CONCEPT_MAP_BASE: &str = "http://jpfhir.jp/fhir/gateway/ConceptMap/";
/// Extension on the ConceptMap: the table's effective date (valueDate).
pub const EXT_EFFECTIVE_DATE: &str = "http://jpfhir.jp/fhir/gateway/StructureDefinition/mapping-table-effective-date";
/// Extension on the ConceptMap: the institution (10-digit medical institution code) the table is scoped to (valueString).
pub const EXT_INSTITUTION: &str = "http://jpfhir.jp/fhir/gateway/StructureDefinition/mapping-table-institution";
/// The CSV column header, exactly.
pub const COLUMNS: [&str; 6] = ["source_code", "source_display", "target_code", "target_display", "equivalence", "comment"];

/// Table metadata (the `#` header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableMeta {
    pub name: String,
    pub version: String,
    /// `YYYY-MM-DD`.
    pub effective_date: String,
    pub source_system: String,
    pub target_system: String,
    pub publisher: String,
    pub description: Option<String>,
    /// 10-digit medical institution code when the table applies to one institution only.
    pub institution: Option<String>,
    /// ConceptMap canonical URL (default `CONCEPT_MAP_BASE + name`).
    pub url: Option<String>,
}

/// One mapping row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Row {
    pub source_code: String,
    pub source_display: String,
    /// Empty for `unmatched`.
    pub target_code: String,
    pub target_display: String,
    pub equivalence: Equivalence,
    pub comment: String,
    /// Line in the CSV (1-based; 0 when the row came from a ConceptMap).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A checked mapping table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingTable {
    pub meta: TableMeta,
    pub rows: Vec<Row>,
}

/// One problem found by the checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// CSV line (1-based), or 0 when not tied to a line.
    pub line: usize,
    /// Data row number (1-based, header excluded), when the problem is in a data row.
    pub row: Option<usize>,
    /// Column or header key concerned.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}", self.line)?;
        }
        if let Some(r) = self.row {
            write!(f, " (row {r})")?;
        }
        if let Some(c) = &self.field {
            write!(f, " [{c}]")?;
        }
        if self.line > 0 || self.row.is_some() || self.field.is_some() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

/// The checker's report on a refused table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableReport {
    pub table: Option<String>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mapping table {} refused: {} problem(s)", self.table.as_deref().unwrap_or("(unnamed)"), self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TableReport {}

impl TableReport {
    /// As an OperationOutcome (one error issue per problem; `expression` names line/row/field).
    pub fn to_operation_outcome(&self) -> Value {
        let issues: Vec<Value> = self
            .problems
            .iter()
            .map(|p| {
                let mut loc = Vec::new();
                if p.line > 0 {
                    loc.push(format!("line {}", p.line));
                }
                if let Some(r) = p.row {
                    loc.push(format!("row {r}"));
                }
                if let Some(c) = &p.field {
                    loc.push(c.clone());
                }
                json!({"severity": "error", "code": "invalid", "diagnostics": p.to_string(), "location": loc})
            })
            .collect();
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

/// Options of the checker.
pub struct CheckOptions<'a> {
    /// Is a system URI known? (e.g. `|s| snapshot.knows_system(s)`); `None`: any absolute URI is accepted.
    pub known_system: Option<&'a dyn Fn(&str) -> bool>,
    /// Stop collecting after this many problems.
    pub max_problems: usize,
}

impl Default for CheckOptions<'_> {
    fn default() -> Self {
        CheckOptions { known_system: None, max_problems: 1000 }
    }
}

struct Collector {
    problems: Vec<Problem>,
    max: usize,
}

impl Collector {
    fn push(&mut self, line: usize, row: Option<usize>, field: Option<&str>, message: String) {
        if self.problems.len() < self.max {
            self.problems.push(Problem { line, row, field: field.map(str::to_string), message });
        }
    }
    fn full(&self) -> bool {
        self.problems.len() >= self.max
    }
}

trait InsertOrRepeat<'a> {
    /// Insert `k -> v` if absent; true when `k` was already there.
    fn try_insert_or_repeat(&mut self, k: &'a str, v: u32) -> bool;
}

impl<'a> InsertOrRepeat<'a> for FastMap<&'a str, u32> {
    fn try_insert_or_repeat(&mut self, k: &'a str, v: u32) -> bool {
        match self.entry(k) {
            std::collections::hash_map::Entry::Occupied(_) => true,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
                false
            }
        }
    }
}

/// Split one CSV record (RFC 4180: commas, double quotes with `""` escapes; no embedded newlines).
fn split_record(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(6);
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        if i < b.len() && b[i] == b'"' {
            let mut field = String::new();
            i += 1;
            let mut start = i;
            loop {
                match line[i..].find('"') {
                    None => return Err(format!("unterminated quoted field starting at column {}", out.len() + 1)),
                    Some(p) => {
                        let q = i + p;
                        if b.get(q + 1) == Some(&b'"') {
                            field.push_str(&line[start..=q]);
                            i = q + 2;
                            start = i;
                        } else {
                            field.push_str(&line[start..q]);
                            i = q + 1;
                            break;
                        }
                    }
                }
            }
            out.push(field);
            match b.get(i) {
                None => return Ok(out),
                Some(b',') => i += 1,
                Some(_) => return Err(format!("unexpected character after the closing quote of column {}", out.len())),
            }
        } else {
            let end = line[i..].find(',').map(|p| i + p);
            let field = &line[i..end.unwrap_or(line.len())];
            if field.contains('"') {
                return Err(format!("stray double quote in unquoted column {}", out.len() + 1));
            }
            out.push(field.to_string());
            match end {
                None => return Ok(out),
                Some(e) => i = e + 1,
            }
        }
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    !rest.is_empty()
        && scheme.len() >= 2
        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !s.contains(char::is_whitespace)
}

fn valid_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn valid_institution(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10 && b.iter().all(u8::is_ascii_digit) && b[0] <= b'4' && (b'1'..=b'3').contains(&b[2])
}

fn norm_key(k: &str) -> String {
    k.trim().to_ascii_lowercase().replace([' ', '_'], "-")
}

impl MappingTable {
    /// Parse and check a CSV table. Any problem refuses the whole table; the report names every
    /// bad line (up to `max_problems`).
    pub fn parse_csv(text: &str, opts: &CheckOptions) -> Result<MappingTable, TableReport> {
        let mut col = Collector { problems: Vec::new(), max: opts.max_problems.max(1) };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut meta_fields: HashMap<String, (usize, String)> = HashMap::new();
        let mut header_seen = false;
        let mut rows: Vec<Row> = Vec::new();
        let mut data_row = 0usize;
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                if !header_seen
                    && let Some((k, v)) = rest.split_once(':') {
                        let key = norm_key(k);
                        let known = ["name", "version", "effective-date", "source-system", "target-system", "publisher", "description", "institution", "url"];
                        if !known.contains(&key.as_str()) {
                            col.push(line_no, None, Some(&key), format!("unknown metadata key '{}' (known: {})", k.trim(), known.join(", ")));
                        } else if let Some((prev, _)) = meta_fields.get(&key) {
                            col.push(line_no, None, Some(&key), format!("metadata key '{key}' repeated (first on line {prev})"));
                        } else {
                            meta_fields.insert(key, (line_no, v.trim().to_string()));
                        }
                    }
                continue;
            }
            if !header_seen {
                header_seen = true;
                match split_record(line) {
                    Ok(cols) => {
                        let cols: Vec<String> = cols.iter().map(|c| c.trim().to_string()).collect();
                        if cols != COLUMNS {
                            col.push(line_no, None, None, format!("column header must be '{}', found '{}'", COLUMNS.join(","), cols.join(",")));
                        }
                    }
                    Err(e) => col.push(line_no, None, None, format!("malformed CSV in the column header: {e}")),
                }
                continue;
            }
            data_row += 1;
            if col.full() {
                continue;
            }
            let fields = match split_record(line) {
                Ok(f) => f,
                Err(e) => {
                    col.push(line_no, Some(data_row), None, format!("malformed CSV: {e}"));
                    continue;
                }
            };
            if fields.len() != COLUMNS.len() {
                col.push(line_no, Some(data_row), None, format!("wrong number of columns: expected {}, found {}", COLUMNS.len(), fields.len()));
                continue;
            }
            let mut it = fields.into_iter();
            let (sc, sd, tc, td, eq, cm) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let Some(equivalence) = Equivalence::parse(eq.trim()) else {
                col.push(
                    line_no,
                    Some(data_row),
                    Some("equivalence"),
                    format!("unknown equivalence '{eq}' (R4 ConceptMap equivalence codes: {})", Equivalence::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")),
                );
                continue;
            };
            rows.push(Row { source_code: sc, source_display: sd, target_code: tc, target_display: td, equivalence, comment: cm, line: line_no });
        }
        if !header_seen {
            col.push(0, None, None, format!("no column header line ('{}')", COLUMNS.join(",")));
        }
        let get = |k: &str| meta_fields.get(k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
        let meta = TableMeta {
            name: get("name").unwrap_or_default(),
            version: get("version").unwrap_or_default(),
            effective_date: get("effective-date").unwrap_or_default(),
            source_system: get("source-system").unwrap_or_default(),
            target_system: get("target-system").unwrap_or_default(),
            publisher: get("publisher").unwrap_or_default(),
            description: get("description"),
            institution: get("institution"),
            url: get("url"),
        };
        let line_of = |k: &str| meta_fields.get(k).map(|(l, _)| *l).unwrap_or(0);
        let table = MappingTable { meta, rows };
        table.check_into(&mut col, opts, &line_of);
        if col.problems.is_empty() {
            Ok(table)
        } else {
            Err(TableReport { table: Some(table.meta.name.clone()).filter(|n| !n.is_empty()), problems: col.problems })
        }
    }

    /// Check metadata and rows (used by both the CSV and the ConceptMap paths).
    pub fn check(&self, opts: &CheckOptions) -> Result<(), TableReport> {
        let mut col = Collector { problems: Vec::new(), max: opts.max_problems.max(1) };
        self.check_into(&mut col, opts, &|_| 0);
        if col.problems.is_empty() { Ok(()) } else { Err(TableReport { table: Some(self.meta.name.clone()), problems: col.problems }) }
    }

    fn check_into(&self, col: &mut Collector, opts: &CheckOptions, line_of: &dyn Fn(&str) -> usize) {
        let m = &self.meta;
        for (key, v) in [("name", &m.name), ("version", &m.version), ("effective-date", &m.effective_date), ("source-system", &m.source_system), ("target-system", &m.target_system), ("publisher", &m.publisher)] {
            if v.trim().is_empty() {
                col.push(line_of(key), None, Some(key), format!("metadata '{key}' is missing or blank"));
            }
        }
        if !m.name.is_empty() && !m.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')) {
            col.push(line_of("name"), None, Some("name"), format!("name '{}' may only contain A-Z a-z 0-9 - . (it becomes the ConceptMap id)", m.name));
        }
        if !m.effective_date.is_empty() && !valid_date(&m.effective_date) {
            col.push(line_of("effective-date"), None, Some("effective-date"), format!("effective date '{}' is not a valid YYYY-MM-DD date", m.effective_date));
        }
        if let Some(i) = &m.institution
            && !valid_institution(i) {
                col.push(line_of("institution"), None, Some("institution"), format!("institution '{i}' is not a 10-digit medical institution code ([0-4][0-9][1-3][0-9]{{7}})"));
            }
        if let Some(u) = &m.url
            && !is_absolute_uri(u) {
                col.push(line_of("url"), None, Some("url"), format!("url '{u}' is not an absolute URI"));
            }
        for (key, sys) in [("source-system", &m.source_system), ("target-system", &m.target_system)] {
            if sys.is_empty() {
                continue;
            }
            if !is_absolute_uri(sys) {
                col.push(line_of(key), None, Some(key), format!("{key} '{sys}' is not an absolute URI"));
            } else if let Some(known) = opts.known_system
                && !known(sys) {
                    col.push(line_of(key), None, Some(key), format!("unknown code system '{sys}' in {key}"));
                }
        }
        if !m.source_system.is_empty() && m.source_system == m.target_system {
            col.push(line_of("target-system"), None, Some("target-system"), "source and target systems are the same".into());
        }
        // rows
        // first row of each source code; rows of codes seen more than once are grouped afterwards
        let mut first: FastMap<&str, u32> = FastMap::default();
        first.reserve(self.rows.len());
        let mut repeated: Vec<usize> = Vec::new();
        for (i, r) in self.rows.iter().enumerate() {
            let row = Some(i + 1);
            let line = r.line;
            if r.source_code.trim().is_empty() {
                col.push(line, row, Some("source_code"), "source_code is blank".into());
            } else if r.source_code.trim() != r.source_code {
                col.push(line, row, Some("source_code"), format!("source_code '{}' has leading or trailing spaces", r.source_code));
            }
            if r.target_code.trim() != r.target_code {
                col.push(line, row, Some("target_code"), format!("target_code '{}' has leading or trailing spaces", r.target_code));
            }
            match (r.equivalence, r.target_code.is_empty()) {
                (Equivalence::Unmatched, false) => col.push(line, row, Some("target_code"), "an 'unmatched' row must not have a target_code".into()),
                (e, true) if e != Equivalence::Unmatched => col.push(line, row, Some("target_code"), format!("target_code is blank (only 'unmatched' rows may omit it; this row says '{e}')")),
                _ => {}
            }
            if col.full() {
                return;
            }
            if first.try_insert_or_repeat(r.source_code.as_str(), i as u32) {
                repeated.push(i);
            }
        }
        let mut by_source: FastMap<&str, Vec<usize>> = FastMap::default();
        for &i in &repeated {
            let code = self.rows[i].source_code.as_str();
            by_source.entry(code).or_insert_with(|| vec![first[code] as usize]).push(i);
        }
        let mut conflicts: Vec<(usize, Problem)> = Vec::new();
        for (src, idxs) in &by_source {
            if idxs.len() < 2 {
                continue;
            }
            let first = &self.rows[idxs[0]];
            for &j in &idxs[1..] {
                let r = &self.rows[j];
                let same_target = idxs.iter().take_while(|&&k| k != j).find(|&&k| self.rows[k].target_code == r.target_code).map(|&k| &self.rows[k]);
                let msg = if let Some(prev) = same_target {
                    if prev.equivalence == r.equivalence && prev.target_display == r.target_display && prev.comment == r.comment {
                        format!("duplicate row: source code '{src}' -> '{}' already on line {}", r.target_code, prev.line)
                    } else {
                        format!("duplicate source row with conflicting content: source code '{src}' -> '{}' is also on line {} with equivalence '{}' (here '{}')", r.target_code, prev.line, prev.equivalence, r.equivalence)
                    }
                } else {
                    let exclusive = |e: Equivalence| matches!(e, Equivalence::Equivalent | Equivalence::Equal | Equivalence::Unmatched);
                    let clash = idxs.iter().take_while(|&&k| k != j).map(|&k| &self.rows[k]).find(|p| exclusive(p.equivalence) || exclusive(r.equivalence));
                    match clash {
                        Some(p) => format!(
                            "duplicate source row with a conflicting target: source code '{src}' maps to '{}' ({}) here and to '{}' ({}) on line {}",
                            r.target_code, r.equivalence, p.target_code, p.equivalence, p.line
                        ),
                        None => continue,
                    }
                };
                let _ = first;
                conflicts.push((r.line, Problem { line: r.line, row: Some(j + 1), field: Some("source_code".into()), message: msg }));
            }
        }
        conflicts.sort_by_key(|(l, p)| (*l, p.row));
        for (_, p) in conflicts {
            col.push(p.line, p.row, p.field.as_deref(), p.message);
        }
    }

    /// The ConceptMap canonical URL.
    pub fn url(&self) -> String {
        self.meta.url.clone().unwrap_or_else(|| format!("{CONCEPT_MAP_BASE}{}", self.meta.name))
    }

    /// `url|version`.
    pub fn canonical(&self) -> String {
        format!("{}|{}", self.url(), self.meta.version)
    }

    /// Write the table as CSV (metadata header, column header, rows).
    pub fn to_csv(&self) -> String {
        let m = &self.meta;
        let mut s = String::with_capacity(128 + self.rows.len() * 64);
        s.push_str(&format!("# name: {}\n# version: {}\n# effective-date: {}\n# source-system: {}\n# target-system: {}\n# publisher: {}\n", m.name, m.version, m.effective_date, m.source_system, m.target_system, m.publisher));
        if let Some(d) = &m.description {
            s.push_str(&format!("# description: {}\n", d.replace('\n', " ")));
        }
        if let Some(i) = &m.institution {
            s.push_str(&format!("# institution: {i}\n"));
        }
        if let Some(u) = &m.url {
            s.push_str(&format!("# url: {u}\n"));
        }
        s.push_str(&COLUMNS.join(","));
        s.push('\n');
        for r in &self.rows {
            let cols = [quote(&r.source_code), quote(&r.source_display), quote(&r.target_code), quote(&r.target_display), r.equivalence.as_str().to_string(), quote(&r.comment)];
            s.push_str(&cols.join(","));
            s.push('\n');
        }
        s
    }

    /// The table as an R4 ConceptMap resource (one group; rows with the same source code become
    /// one element with several targets).
    pub fn to_concept_map(&self) -> Value {
        let m = &self.meta;
        let mut order: Vec<&str> = Vec::new();
        let mut elems: FastMap<&str, (String, Vec<Value>)> = FastMap::default();
        for r in &self.rows {
            let e = elems.entry(r.source_code.as_str()).or_insert_with(|| {
                order.push(r.source_code.as_str());
                (r.source_display.clone(), Vec::new())
            });
            let mut t = Map::new();
            if !r.target_code.is_empty() {
                t.insert("code".into(), Value::String(r.target_code.clone()));
            }
            if !r.target_display.is_empty() {
                t.insert("display".into(), Value::String(r.target_display.clone()));
            }
            t.insert("equivalence".into(), Value::String(r.equivalence.as_str().into()));
            if !r.comment.is_empty() {
                t.insert("comment".into(), Value::String(r.comment.clone()));
            }
            e.1.push(Value::Object(t));
        }
        let elements: Vec<Value> = order
            .iter()
            .map(|code| {
                let (disp, targets) = elems.remove(code).unwrap();
                let mut e = Map::new();
                e.insert("code".into(), Value::String(code.to_string()));
                if !disp.is_empty() {
                    e.insert("display".into(), Value::String(disp));
                }
                e.insert("target".into(), Value::Array(targets));
                Value::Object(e)
            })
            .collect();
        let mut ext = vec![json!({"url": EXT_EFFECTIVE_DATE, "valueDate": m.effective_date})];
        if let Some(i) = &m.institution {
            ext.push(json!({"url": EXT_INSTITUTION, "valueString": i}));
        }
        let mut cm = Map::new();
        cm.insert("resourceType".into(), json!("ConceptMap"));
        cm.insert("id".into(), Value::String(m.name.clone()));
        cm.insert("extension".into(), Value::Array(ext));
        cm.insert("url".into(), Value::String(self.url()));
        cm.insert("version".into(), Value::String(m.version.clone()));
        cm.insert("name".into(), Value::String(m.name.clone()));
        cm.insert("title".into(), Value::String(m.name.clone()));
        cm.insert("status".into(), json!("active"));
        cm.insert("date".into(), Value::String(m.effective_date.clone()));
        cm.insert("publisher".into(), Value::String(m.publisher.clone()));
        if let Some(d) = &m.description {
            cm.insert("description".into(), Value::String(d.clone()));
        }
        cm.insert("group".into(), json!([{"source": m.source_system, "target": m.target_system, "element": elements}]));
        Value::Object(cm)
    }

    /// Read a table from a ConceptMap resource (exactly one group), then check it like a CSV.
    pub fn from_concept_map(cm: &Value, opts: &CheckOptions) -> Result<MappingTable, TableReport> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let ext = |url: &str| -> Option<String> {
            cm.get("extension").and_then(Value::as_array)?.iter().find(|e| e.get("url").and_then(Value::as_str) == Some(url)).and_then(|e| e.get("valueDate").or(e.get("valueString"))).and_then(Value::as_str).map(str::to_string)
        };
        let name = s(cm, "id").or_else(|| s(cm, "name")).unwrap_or_default();
        let mut report = TableReport { table: Some(name.clone()), problems: Vec::new() };
        if cm.get("resourceType").and_then(Value::as_str) != Some("ConceptMap") {
            report.problems.push(Problem { line: 0, row: None, field: Some("resourceType".into()), message: "not a ConceptMap".into() });
            return Err(report);
        }
        let groups = cm.get("group").and_then(Value::as_array).cloned().unwrap_or_default();
        if groups.len() != 1 {
            report.problems.push(Problem { line: 0, row: None, field: Some("group".into()), message: format!("a mapping table ConceptMap must have exactly one group (found {})", groups.len()) });
            return Err(report);
        }
        let g = &groups[0];
        let url = s(cm, "url");
        let default_url = format!("{CONCEPT_MAP_BASE}{name}");
        let meta = TableMeta {
            name,
            version: s(cm, "version").unwrap_or_default(),
            effective_date: ext(EXT_EFFECTIVE_DATE).or_else(|| s(cm, "date").map(|d| d.chars().take(10).collect())).unwrap_or_default(),
            source_system: s(g, "source").unwrap_or_default(),
            target_system: s(g, "target").unwrap_or_default(),
            publisher: s(cm, "publisher").unwrap_or_default(),
            description: s(cm, "description"),
            institution: ext(EXT_INSTITUTION),
            url: url.filter(|u| u != &default_url),
        };
        let mut rows = Vec::new();
        let mut n = 0;
        for (ei, e) in g.get("element").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let code = s(e, "code").unwrap_or_default();
            let disp = s(e, "display").unwrap_or_default();
            let targets = e.get("target").and_then(Value::as_array).cloned().unwrap_or_default();
            if targets.is_empty() {
                n += 1;
                report.problems.push(Problem { line: 0, row: Some(n), field: Some(format!("group[0].element[{ei}]")), message: format!("element '{code}' has no target") });
            }
            for (ti, t) in targets.iter().enumerate() {
                n += 1;
                let eq = t.get("equivalence").and_then(Value::as_str).unwrap_or("equivalent");
                let Some(equivalence) = Equivalence::parse(eq) else {
                    report.problems.push(Problem { line: 0, row: Some(n), field: Some(format!("group[0].element[{ei}].target[{ti}].equivalence")), message: format!("unknown equivalence '{eq}'") });
                    continue;
                };
                rows.push(Row { source_code: code.clone(), source_display: disp.clone(), target_code: s(t, "code").unwrap_or_default(), target_display: s(t, "display").unwrap_or_default(), equivalence, comment: s(t, "comment").unwrap_or_default(), line: 0 });
            }
        }
        let table = MappingTable { meta, rows };
        let mut col = Collector { problems: report.problems, max: opts.max_problems.max(1) };
        table.check_into(&mut col, opts, &|_| 0);
        if col.problems.is_empty() {
            Ok(table)
        } else {
            report.problems = col.problems;
            Err(report)
        }
    }

    /// The table as a compiled ConceptMap (for `$translate`): a table-backed group that indexes
    /// the rows without copying them.
    pub fn compiled_concept_map(self: &std::sync::Arc<Self>) -> ConceptMap {
        let g = Group { source: Some(self.meta.source_system.clone()), target: Some(self.meta.target_system.clone()), table: Some(TableGroup::new(self.clone())), ..Default::default() };
        ConceptMap { url: self.url(), version: Some(self.meta.version.clone()), name: Some(self.meta.name.clone()), source_scope: None, target_scope: None, groups: vec![g], origin: format!("mapping table {}", self.canonical()) }
    }
}

/// Rows of one source code that changed between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedSource {
    pub source_code: String,
    pub old: Vec<Row>,
    pub new: Vec<Row>,
}

/// Difference between two versions of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TableDiff {
    /// (metadata field, old, new) for each changed metadata field.
    pub metadata: Vec<(String, String, String)>,
    /// Rows whose source code is new.
    pub added: Vec<Row>,
    /// Rows whose source code is gone.
    pub removed: Vec<Row>,
    /// Source codes present in both whose rows differ (target, equivalence, displays or comment).
    pub changed: Vec<ChangedSource>,
}

impl TableDiff {
    pub fn is_empty(&self) -> bool {
        self.metadata.is_empty() && self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn same_rows(a: &[&Row], b: &[&Row]) -> bool {
    let key = |r: &&Row| (r.target_code.clone(), r.equivalence, r.source_display.clone(), r.target_display.clone(), r.comment.clone());
    let mut x: Vec<_> = a.iter().map(key).collect();
    let mut y: Vec<_> = b.iter().map(key).collect();
    x.sort();
    y.sort();
    x == y
}

/// Compare two tables (normally two versions of one table), by source code.
pub fn diff(old: &MappingTable, new: &MappingTable) -> TableDiff {
    let mut d = TableDiff::default();
    let (a, b) = (&old.meta, &new.meta);
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    for (k, x, y) in [
        ("name", a.name.clone(), b.name.clone()),
        ("version", a.version.clone(), b.version.clone()),
        ("effective-date", a.effective_date.clone(), b.effective_date.clone()),
        ("source-system", a.source_system.clone(), b.source_system.clone()),
        ("target-system", a.target_system.clone(), b.target_system.clone()),
        ("publisher", a.publisher.clone(), b.publisher.clone()),
        ("description", opt(&a.description), opt(&b.description)),
        ("institution", opt(&a.institution), opt(&b.institution)),
        ("url", opt(&a.url), opt(&b.url)),
    ] {
        if x != y {
            d.metadata.push((k.to_string(), x, y));
        }
    }
    let group = |t: &MappingTable| {
        let mut order: Vec<String> = Vec::new();
        let mut m: FastMap<String, Vec<usize>> = FastMap::default();
        for (i, r) in t.rows.iter().enumerate() {
            m.entry(r.source_code.clone()).or_insert_with(|| {
                order.push(r.source_code.clone());
                Vec::new()
            });
            m.get_mut(&r.source_code).unwrap().push(i);
        }
        (order, m)
    };
    let (old_order, old_map) = group(old);
    let (new_order, new_map) = group(new);
    for src in &new_order {
        let nr: Vec<&Row> = new_map[src].iter().map(|&i| &new.rows[i]).collect();
        match old_map.get(src) {
            None => d.added.extend(nr.into_iter().cloned()),
            Some(oi) => {
                let or: Vec<&Row> = oi.iter().map(|&i| &old.rows[i]).collect();
                if !same_rows(&or, &nr) {
                    d.changed.push(ChangedSource { source_code: src.clone(), old: or.into_iter().cloned().collect(), new: nr.into_iter().cloned().collect() });
                }
            }
        }
    }
    for src in &old_order {
        if !new_map.contains_key(src) {
            d.removed.extend(old_map[src].iter().map(|&i| old.rows[i].clone()));
        }
    }
    d
}
