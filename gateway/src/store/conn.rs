//! The statements of the write path, on either engine: sqlx's `AnyConnection` (PostgreSQL
//! transactions) or the SQLite writer thread's own connection. On SQLite every statement runs
//! in place on the writer thread from a cache of prepared statements; through sqlx each one was
//! handed to a worker thread and back (two thread switches per statement, about 16 statements a
//! submission), and multi-row inserts were parsed anew whenever their row count changed.

use std::future::Future;

use sqlx::{AnyConnection, Row};

use super::{Engine, StoreError, bind_all};
use crate::search::SqlArg;

/// One value read back by the write path.
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

/// One row read back by the write path.
#[derive(Debug, Clone)]
pub struct DbRow(Vec<DbValue>);

impl DbRow {
    pub fn int(&self, column: usize) -> i64 {
        match &self.0[column] {
            DbValue::Int(i) => *i,
            DbValue::Float(f) => *f as i64,
            _ => 0,
        }
    }

    pub fn text(&self, column: usize) -> String {
        match &self.0[column] {
            DbValue::Text(s) => s.clone(),
            _ => String::new(),
        }
    }
}

/// The columns of a row, whichever connection read it: the write path's [`DbRow`] and the read
/// path's sqlx rows decode stored resources with the same code.
pub trait Columns {
    fn int(&self, column: usize) -> i64;
    fn text(&self, column: usize) -> String;
}

impl Columns for DbRow {
    fn int(&self, column: usize) -> i64 {
        DbRow::int(self, column)
    }

    fn text(&self, column: usize) -> String {
        DbRow::text(self, column)
    }
}

impl Columns for sqlx::any::AnyRow {
    fn int(&self, column: usize) -> i64 {
        self.get(column)
    }

    fn text(&self, column: usize) -> String {
        self.get(column)
    }
}

/// A connection inside a transaction the caller commits. SQL uses `$1`-style placeholders.
pub trait WriteConn {
    fn engine(&self) -> Engine;

    /// Run one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[SqlArg]) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Run one query; every row.
    fn fetch(&mut self, sql: &str, args: &[SqlArg]) -> impl Future<Output = Result<Vec<DbRow>, StoreError>> + Send;

    /// `prefix (v, ...) suffix` for every `width` values of `args`.
    fn execute_rows(
        &mut self,
        prefix: &str,
        suffix: &str,
        width: usize,
        args: &[SqlArg],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl WriteConn for AnyConnection {
    fn engine(&self) -> Engine {
        if self.backend_name() == "SQLite" { Engine::Sqlite } else { Engine::Postgres }
    }

    async fn execute(&mut self, sql: &str, args: &[SqlArg]) -> Result<u64, StoreError> {
        Ok(bind_all(sqlx::query(sql), args).execute(&mut *self).await.map_err(sqlx_error)?.rows_affected())
    }

    async fn fetch(&mut self, sql: &str, args: &[SqlArg]) -> Result<Vec<DbRow>, StoreError> {
        let rows = bind_all(sqlx::query(sql), args).fetch_all(&mut *self).await.map_err(sqlx_error)?;
        Ok(rows.iter().map(|row| DbRow((0..row.len()).map(|i| any_value(row, i)).collect())).collect())
    }

    /// Multi-row statements: each statement is a network round trip.
    async fn execute_rows(&mut self, prefix: &str, suffix: &str, width: usize, args: &[SqlArg]) -> Result<(), StoreError> {
        const ROWS_PER_STATEMENT: usize = 400;
        for chunk in args.chunks(width * ROWS_PER_STATEMENT) {
            let mut sql = String::with_capacity(prefix.len() + suffix.len() + chunk.len() * 6);
            sql.push_str(prefix);
            for row in 0..chunk.len() / width {
                sql.push_str(if row > 0 { ",(" } else { "(" });
                for col in 0..width {
                    if col > 0 {
                        sql.push(',');
                    }
                    sql.push('$');
                    sql.push_str(&(row * width + col + 1).to_string());
                }
                sql.push(')');
            }
            sql.push_str(suffix);
            self.execute(&sql, chunk).await?;
        }
        Ok(())
    }
}

fn any_value(row: &sqlx::any::AnyRow, i: usize) -> DbValue {
    if let Ok(Some(v)) = row.try_get::<Option<i64>, _>(i) {
        return DbValue::Int(v);
    }
    if let Ok(Some(v)) = row.try_get::<Option<f64>, _>(i) {
        return DbValue::Float(v);
    }
    match row.try_get::<Option<String>, _>(i) {
        Ok(Some(v)) => DbValue::Text(v),
        _ => DbValue::Null,
    }
}

fn sqlx_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(db.message().to_string()),
        e => StoreError::Db(e),
    }
}

/// The SQLite writer thread's connection.
pub struct SqliteConn(pub rusqlite::Connection);

impl SqliteConn {
    /// A cached statement with `args` bound: `$n` placeholders by number, `?` by position.
    fn bound<'c>(&'c self, sql: &str, args: &[SqlArg]) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(sqlite_error)?;
        for i in 1..=stmt.parameter_count() {
            let at = match stmt.parameter_name(i) {
                Some(name) => name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).unwrap_or(i),
                None => i,
            };
            let arg = args
                .get(at - 1)
                .ok_or_else(|| StoreError::Invalid(format!("statement parameter {at} has no value: {sql}")))?;
            bind(&mut stmt, i, arg)?;
        }
        Ok(stmt)
    }

    /// Run a statement that returns no rows we need (BEGIN, SAVEPOINT, PRAGMA ...).
    pub fn run(&self, sql: &str) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(sqlite_error)?;
        let mut rows = stmt.raw_query();
        while rows.next().map_err(sqlite_error)?.is_some() {}
        Ok(())
    }

    fn execute_now(&self, sql: &str, args: &[SqlArg]) -> Result<u64, StoreError> {
        let mut stmt = self.bound(sql, args)?;
        stmt.raw_execute().map(|n| n as u64).map_err(sqlite_error)
    }

    fn fetch_now(&self, sql: &str, args: &[SqlArg]) -> Result<Vec<DbRow>, StoreError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.bound(sql, args)?;
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(sqlite_error)? {
                    ValueRef::Null => DbValue::Null,
                    ValueRef::Integer(v) => DbValue::Int(v),
                    ValueRef::Real(v) => DbValue::Float(v),
                    ValueRef::Text(t) | ValueRef::Blob(t) => DbValue::Text(String::from_utf8_lossy(t).into_owned()),
                });
            }
            out.push(DbRow(values));
        }
        Ok(out)
    }
}

impl WriteConn for SqliteConn {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    async fn execute(&mut self, sql: &str, args: &[SqlArg]) -> Result<u64, StoreError> {
        self.execute_now(sql, args)
    }

    async fn fetch(&mut self, sql: &str, args: &[SqlArg]) -> Result<Vec<DbRow>, StoreError> {
        self.fetch_now(sql, args)
    }

    /// One cached single-row statement run per row: SQLite has no round trips to save, and a
    /// prepared statement is cheaper than parsing a long statement of varying length.
    async fn execute_rows(&mut self, prefix: &str, suffix: &str, width: usize, args: &[SqlArg]) -> Result<(), StoreError> {
        if args.is_empty() {
            return Ok(());
        }
        if !args.len().is_multiple_of(width) {
            return Err(StoreError::Invalid(format!("{} values are not rows of {width}: {prefix}", args.len())));
        }
        let mut sql = String::with_capacity(prefix.len() + suffix.len() + 2 * width + 2);
        sql.push_str(prefix);
        sql.push('(');
        for col in 0..width {
            sql.push_str(if col > 0 { ",?" } else { "?" });
        }
        sql.push(')');
        sql.push_str(suffix);
        // Looked up once per call and bound by position, not looked up per row: a submission
        // inserts ~100 index rows, and the per-row statement-cache look-up was 3 % of the writer.
        let mut stmt = self.0.prepare_cached(&sql).map_err(sqlite_error)?;
        for row in args.chunks(width) {
            for (i, arg) in row.iter().enumerate() {
                bind(&mut stmt, i + 1, arg)?;
            }
            stmt.raw_execute().map_err(sqlite_error)?;
        }
        Ok(())
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, i: usize, arg: &SqlArg) -> Result<(), StoreError> {
    match arg {
        SqlArg::Text(s) => stmt.raw_bind_parameter(i, s.as_str()),
        SqlArg::Int(v) => stmt.raw_bind_parameter(i, v),
        SqlArg::Float(v) => stmt.raw_bind_parameter(i, v),
    }
    .map_err(sqlite_error)
}

fn sqlite_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    match &e {
        rusqlite::Error::SqliteFailure(f, message)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY || f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Duplicate(message.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => StoreError::Sqlite(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> SqliteConn {
        let conn = SqliteConn(rusqlite::Connection::open_in_memory().unwrap());
        conn.run("CREATE TABLE t (a TEXT NOT NULL PRIMARY KEY, b INTEGER NOT NULL, c REAL)").unwrap();
        conn
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn placeholders_bind_by_number_whatever_their_order() {
        let mut c = conn();
        block_on(async {
            let args = [SqlArg::Int(7), SqlArg::Text("x".into())];
            assert_eq!(c.execute("INSERT INTO t (b, a) VALUES ($1, $2)", &args).await.unwrap(), 1);
            let rows = c.fetch("SELECT a, b, c FROM t WHERE b = $2 AND a = $1", &[SqlArg::Text("x".into()), SqlArg::Int(7)]).await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!((rows[0].text(0), rows[0].int(1), rows[0].0[2].clone()), ("x".to_string(), 7, DbValue::Null));
            let missing = c.fetch("SELECT a FROM t WHERE a = $3", &args).await;
            assert!(matches!(missing, Err(StoreError::Invalid(_))), "{missing:?}");
        });
    }

    #[test]
    fn rows_go_in_one_by_one_and_a_duplicate_key_is_reported_as_such() {
        let mut c = conn();
        block_on(async {
            let rows = [1, 2, 3].map(|n| [SqlArg::Text(format!("k{n}")), SqlArg::Int(n), SqlArg::Float(n as f64 / 2.0)]).concat();
            c.execute_rows("INSERT INTO t (a, b, c) VALUES ", "", 3, &rows).await.unwrap();
            let sum = c.fetch("SELECT SUM(b), SUM(c) FROM t", &[]).await.unwrap();
            assert_eq!((sum[0].int(0), sum[0].0[1].clone()), (6, DbValue::Float(3.0)));
            let again = c.execute_rows("INSERT INTO t (a, b, c) VALUES ", "", 3, &rows[..3]).await;
            assert!(matches!(again, Err(StoreError::Duplicate(_))), "{again:?}");
            c.execute_rows("INSERT INTO t (a, b, c) VALUES ", " ON CONFLICT DO NOTHING", 3, &rows).await.unwrap();
            let partial = c.execute_rows("INSERT INTO t (a, b, c) VALUES ", "", 3, &rows[..4]).await;
            assert!(matches!(partial, Err(StoreError::Invalid(_))), "{partial:?}");
        });
    }
}
