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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A placeholder for a JSON value (PostgreSQL receives it as text and casts it).
    pub fn json(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("${n}"),
            Backend::Postgres => format!("${n}::jsonb"),
        }
    }

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

    /// Inserts rows in as few statements as the bind limits allow. `conflict` is appended
    /// to each statement (e.g. an `ON CONFLICT ... DO UPDATE`); a batch must not hold the
    /// same key twice, which the callers guarantee.
    pub async fn insert_rows(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: Vec<Row>,
        conflict: &str,
    ) -> sqlx::Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let json: Vec<bool> = first.iter().map(|v| matches!(v, Val::Json(_))).collect();
        let per_statement = (MAX_BINDS / columns.len()).clamp(1, MAX_ROWS);
        let backend = self.backend();
        let head = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Row> = rows.by_ref().take(per_statement).collect();
            let mut sql = String::with_capacity(head.len() + chunk.len() * columns.len() * 8);
            sql.push_str(&head);
            let mut n = 0;
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for (c, is_json) in json.iter().enumerate() {
                    n += 1;
                    if c > 0 {
                        sql.push_str(", ");
                    }
                    if *is_json {
                        sql.push_str(&backend.json(n));
                    } else {
                        sql.push('$');
                        sql.push_str(&n.to_string());
                    }
                }
                sql.push(')');
            }
            sql.push(' ');
            sql.push_str(conflict);
            let args: Vec<Val> = chunk.into_iter().flatten().collect();
            self.execute(&sql, args).await?;
        }
        Ok(())
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
            let (text, args) = id_list(sql, &fixed, chunk);
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
            let (text, args) = id_list(sql, &fixed, chunk);
            out.extend(self.fetch_all::<T>(&text, args).await?);
        }
        Ok(out)
    }
}

fn id_list(sql: &str, fixed: &[Val], ids: &[String]) -> (String, Vec<Val>) {
    let start = fixed.len() + 1;
    let list: Vec<String> = (start..start + ids.len())
        .map(|n| format!("${n}"))
        .collect();
    let mut args = fixed.to_vec();
    args.extend(ids.iter().map(|id| Val::Text(Some(id.clone()))));
    (sql.replace("{ids}", &list.join(", ")), args)
}
