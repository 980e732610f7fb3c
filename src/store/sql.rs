//! The two SQL dialects behind one small interface: a statement is written once, run on
//! either backend's connection, with typed binds (so NULLs have the column's type on
//! PostgreSQL), and batched inserts that stay under each backend's bind limit. What each
//! dialect builds differently is in `sqlite.rs` and `postgres.rs`.

use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::FromRow;

use super::{postgres, sqlite, StoreError};
use crate::model::{Row, Val};

/// SQLite's bind limit is 32,766 and PostgreSQL's 65,535; stay well under both, and keep
/// statements to a size that prepares fast.
pub(super) const MAX_BINDS: usize = 30_000;
pub(super) const MAX_ROWS: usize = 1_000;

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

/// A statement built ahead of its turn, for [`Conn::send`].
pub struct Statement {
    pub(super) sql: String,
    pub(super) args: Args,
    /// Kept prepared in the connection's cache (see [`Backend::keeps_plans_of_id_lists`]).
    pub(super) persistent: bool,
    /// What it does, for the error should it fail ("writing sources").
    pub(super) doing: &'static str,
}

pub(super) enum Args {
    Sqlite(SqliteArguments<'static>),
    Postgres(PgArguments),
    /// The data of a `COPY ... FROM STDIN` (PostgreSQL's text format).
    Copy(Vec<u8>),
}

/// Statements built one at a time, as [`Conn::send`] asks for the next.
pub type Statements<'a> = Box<dyn Iterator<Item = Statement> + Send + 'a>;

/// A batched insert, as [`Backend::insert`] hands it to a dialect: never of zero rows.
pub(super) struct Insert<'a> {
    pub table: &'a str,
    pub columns: &'a [&'a str],
    pub rows: Vec<Row>,
    pub conflict: &'a str,
    pub doing: &'static str,
}

impl Backend {
    /// The statements that insert `rows` into `table`, in as few statements as the bind
    /// limits allow; `conflict` is appended to each (e.g. an `ON CONFLICT ... DO UPDATE`).
    /// The rows must not hold the same key twice, and their first column must not be
    /// NULL (it is the key, or part of it, in every table written so), which the callers
    /// guarantee.
    ///
    /// SQLite gets multi-row `VALUES` lists of anonymous `?` placeholders: it resolves
    /// `$n` names by a linear search, so a statement of thousands of them parses and binds
    /// in quadratic time (that was 90% of a first sync). A statement holds 512 rows (fewer
    /// where the bind limit says so), the last of a batch padded to a power of two with
    /// rows of NULLs that its `WHERE column1 IS NOT NULL` drops (see `sqlite::chunk_sizes`),
    /// so a table needs a dozen distinct statements and the connection keeps them prepared.
    /// `OR FAIL` spares SQLite the statement journal (a copy of every page a statement
    /// touches, kept to undo just that statement): a failed statement fails the whole run,
    /// whose transaction is rolled back.
    ///
    /// PostgreSQL gets one array per column, unnested by the server: a few binds and one
    /// short statement, however many rows. A plain insert (no `conflict`) of many rows is
    /// a `COPY` instead, which the server parses and writes with the least work per row.
    pub fn insert(
        self,
        table: &str,
        columns: &[&str],
        rows: Vec<Row>,
        conflict: &str,
        doing: &'static str,
    ) -> Statements<'static> {
        if rows.is_empty() {
            return Box::new(std::iter::empty());
        }
        let insert = Insert {
            table,
            columns,
            rows,
            conflict,
            doing,
        };
        match self {
            Backend::Sqlite => sqlite::insert(insert),
            Backend::Postgres => postgres::insert(insert),
        }
    }

    /// The statements that run `sql` once per chunk of `ids`, with `{ids}` in `sql`
    /// replaced by the chunk's placeholders, which follow the `fixed` arguments.
    pub fn for_ids<'a>(
        self,
        sql: &str,
        fixed: Vec<Val>,
        ids: &'a [String],
        doing: &'static str,
    ) -> Statements<'a> {
        let sql = sql.to_string();
        Box::new(ids.chunks(MAX_ROWS).map(move |chunk| {
            let (sql, args) = id_list(self, &sql, &fixed, chunk);
            Statement {
                args: self.args(args),
                sql,
                doing,
                persistent: self.keeps_plans_of_id_lists(),
            }
        }))
    }

    /// Whether a statement over an id list is kept prepared. SQLite's plan does not depend
    /// on the data. PostgreSQL, after a few executions of a prepared statement, may keep a
    /// generic plan made while the run's tables were nearly empty (a scan comparing every
    /// row with each of 1,024 parameters) as they grow: 17 s of a 36 s first sync of
    /// 40,000 sources. An unnamed statement is planned with its values every time.
    fn keeps_plans_of_id_lists(self) -> bool {
        self == Backend::Sqlite
    }

    fn args(self, values: Vec<Val>) -> Args {
        match self {
            Backend::Sqlite => Args::Sqlite(sqlite::args(values, 0)),
            Backend::Postgres => Args::Postgres(postgres::args(values)),
        }
    }
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
        let args = self.backend().args(args);
        self.run(sql, args, false).await
    }

    /// Runs the statements in order; returns the rows they affected. Each statement is
    /// built while the one before it runs (the database works on its own thread or
    /// server), and is kept prepared: the batches of a run take a few shapes, sent often.
    pub async fn send(&mut self, statements: Statements<'_>) -> Result<u64, StoreError> {
        let mut statements = statements;
        let mut next = statements.next();
        let mut affected = 0;
        while let Some(statement) = next.take() {
            // `join!` polls in order: the statement is sent first, then the next one is
            // built while the database runs it.
            let Statement {
                sql,
                args,
                doing,
                persistent,
            } = statement;
            let (done, following) = futures::join!(self.run(&sql, args, persistent), async {
                statements.next()
            });
            affected += done.map_err(|source| StoreError::Sql { doing, source })?;
            next = following;
        }
        Ok(affected)
    }

    /// Runs one statement, kept prepared in the connection's statement cache when
    /// `persistent`.
    async fn run(&mut self, sql: &str, args: Args, persistent: bool) -> sqlx::Result<u64> {
        let done = match (self, args) {
            (Conn::Sqlite(c), Args::Sqlite(args)) => {
                sqlx::query_with(sql, args)
                    .persistent(persistent)
                    .execute(&mut **c)
                    .await?
            }
            .rows_affected(),
            (Conn::Postgres(c), Args::Postgres(args)) => {
                sqlx::query_with(sql, args)
                    .persistent(persistent)
                    .execute(&mut **c)
                    .await?
            }
            .rows_affected(),
            (Conn::Postgres(c), Args::Copy(data)) => {
                let mut copy = c.copy_in_raw(sql).await?;
                copy.send(data).await?;
                copy.finish().await?
            }
            _ => unreachable!("a statement is built for its connection's backend"),
        };
        Ok(done)
    }

    pub async fn fetch_all<T>(&mut self, sql: &str, args: Vec<Val>) -> sqlx::Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        self.fetch(sql, args, false).await
    }

    async fn fetch<T>(
        &mut self,
        sql: &str,
        args: Vec<Val>,
        persistent: bool,
    ) -> sqlx::Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        match self {
            Conn::Sqlite(c) => {
                sqlx::query_as_with(sql, sqlite::args(args, 0))
                    .persistent(persistent)
                    .fetch_all(&mut **c)
                    .await
            }
            Conn::Postgres(c) => {
                sqlx::query_as_with(sql, postgres::args(args))
                    .persistent(persistent)
                    .fetch_all(&mut **c)
                    .await
            }
        }
    }

    /// Runs `sql` once per chunk of `ids` (see [`Backend::for_ids`]), collecting the rows.
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
            let persistent = self.backend().keeps_plans_of_id_lists();
            out.extend(self.fetch::<T>(&text, args, persistent).await?);
        }
        Ok(out)
    }
}

/// The statement for one chunk of an id list, and its arguments. The list is padded to a
/// power of two by repeating its last id (harmless in `IN (...)`), so that the statements
/// of a run have few shapes and stay prepared.
fn id_list(backend: Backend, sql: &str, fixed: &[Val], ids: &[String]) -> (String, Vec<Val>) {
    // `?n` rather than `$n` on SQLite, which looks `$n` names up one by one (see
    // `Backend::insert`).
    let mark = match backend {
        Backend::Sqlite => '?',
        Backend::Postgres => '$',
    };
    let padded = ids.len().max(1).next_power_of_two();
    let start = fixed.len() + 1;
    let list: Vec<String> = (start..start + padded)
        .map(|n| format!("{mark}{n}"))
        .collect();
    let mut args = fixed.to_vec();
    args.extend(ids.iter().map(|id| Val::Text(Some(id.clone()))));
    let last = ids.last().cloned();
    args.extend(std::iter::repeat_n(Val::Text(last), padded - ids.len()));
    (sql.replace("{ids}", &list.join(", ")), args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_are_padded_with_the_last_id() {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let (sql, args) = id_list(Backend::Sqlite, "x IN ({ids})", &[Val::Int(Some(7))], &ids);
        assert_eq!(sql, "x IN (?2, ?3, ?4, ?5)");
        let text = |s: &str| Val::Text(Some(s.to_string()));
        assert_eq!(
            args,
            vec![
                Val::Int(Some(7)),
                text("a"),
                text("b"),
                text("c"),
                text("c")
            ]
        );
        let (sql, _) = id_list(Backend::Postgres, "x IN ({ids})", &[], &ids[..1]);
        assert_eq!(sql, "x IN ($1)");
    }
}
