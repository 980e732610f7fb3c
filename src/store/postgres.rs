//! PostgreSQL: connecting (after a probe that tells "refused" and "no such database"
//! apart), and its statements: typed binds, inserts of one array per column (`UNNEST`),
//! and plain bulk inserts sent as `COPY`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Arguments, Connection};

use super::sql::{Args, Insert, Statement, Statements};
use super::{StoreError, STATEMENT_CACHE};
use crate::db_url::DatabaseUrl;
use crate::model::{Row, Val};

/// Rows per `UNNEST` statement or `COPY` (bounds what is held at once).
const UNNEST_ROWS: usize = 5_000;

/// From this many rows, a plain insert is a `COPY` (see `copy_insert`).
const COPY_MIN_ROWS: usize = 1_000;

fn options(url: &DatabaseUrl) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url.as_str()).map_err(|source| StoreError::Connect {
        url: url.to_string(),
        source,
    })
}

/// A pool for writing and reading.
pub(super) async fn open(url: &DatabaseUrl, max_connections: u32) -> Result<PgPool, StoreError> {
    // Without JIT: the tables grow within a run's transaction, unanalyzed, so the
    // planner's costs overshoot, and it compiled statements of a few milliseconds
    // for 180 ms each. (Statements over id lists are planned with their values
    // every time: see `sql::Backend::keeps_plans_of_id_lists`.)
    let options = options(url)?
        .statement_cache_capacity(STATEMENT_CACHE)
        .options([("jit", "off")]);
    connect(url, options, max_connections).await
}

/// A pool whose transactions are read-only unless they say otherwise.
pub(super) async fn open_read_only(url: &DatabaseUrl) -> Result<PgPool, StoreError> {
    let options = options(url)?.options([("default_transaction_read_only", "on")]);
    connect(url, options, 2).await
}

/// A pool, after one plain connection has shown that the server answers: the pool itself
/// retries a refused connection until its time-out, so "connection refused" would become
/// "pool timed out" 30 s later.
async fn connect(
    url: &DatabaseUrl,
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    let fail = |source| StoreError::Connect {
        url: url.to_string(),
        source,
    };
    let probe = sqlx::PgConnection::connect_with(&options).await;
    match probe {
        Ok(c) => {
            let _ = c.close().await;
        }
        // 3D000: the database does not exist.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            return Err(StoreError::NoPostgresDatabase {
                url: url.to_string(),
                why: e.message().to_string(),
            })
        }
        Err(e) => return Err(fail(e)),
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(fail)
}

/// One column of an `UNNEST` insert, typed by the first row's value.
enum PgColumn {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<chrono::DateTime<chrono::Utc>>>),
    Json(Vec<Option<String>>),
    Decimal(Vec<Option<String>>),
}

impl PgColumn {
    fn like(v: &Val) -> PgColumn {
        match v {
            Val::Text(_) => PgColumn::Text(Vec::new()),
            Val::Int(_) => PgColumn::Int(Vec::new()),
            Val::Bool(_) => PgColumn::Bool(Vec::new()),
            Val::Time(_) => PgColumn::Time(Vec::new()),
            Val::Json(_) => PgColumn::Json(Vec::new()),
            Val::Decimal(_) => PgColumn::Decimal(Vec::new()),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            PgColumn::Text(_) | PgColumn::Json(_) | PgColumn::Decimal(_) => "text",
            PgColumn::Int(_) => "int8",
            PgColumn::Bool(_) => "bool",
            PgColumn::Time(_) => "timestamptz",
        }
    }

    fn push(&mut self, v: Val) {
        match (self, v) {
            (PgColumn::Text(a), Val::Text(x))
            | (PgColumn::Json(a), Val::Json(x))
            | (PgColumn::Decimal(a), Val::Decimal(x)) => a.push(x),
            (PgColumn::Int(a), Val::Int(x)) => a.push(x),
            (PgColumn::Bool(a), Val::Bool(x)) => a.push(x),
            (PgColumn::Time(a), Val::Time(x)) => a.push(x),
            (_, v) => panic!("a column's rows must all have one type; got {v:?}"),
        }
    }

    /// Binds the array and empties it for the next statement.
    fn bind(&mut self, args: &mut PgArguments) {
        let r = match self {
            PgColumn::Text(a) | PgColumn::Json(a) | PgColumn::Decimal(a) => {
                args.add(std::mem::take(a))
            }
            PgColumn::Int(a) => args.add(std::mem::take(a)),
            PgColumn::Bool(a) => args.add(std::mem::take(a)),
            PgColumn::Time(a) => args.add(std::mem::take(a)),
        };
        r.expect("binding an array of plain values cannot fail");
    }
}

pub(super) fn args(args: Vec<Val>) -> PgArguments {
    let mut a = PgArguments::default();
    for v in args {
        let r = match v {
            // Text: a statement that binds a decimal casts it (`$1::numeric`).
            Val::Text(s) | Val::Json(s) | Val::Decimal(s) => a.add(s),
            Val::Int(i) => a.add(i),
            Val::Bool(b) => a.add(b),
            Val::Time(t) => a.add(t),
        };
        r.expect("binding a plain value cannot fail");
    }
    a
}

/// A `COPY` for a plain insert of many rows, else `UNNEST` (see [`super::Backend::insert`]).
pub(super) fn insert(insert: Insert<'_>) -> Statements<'static> {
    if insert.conflict.is_empty() && insert.rows.len() >= COPY_MIN_ROWS {
        copy_insert(insert)
    } else {
        unnest_insert(insert)
    }
}

/// `INSERT ... SELECT ... FROM UNNEST($1::text[], ...)`, a column per array.
fn unnest_insert(insert: Insert<'_>) -> Statements<'static> {
    let Insert {
        table,
        columns,
        rows,
        conflict,
        doing,
    } = insert;
    let mut arrays: Vec<PgColumn> = rows[0].iter().map(PgColumn::like).collect();
    let (mut select, mut unnest, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for (i, array) in arrays.iter().enumerate() {
        let n = i + 1;
        names.push(format!("c{n}"));
        unnest.push(format!("${n}::{}[]", array.sql_type()));
        select.push(match array {
            PgColumn::Json(_) => format!("c{n}::jsonb"),
            PgColumn::Decimal(_) => format!("c{n}::numeric"),
            _ => format!("c{n}"),
        });
    }
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM UNNEST({}) AS u({}) {conflict}",
        columns.join(", "),
        select.join(", "),
        unnest.join(", "),
        names.join(", ")
    );
    let statements = rows.len().div_ceil(UNNEST_ROWS);
    let mut rows = rows.into_iter();
    Box::new((0..statements).map(move |_| {
        for row in rows.by_ref().take(UNNEST_ROWS) {
            for (array, v) in arrays.iter_mut().zip(row) {
                array.push(v);
            }
        }
        let mut args = PgArguments::default();
        for array in &mut arrays {
            array.bind(&mut args);
        }
        Statement {
            sql: sql.clone(),
            args: Args::Postgres(args),
            doing,
            persistent: true,
        }
    }))
}

/// `COPY table (columns) FROM STDIN`, the rows in COPY's text format, a statement per
/// [`UNNEST_ROWS`] rows.
fn copy_insert(insert: Insert<'_>) -> Statements<'static> {
    let Insert {
        table,
        columns,
        rows,
        doing,
        ..
    } = insert;
    let sql = format!("COPY {table} ({}) FROM STDIN", columns.join(", "));
    let statements = rows.len().div_ceil(UNNEST_ROWS);
    let mut rows = rows.into_iter();
    Box::new((0..statements).map(move |_| {
        let mut data = Vec::new();
        for row in rows.by_ref().take(UNNEST_ROWS) {
            copy_row(&mut data, row);
        }
        Statement {
            sql: sql.clone(),
            args: Args::Copy(data),
            doing,
            persistent: true,
        }
    }))
}

/// One row in COPY's text format: tab between columns, `\N` for NULL, a backslash escape
/// for a backslash, tab, newline or carriage return in a value.
fn copy_row(out: &mut Vec<u8>, row: Row) {
    use std::io::Write;
    for (i, v) in row.into_iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            Val::Text(None)
            | Val::Json(None)
            | Val::Decimal(None)
            | Val::Int(None)
            | Val::Bool(None)
            | Val::Time(None) => out.extend_from_slice(b"\\N"),
            Val::Text(Some(s)) | Val::Json(Some(s)) | Val::Decimal(Some(s)) => {
                for b in s.bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b => out.push(b),
                    }
                }
            }
            Val::Int(Some(n)) => write!(out, "{n}").expect("writing to a Vec cannot fail"),
            Val::Bool(Some(b)) => out.push(if b { b't' } else { b'f' }),
            Val::Time(Some(t)) => write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
                .expect("writing to a Vec cannot fail"),
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_what_the_text_format_reads_as_syntax() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut out = Vec::new();
        copy_row(
            &mut out,
            vec![
                Val::Text(Some("a\tb\\c\nd\re".into())),
                Val::Text(None),
                Val::Int(Some(-42)),
                Val::Bool(Some(false)),
                Val::Time(Some(at)),
                Val::Json(Some("{\"x\":\"\\\\N\"}".into())),
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\\\c\\nd\\re\t\\N\t-42\tf\t2026-01-02 03:04:05.500000+00\t{\"x\":\"\\\\\\\\N\"}\n"
        );
    }
}
