//! Search query strings (`code=http://loinc.org|1234-5&date=ge2024&_count=10`) to SQL.

use super::{ParamKind, SearchIndex, SearchParam, SqlArg, extract};

/// Largest page a client may ask for.
pub const MAX_COUNT: i64 = 1000;
pub const DEFAULT_COUNT: i64 = 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SearchError {
    #[error("search parameter `{param}`: {message}")]
    Invalid { param: String, message: String },
}

fn invalid(param: &str, message: impl Into<String>) -> SearchError {
    SearchError::Invalid { param: param.to_string(), message: message.into() }
}

/// A parsed search: conditions (AND of ORs), sort, page.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    conditions: Vec<Condition>,
    pub sort: Vec<SortKey>,
    pub count: i64,
    pub offset: i64,
    /// `_summary=count`: only the total.
    pub count_only: bool,
    /// The parameters that were understood, for the Bundle's `self` link.
    pub used: Vec<(String, String)>,
    /// Parameters that were ignored (unknown to the server).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone)]
struct Condition {
    sql: String,
    args: Vec<SqlArg>,
}

#[derive(Debug, Clone)]
pub struct SortKey {
    pub sql: String,
    pub descending: bool,
    /// A `LEFT JOIN` the expression reads from.
    pub join: Option<String>,
}

impl SearchQuery {
    /// Parse `params` for `res_type`. Unknown parameters are ignored (and listed) unless
    /// `strict`, where they are an error (FHIR `Prefer: handling=strict`).
    pub fn parse(
        index: &SearchIndex,
        res_type: &str,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<SearchQuery, SearchError> {
        let mut query = SearchQuery { count: DEFAULT_COUNT, ..Default::default() };
        for (name, value) in params {
            let (code, modifier) = match name.split_once(':') {
                Some((c, m)) => (c, Some(m)),
                None => (name.as_str(), None),
            };
            let used = match code {
                "_count" => {
                    query.count = value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| invalid(name, "expected a non-negative integer"))?
                        .min(MAX_COUNT);
                    true
                }
                "_offset" => {
                    query.offset = value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| invalid(name, "expected a non-negative integer"))?;
                    false
                }
                "_sort" => {
                    for key in value.split(',').filter(|k| !k.is_empty()) {
                        let n = query.sort.len();
                        query.sort.push(sort_key(index, res_type, key, n)?);
                    }
                    true
                }
                "_summary" if value == "count" => {
                    query.count_only = true;
                    true
                }
                "_format" | "_pretty" | "_total" => false,
                "_id" => {
                    let values = split_or(value);
                    let ors: Vec<String> = (0..values.len()).map(|_| "r.res_id = ?".to_string()).collect();
                    query.push(ors, values.into_iter().map(SqlArg::Text).collect());
                    true
                }
                "_lastUpdated" => {
                    let mut ors = Vec::new();
                    let mut args = Vec::new();
                    for v in split_or(value) {
                        let (sql, a) = date_condition(name, &v, "r.last_updated", "r.last_updated + 1")?;
                        ors.push(sql);
                        args.extend(a);
                    }
                    query.push(ors, args);
                    true
                }
                _ if code.contains('.') => {
                    return Err(invalid(name, "chained search parameters are not supported"));
                }
                _ if code.starts_with('_') && index.param(res_type, code).is_none() => {
                    if strict {
                        return Err(invalid(name, "this result parameter is not supported"));
                    }
                    query.ignored.push(name.clone());
                    false
                }
                _ => match index.param(res_type, code) {
                    Some(param) => {
                        query.add_param(res_type, param, modifier, value, name)?;
                        true
                    }
                    None => {
                        if strict {
                            return Err(invalid(name, format!("unknown search parameter for {res_type}")));
                        }
                        query.ignored.push(name.clone());
                        false
                    }
                },
            };
            if used {
                query.used.push((name.clone(), value.clone()));
            }
        }
        Ok(query)
    }

    /// A stable text form of the conditions (for conditional-create locking).
    pub fn canonical(&self) -> String {
        let mut used: Vec<String> = self.used.iter().map(|(k, v)| format!("{k}={v}")).collect();
        used.sort();
        used.join("&")
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// `AND ...` SQL with `$n` placeholders numbered from `first`, and its arguments.
    pub fn to_sql(&self, first: usize) -> (String, Vec<SqlArg>) {
        let mut sql = String::new();
        let mut args = Vec::new();
        let mut n = first;
        for c in &self.conditions {
            sql.push_str(" AND ");
            for part in c.sql.split('?').enumerate() {
                if part.0 > 0 {
                    sql.push_str(&format!("${n}"));
                    n += 1;
                }
                sql.push_str(part.1);
            }
            args.extend(c.args.iter().cloned());
        }
        (sql, args)
    }

    /// The joins the sort keys read from (put after `FROM resource_current r`).
    pub fn sort_joins(&self) -> String {
        self.sort.iter().filter_map(|k| k.join.as_deref()).collect()
    }

    /// ORDER BY clause (always ending in a unique key, so pages never overlap).
    pub fn order_sql(&self) -> String {
        let mut parts: Vec<String> = self
            .sort
            .iter()
            .map(|k| format!("{} {}", k.sql, if k.descending { "DESC" } else { "ASC" }))
            .collect();
        if self.sort.is_empty() {
            parts.push("r.last_updated ASC".into());
        }
        parts.push("r.res_id ASC".into());
        parts.join(", ")
    }

    fn push(&mut self, ors: Vec<String>, args: Vec<SqlArg>) {
        self.conditions.push(Condition { sql: format!("({})", ors.join(" OR ")), args });
    }

    fn add_param(&mut self, res_type: &str, param: &SearchParam, modifier: Option<&str>, value: &str, name: &str) -> Result<(), SearchError> {
        let (kind, targets) = (param.kind, &param.targets[..]);
        // `i.param IN (...)`: a union parameter is answered by the rows of its parts.
        let row_params = param.row_params();
        let param_in = format!("i.param IN ({})", vec!["?"; row_params.len()].join(", "));
        let param_args = || row_params.iter().map(|p| SqlArg::Text(p.to_string()));
        let table = index_table(kind);
        // The resources with a matching row, as one uncorrelated set: SQLite evaluated a
        // correlated EXISTS per candidate through the search index, whose key does not end in the
        // resource id, so a code shared by n resources cost n x n (1.6 s at n = 4,800).
        let matching = |inner: &str| {
            format!("r.res_id IN (SELECT i.res_id FROM {table} i WHERE i.res_type = ? AND {param_in} AND ({inner}))")
        };
        let matching_args = || std::iter::once(SqlArg::Text(res_type.to_string())).chain(param_args());
        if modifier == Some("missing") {
            let any = matching("1 = 1");
            let sql = match value {
                "true" => format!("NOT {any}"),
                "false" => any,
                _ => return Err(invalid(name, "`:missing` takes true or false")),
            };
            self.push(vec![sql], matching_args().collect());
            return Ok(());
        }
        let mut ors = Vec::new();
        let mut args = Vec::new();
        let negate = modifier == Some("not");
        for v in split_or(value) {
            let (inner, inner_args) = match kind {
                ParamKind::Token | ParamKind::Uri => {
                    if !matches!(modifier, None | Some("not")) {
                        return Err(invalid(name, format!("modifier `{}` is not supported", modifier.unwrap_or_default())));
                    }
                    token_condition(&v, kind)
                }
                ParamKind::String => {
                    let normalized = extract::normalize_string(&v);
                    match modifier {
                        None => ("i.value LIKE ? ESCAPE '\\'".into(), vec![SqlArg::Text(format!("{}%", like_escape(&normalized)))]),
                        Some("contains") => ("i.value LIKE ? ESCAPE '\\'".into(), vec![SqlArg::Text(format!("%{}%", like_escape(&normalized)))]),
                        Some("exact") => ("i.value = ?".into(), vec![SqlArg::Text(normalized)]),
                        Some(m) => return Err(invalid(name, format!("modifier `{m}` is not supported"))),
                    }
                }
                ParamKind::Date => {
                    no_modifier(name, modifier)?;
                    date_condition(name, &v, "i.lo", "i.hi")?
                }
                ParamKind::Reference => {
                    let target = match modifier {
                        None => v.clone(),
                        Some(t) if t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => format!("{t}/{v}"),
                        Some(m) => return Err(invalid(name, format!("modifier `{m}` is not supported"))),
                    };
                    let target = if !target.contains('/') && !target.contains(':') {
                        match targets {
                            [only] => format!("{only}/{target}"),
                            _ => {
                                // A bare id may point to any of the target types.
                                let alts: Vec<String> = targets.iter().map(|t| format!("{t}/{target}")).collect();
                                let sql = vec!["i.target = ?"; alts.len()].join(" OR ");
                                ors.push(matching(&sql));
                                args.extend(matching_args());
                                args.extend(alts.into_iter().map(SqlArg::Text));
                                continue;
                            }
                        }
                    } else {
                        extract::normalize_reference(&target)
                    };
                    ("i.target = ?".into(), vec![SqlArg::Text(target)])
                }
                ParamKind::Number | ParamKind::Quantity => {
                    no_modifier(name, modifier)?;
                    number_condition(name, &v)?
                }
            };
            ors.push(matching(&inner));
            args.extend(matching_args());
            args.extend(inner_args);
        }
        if negate {
            self.push(vec![format!("NOT ({})", ors.join(" OR "))], args);
        } else {
            self.push(ors, args);
        }
        Ok(())
    }
}

fn no_modifier(name: &str, modifier: Option<&str>) -> Result<(), SearchError> {
    match modifier {
        None => Ok(()),
        Some(m) => Err(invalid(name, format!("modifier `{m}` is not supported"))),
    }
}

/// Split on unescaped commas (`\,` is a literal comma).
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("non-empty").push(next);
                }
            }
            ',' => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn token_condition(value: &str, kind: ParamKind) -> (String, Vec<SqlArg>) {
    if kind == ParamKind::Uri {
        return ("i.code = ?".into(), vec![SqlArg::Text(value.into())]);
    }
    match value.split_once('|') {
        None => ("i.code = ?".into(), vec![SqlArg::Text(value.into())]),
        Some(("", code)) => ("i.code = ? AND i.system = ''".into(), vec![SqlArg::Text(code.into())]),
        Some((system, "")) => ("i.system = ?".into(), vec![SqlArg::Text(system.into())]),
        Some((system, code)) => (
            "i.code = ? AND i.system = ?".into(),
            vec![SqlArg::Text(code.into()), SqlArg::Text(system.into())],
        ),
    }
}

/// Split a FHIR comparison prefix (`ge2024`) from its value.
fn prefix(value: &str) -> (&str, &str) {
    for p in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"] {
        if let Some(rest) = value.strip_prefix(p) {
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
                return (p, rest);
            }
        }
    }
    ("eq", value)
}

/// A date comparison between a stored range `[lo, hi)` (column expressions) and the query value,
/// following the FHIR rules for ranges.
fn date_condition(name: &str, value: &str, lo: &str, hi: &str) -> Result<(String, Vec<SqlArg>), SearchError> {
    let (p, date) = prefix(value);
    let (qlo, qhi) = extract::date_range(date)
        .ok_or_else(|| invalid(name, format!("`{date}` is not a valid FHIR date, dateTime or instant")))?;
    let (a, b) = (SqlArg::Int(qlo), SqlArg::Int(qhi));
    Ok(match p {
        "eq" => (format!("{lo} >= ? AND {hi} <= ?"), vec![a, b]),
        "ne" => (format!("NOT ({lo} >= ? AND {hi} <= ?)"), vec![a, b]),
        "gt" => (format!("{hi} > ?"), vec![b]),
        "lt" => (format!("{lo} < ?"), vec![a]),
        "ge" => (format!("({hi} > ? OR ({lo} >= ? AND {hi} <= ?))"), vec![b.clone(), a, b]),
        "le" => (format!("({lo} < ? OR ({lo} >= ? AND {hi} <= ?))"), vec![a.clone(), a, b]),
        "sa" => (format!("{lo} >= ?"), vec![b]),
        "eb" => (format!("{hi} <= ?"), vec![a]),
        _ => (format!("{lo} < ? AND {hi} > ?"), vec![b, a]), // ap: overlaps
    })
}

/// Number or quantity (`5.4|http://unitsofmeasure.org|mg`) comparison; `eq` is within the
/// precision of the given value, as FHIR asks.
fn number_condition(name: &str, value: &str) -> Result<(String, Vec<SqlArg>), SearchError> {
    let mut parts = value.splitn(3, '|');
    let (p, number) = prefix(parts.next().unwrap_or_default());
    let system = parts.next();
    let code = parts.next();
    let n: f64 = number.parse().map_err(|_| invalid(name, format!("`{number}` is not a number")))?;
    let decimals = number.split_once('.').map(|(_, d)| d.len() as i32).unwrap_or(0);
    let half = 0.5 * 10f64.powi(-decimals);
    let (mut sql, mut args) = match p {
        "eq" | "ap" => ("i.value >= ? AND i.value < ?".to_string(), vec![SqlArg::Float(n - half), SqlArg::Float(n + half)]),
        "ne" => ("NOT (i.value >= ? AND i.value < ?)".to_string(), vec![SqlArg::Float(n - half), SqlArg::Float(n + half)]),
        "gt" | "sa" => ("i.value > ?".to_string(), vec![SqlArg::Float(n)]),
        "lt" | "eb" => ("i.value < ?".to_string(), vec![SqlArg::Float(n)]),
        "ge" => ("i.value >= ?".to_string(), vec![SqlArg::Float(n)]),
        _ => ("i.value <= ?".to_string(), vec![SqlArg::Float(n)]),
    };
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        sql.push_str(" AND i.system = ?");
        args.push(SqlArg::Text(system.into()));
    }
    if let Some(code) = code.filter(|s| !s.is_empty()) {
        sql.push_str(" AND i.code = ?");
        args.push(SqlArg::Text(code.into()));
    }
    Ok((sql, args))
}

/// The table that holds a parameter kind's index rows.
fn index_table(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Token | ParamKind::Uri => "idx_token",
        ParamKind::String => "idx_string",
        ParamKind::Date => "idx_date",
        ParamKind::Reference => "idx_reference",
        ParamKind::Number | ParamKind::Quantity => "idx_number",
    }
}

/// The `n`th sort key. A parameter's sort value comes from a join with its rows grouped by
/// resource, read once: the index is keyed by value, so a lookup per resource would scan.
fn sort_key(index: &SearchIndex, res_type: &str, key: &str, n: usize) -> Result<SortKey, SearchError> {
    let (descending, code) = match key.strip_prefix('-') {
        Some(c) => (true, c),
        None => (false, key),
    };
    let (sql, join) = match code {
        "_id" => ("r.res_id".to_string(), None),
        "_lastUpdated" => ("r.last_updated".to_string(), None),
        _ => {
            let param = index
                .param(res_type, code)
                .ok_or_else(|| invalid("_sort", format!("unknown search parameter `{code}` for {res_type}")))?;
            let table = index_table(param.kind);
            let column = match param.kind {
                ParamKind::Date => if descending { "MAX(i.hi)" } else { "MIN(i.lo)" },
                ParamKind::String => "MIN(i.value)",
                ParamKind::Token | ParamKind::Uri => "MIN(i.code)",
                ParamKind::Reference => "MIN(i.target)",
                ParamKind::Number | ParamKind::Quantity => "MIN(i.value)",
            };
            // The type and the codes are known names (letters, digits, `-`), safe to inline.
            let quoted = |s: &str| format!("'{}'", s.replace('\'', ""));
            let codes: Vec<String> = param.row_params().iter().map(|c| quoted(c)).collect();
            let join = format!(
                " LEFT JOIN (SELECT i.res_id AS res_id, {column} AS value FROM {table} i WHERE i.res_type = {} AND i.param IN ({})
                   GROUP BY i.res_id) sort{n} ON sort{n}.res_id = r.res_id",
                quoted(res_type),
                codes.join(", ")
            );
            (format!("sort{n}.value"), Some(join))
        }
    };
    Ok(SortKey { sql, descending, join })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_split_unless_escaped() {
        assert_eq!(split_or("a,b\\,c"), vec!["a", "b,c"]);
    }

    #[test]
    fn prefixes_only_before_values() {
        assert_eq!(prefix("ge2024"), ("ge", "2024"));
        assert_eq!(prefix("2024"), ("eq", "2024"));
        assert_eq!(prefix("ne-1"), ("ne", "-1"));
    }

    #[test]
    fn placeholders_are_numbered_from_first() {
        let mut q = SearchQuery::default();
        q.push(vec!["a = ?".into(), "b = ?".into()], vec![SqlArg::Int(1), SqlArg::Int(2)]);
        let (sql, args) = q.to_sql(3);
        assert_eq!(sql, " AND (a = $3 OR b = $4)");
        assert_eq!(args.len(), 2);
    }
}
