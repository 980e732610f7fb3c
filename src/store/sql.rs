//! The two SQL dialects behind one small interface: typed binds (so NULLs have the
//! column's type on PostgreSQL), `$n` placeholders, and batched multi-row inserts that stay
//! under each backend's bind limit.

use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, FromRow};

use crate::model::record::sqlite_time;
use crate::model::{Row, Val};

/// SQLite's bind limit is 32,766 and PostgreSQL's 65,535; stay well under both, and keep
/// statements to a size that prepares fast.
const MAX_BINDS: usize = 30_000;
const MAX_ROWS: usize = 1_000;

/// Rows per `UNNEST` statement on PostgreSQL (bounds the arrays held at once).
const UNNEST_ROWS: usize = 5_000;

/// One column of an `UNNEST` insert, typed by the first row's value.
enum PgColumn {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<chrono::DateTime<chrono::Utc>>>),
    Json(Vec<Option<String>>),
}

impl PgColumn {
    fn like(v: &Val) -> PgColumn {
        match v {
            Val::Text(_) => PgColumn::Text(Vec::new()),
            Val::Int(_) => PgColumn::Int(Vec::new()),
            Val::Bool(_) => PgColumn::Bool(Vec::new()),
            Val::Time(_) => PgColumn::Time(Vec::new()),
            Val::Json(_) => PgColumn::Json(Vec::new()),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            PgColumn::Text(_) | PgColumn::Json(_) => "text",
            PgColumn::Int(_) => "int8",
            PgColumn::Bool(_) => "bool",
            PgColumn::Time(_) => "timestamptz",
        }
    }

    fn push(&mut self, v: Val) {
        match (self, v) {
            (PgColumn::Text(a), Val::Text(x)) | (PgColumn::Json(a), Val::Json(x)) => a.push(x),
            (PgColumn::Int(a), Val::Int(x)) => a.push(x),
            (PgColumn::Bool(a), Val::Bool(x)) => a.push(x),
            (PgColumn::Time(a), Val::Time(x)) => a.push(x),
            (_, v) => panic!("a column's rows must all have one type; got {v:?}"),
        }
    }

    /// Binds the array and empties it for the next statement.
    fn bind(&mut self, args: &mut PgArguments) {
        let r = match self {
            PgColumn::Text(a) | PgColumn::Json(a) => args.add(std::mem::take(a)),
            PgColumn::Int(a) => args.add(std::mem::take(a)),
            PgColumn::Bool(a) => args.add(std::mem::take(a)),
            PgColumn::Time(a) => args.add(std::mem::take(a)),
        };
        r.expect("binding an array of plain values cannot fail");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A JSON column read back as text.
    pub fn json_text(self, column: &str) -> String {
        match self {
            Backend::Sqlite => column.to_string(),
            Backend::Postgres => format!("{column}::text"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A connection (or transaction) of either backend.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

fn sqlite_args(args: Vec<Val>) -> SqliteArguments<'static> {
    let mut a = SqliteArguments::default();
    for v in args {
        let r = match v {
            Val::Text(s) | Val::Json(s) => a.add(s),
            Val::Int(i) => a.add(i),
            Val::Bool(b) => a.add(b),
            Val::Time(t) => a.add(t.as_ref().map(sqlite_time)),
        };
        r.expect("binding a plain value cannot fail");
    }
    a
}

fn pg_args(args: Vec<Val>) -> PgArguments {
    let mut a = PgArguments::default();
    for v in args {
        let r = match v {
            Val::Text(s) | Val::Json(s) => a.add(s),
            Val::Int(i) => a.add(i),
            Val::Bool(b) => a.add(b),
            Val::Time(t) => a.add(t),
        };
        r.expect("binding a plain value cannot fail");
    }
    a
}

impl Conn<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; returns the rows it affected.
    pub async fn execute(&mut self, sql: &str, args: Vec<Val>) -> sqlx::Result<u64> {
        match self {
            Conn::Sqlite(c) => Ok(sqlx::query_with(sql, sqlite_args(args))
                .persistent(false)
                .execute(&mut **c)
                .await?
                .rows_affected()),
            Conn::Postgres(c) => Ok(sqlx::query_with(sql, pg_args(args))
                .persistent(false)
                .execute(&mut **c)
                .await?
                .rows_affected()),
        }
    }

    pub async fn fetch_all<T>(&mut self, sql: &str, args: Vec<Val>) -> sqlx::Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        match self {
            Conn::Sqlite(c) => {
                sqlx::query_as_with(sql, sqlite_args(args))
                    .persistent(false)
                    .fetch_all(&mut **c)
                    .await
            }
            Conn::Postgres(c) => {
                sqlx::query_as_with(sql, pg_args(args))
                    .persistent(false)
                    .fetch_all(&mut **c)
                    .await
            }
        }
    }

    /// Inserts rows in as few statements as the bind limits allow; returns the rows written.
    /// `conflict` is appended to each statement (e.g. an `ON CONFLICT ... DO UPDATE`); a
    /// batch must not hold the same key twice, which the callers guarantee.
    ///
    /// SQLite gets multi-row `VALUES` lists of anonymous `?` placeholders: it resolves
    /// `$n` names by a linear search, so a statement of thousands of them parses and binds
    /// in quadratic time (that was 90% of a first sync). PostgreSQL gets one array per
    /// column, unnested by the server: a few binds and a short statement, however many rows.
    pub async fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: Vec<Row>,
        conflict: &str,
    ) -> sqlx::Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if let Conn::Postgres(_) = self {
            return self.insert_unnest(table, columns, rows, conflict).await;
        }
        let per_statement = (MAX_BINDS / columns.len()).clamp(1, MAX_ROWS);
        let head = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
        let mut rows = rows.into_iter().peekable();
        let mut affected = 0;
        while rows.peek().is_some() {
            let chunk: Vec<Row> = rows.by_ref().take(per_statement).collect();
            let mut sql = String::with_capacity(head.len() + chunk.len() * (tuple.len() + 2));
            sql.push_str(&head);
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&tuple);
            }
            sql.push(' ');
            sql.push_str(conflict);
            let args: Vec<Val> = chunk.into_iter().flatten().collect();
            affected += self.execute(&sql, args).await?;
        }
        Ok(affected)
    }

    /// PostgreSQL: `INSERT ... SELECT ... FROM UNNEST($1::text[], ...)`, a column per array.
    async fn insert_unnest(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: Vec<Row>,
        conflict: &str,
    ) -> sqlx::Result<u64> {
        let Conn::Postgres(c) = self else {
            unreachable!("only called for PostgreSQL")
        };
        let mut arrays: Vec<PgColumn> = rows[0].iter().map(PgColumn::like).collect();
        let (mut select, mut unnest, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (i, array) in arrays.iter().enumerate() {
            let n = i + 1;
            names.push(format!("c{n}"));
            unnest.push(format!("${n}::{}[]", array.sql_type()));
            select.push(if matches!(array, PgColumn::Json(_)) {
                format!("c{n}::jsonb")
            } else {
                format!("c{n}")
            });
        }
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM UNNEST({}) AS u({}) {conflict}",
            columns.join(", "),
            select.join(", "),
            unnest.join(", "),
            names.join(", ")
        );
        let mut affected = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            for row in rows.by_ref().take(UNNEST_ROWS) {
                for (array, v) in arrays.iter_mut().zip(row) {
                    array.push(v);
                }
            }
            let mut args = PgArguments::default();
            for array in &mut arrays {
                array.bind(&mut args);
            }
            affected += sqlx::query_with(&sql, args)
                .persistent(false)
                .execute(&mut **c)
                .await?
                .rows_affected();
        }
        Ok(affected)
    }

    /// Runs `sql` once per chunk of `ids`, with `{ids}` in `sql` replaced by the chunk's
    /// placeholders, which follow the `fixed` arguments.
    pub async fn for_ids(
        &mut self,
        sql: &str,
        fixed: Vec<Val>,
        ids: &[String],
    ) -> sqlx::Result<u64> {
        let mut affected = 0;
        for chunk in ids.chunks(MAX_ROWS) {
            let (text, args) = id_list(self.backend(), sql, &fixed, chunk);
            affected += self.execute(&text, args).await?;
        }
        Ok(affected)
    }

    /// As [`Conn::for_ids`], collecting the rows each chunk returns.
    pub async fn fetch_for_ids<T>(
        &mut self,
        sql: &str,
        fixed: Vec<Val>,
        ids: &[String],
    ) -> sqlx::Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_ROWS) {
            let (text, args) = id_list(self.backend(), sql, &fixed, chunk);
            out.extend(self.fetch_all::<T>(&text, args).await?);
        }
        Ok(out)
    }
}

fn id_list(backend: Backend, sql: &str, fixed: &[Val], ids: &[String]) -> (String, Vec<Val>) {
    // `?n` rather than `$n` on SQLite, which looks `$n` names up one by one (see
    // `push_placeholder`).
    let mark = match backend {
        Backend::Sqlite => '?',
        Backend::Postgres => '$',
    };
    let start = fixed.len() + 1;
    let list: Vec<String> = (start..start + ids.len())
        .map(|n| format!("{mark}{n}"))
        .collect();
    let mut args = fixed.to_vec();
    args.extend(ids.iter().map(|id| Val::Text(Some(id.clone()))));
    (sql.replace("{ids}", &list.join(", ")), args)
}
