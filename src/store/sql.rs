//! The two SQL dialects behind one small interface: typed binds (so NULLs have the
//! column's type on PostgreSQL), `$n` placeholders, and batched multi-row inserts that stay
//! under each backend's bind limit.

use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::{Arguments, FromRow};

use super::StoreError;
use crate::model::record::sqlite_time;
use crate::model::{Row, Val};

/// SQLite's bind limit is 32,766 and PostgreSQL's 65,535; stay well under both, and keep
/// statements to a size that prepares fast.
const MAX_BINDS: usize = 30_000;
const MAX_ROWS: usize = 1_000;

/// Rows per `UNNEST` statement or `COPY` on PostgreSQL (bounds what is held at once).
const UNNEST_ROWS: usize = 5_000;

/// From this many rows, a plain insert on PostgreSQL is a `COPY` (see `copy_insert`).
const COPY_MIN_ROWS: usize = 1_000;

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

/// Binds values in order; `len` says how many there are, where the iterator cannot (so
/// the arguments are allocated once).
fn sqlite_args(args: impl IntoIterator<Item = Val>, len: usize) -> SqliteArguments<'static> {
    let args = args.into_iter();
    let mut a = SqliteArguments::default();
    a.reserve(len.max(args.size_hint().0), 0);
    for v in args {
        let r = match v {
            // SQLite's NUMERIC affinity stores a decimal text as a number.
            Val::Text(s) | Val::Json(s) | Val::Decimal(s) => a.add(s),
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

/// A statement built ahead of its turn, for [`Conn::send`].
pub struct Statement {
    sql: String,
    args: Args,
    /// Kept prepared in the connection's cache (see [`Backend::keeps_plans_of_id_lists`]).
    persistent: bool,
    /// What it does, for the error should it fail ("writing sources").
    doing: &'static str,
}

enum Args {
    Sqlite(SqliteArguments<'static>),
    Postgres(PgArguments),
    /// The data of a `COPY ... FROM STDIN` (PostgreSQL's text format).
    Copy(Vec<u8>),
}

/// Statements built one at a time, as [`Conn::send`] asks for the next.
pub type Statements<'a> = Box<dyn Iterator<Item = Statement> + Send + 'a>;

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
    /// rows of NULLs that its `WHERE column1 IS NOT NULL` drops (see [`chunk_sizes`]), so
    /// a table needs a dozen distinct statements and the connection keeps them prepared. `OR FAIL` spares SQLite the statement journal
    /// (a copy of every page a statement touches, kept to undo just that statement): a
    /// failed statement fails the whole run, whose transaction is rolled back.
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
        match self {
            Backend::Sqlite => sqlite_insert(table, columns, rows, conflict, doing),
            Backend::Postgres if conflict.is_empty() && rows.len() >= COPY_MIN_ROWS => {
                copy_insert(table, columns, rows, doing)
            }
            Backend::Postgres => unnest_insert(table, columns, rows, conflict, doing),
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
            Backend::Sqlite => Args::Sqlite(sqlite_args(values, 0)),
            Backend::Postgres => Args::Postgres(pg_args(values)),
        }
    }
}

fn sqlite_insert(
    table: &str,
    columns: &[&str],
    rows: Vec<Row>,
    conflict: &str,
    doing: &'static str,
) -> Statements<'static> {
    // A real row with a NULL first column would be dropped with the padding: refuse it.
    assert!(
        rows.iter().all(|r| r.first().is_some_and(|v| !v.is_null())),
        "a row for {table} has no value in its first column, {}",
        columns[0]
    );
    let head = format!(
        "INSERT OR FAIL INTO {table} ({}) SELECT * FROM (VALUES ",
        columns.join(", ")
    );
    let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
    let tail = format!(") WHERE column1 IS NOT NULL {conflict}");
    let width = columns.len();
    let sizes = chunk_sizes(rows.len(), (MAX_BINDS / width).clamp(1, MAX_ROWS));
    let mut rows = rows.into_iter();
    Box::new(sizes.map(move |(size, padded)| {
        let mut sql = String::with_capacity(head.len() + padded * (tuple.len() + 2) + tail.len());
        sql.push_str(&head);
        for i in 0..padded {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&tuple);
        }
        sql.push_str(&tail);
        let values = rows.by_ref().take(size).flatten();
        let padding = std::iter::repeat_n(Val::Text(None), (padded - size) * width);
        let args = sqlite_args(values.chain(padding), padded * width);
        Statement {
            sql,
            args: Args::Sqlite(args),
            doing,
            persistent: true,
        }
    }))
}

/// PostgreSQL: `INSERT ... SELECT ... FROM UNNEST($1::text[], ...)`, a column per array.
fn unnest_insert(
    table: &str,
    columns: &[&str],
    rows: Vec<Row>,
    conflict: &str,
    doing: &'static str,
) -> Statements<'static> {
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

/// PostgreSQL: `COPY table (columns) FROM STDIN`, the rows in COPY's text format, a
/// statement per [`UNNEST_ROWS`] rows.
fn copy_insert(
    table: &str,
    columns: &[&str],
    rows: Vec<Row>,
    doing: &'static str,
) -> Statements<'static> {
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
                sqlx::query_as_with(sql, sqlite_args(args, 0))
                    .persistent(persistent)
                    .fetch_all(&mut **c)
                    .await
            }
            Conn::Postgres(c) => {
                sqlx::query_as_with(sql, pg_args(args))
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

/// The statements that insert `n` rows, none over `max` rows: `(rows, padded)`, the rows
/// a statement inserts and the power of two it is padded to with rows of NULLs (which its
/// `WHERE column1 IS NOT NULL` drops). All but the last hold the largest power of two up to
/// `max`, so the statements of a table take a dozen shapes, which the connection's
/// statement cache keeps prepared, and a table takes one statement per chunk.
fn chunk_sizes(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let top = 1usize << max.max(1).ilog2();
    let full = std::iter::repeat_n((top, top), n / top);
    let rest = n % top;
    full.chain((rest > 0).then(|| (rest, rest.next_power_of_two())))
}

/// The statement for one chunk of an id list, and its arguments. The list is padded to a
/// power of two by repeating its last id (harmless in `IN (...)`), so that the statements
/// of a run have few shapes and stay prepared.
fn id_list(backend: Backend, sql: &str, fixed: &[Val], ids: &[String]) -> (String, Vec<Val>) {
    // `?n` rather than `$n` on SQLite, which looks `$n` names up one by one (see
    // `insert_rows`).
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
    fn chunks_add_up_and_are_padded_to_powers_of_two() {
        for (n, max) in [
            (0, 512),
            (1, 512),
            (1000, 937),
            (1024, 1000),
            (5000, 1000),
            (7, 3),
        ] {
            let sizes: Vec<(usize, usize)> = chunk_sizes(n, max).collect();
            assert_eq!(
                sizes.iter().map(|s| s.0).sum::<usize>(),
                n,
                "{n} rows, max {max}: {sizes:?}"
            );
            assert!(
                sizes.iter().all(|&(rows, padded)| padded.is_power_of_two()
                    && rows <= padded
                    && padded <= max),
                "{sizes:?}"
            );
        }
        assert_eq!(
            chunk_sizes(1300, 937).collect::<Vec<_>>(),
            [(512, 512), (512, 512), (276, 512)]
        );
        assert_eq!(chunk_sizes(5, 937).collect::<Vec<_>>(), [(5, 8)]);
    }

    #[test]
    #[should_panic(expected = "no value in its first column")]
    fn a_row_without_its_key_is_refused_rather_than_dropped_with_the_padding() {
        let rows = vec![vec![Val::Text(Some("a".into()))], vec![Val::Text(None)]];
        let _ = Backend::Sqlite.insert("t", &["k"], rows, "", "testing");
    }

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
