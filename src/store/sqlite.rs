//! SQLite: opening the file (to write, creating it, or read-only), and its statements:
//! values bound in order to anonymous `?` placeholders, multi-row inserts padded to a few
//! shapes that stay prepared.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Arguments;

use super::sql::{Args, Insert, Statement, Statements, MAX_BINDS, MAX_ROWS};
use super::{StoreError, STATEMENT_CACHE};
use crate::db_url::DatabaseUrl;
use crate::model::record::sqlite_time;
use crate::model::Val;

/// How long a SQLite connection waits for another process's lock before it gives up.
const BUSY_WAIT: Duration = Duration::from_secs(30);

/// The size the write-ahead log is cut back to when a write starts over a checkpointed
/// log. A run is one transaction, so the log holds all it writes until it commits (a
/// first sync of 10,000 sources: about 120 MB); without a limit SQLite keeps the file at
/// its largest size for as long as the service runs, beside a database of the same size.
/// 16 MiB is what the log reaches between SQLite's own checkpoints (1,000 pages of 16 KiB).
const WAL_SIZE_LIMIT: u64 = 16 << 20;

/// SQLITE_BUSY (5) or one of its extended codes (`5 | n << 8`).
fn is_busy(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// The write-ahead log beside a SQLite database.
fn wal_file(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    path.into()
}

/// The connect options `url` names, or the store's error naming it (shown without secrets).
fn options(url: &DatabaseUrl) -> Result<SqliteConnectOptions, StoreError> {
    SqliteConnectOptions::from_str(url.as_str()).map_err(|source| connect_error(url, source))
}

fn connect_error(url: &DatabaseUrl, source: sqlx::Error) -> StoreError {
    StoreError::Connect {
        url: url.to_string(),
        source,
    }
}

/// Opens (creating it if missing) the database for writing.
pub(super) async fn open(
    url: &DatabaseUrl,
    max_connections: u32,
) -> Result<SqlitePool, StoreError> {
    let options = options(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_WAIT)
        .foreign_keys(false)
        // Takes effect only when the file is new (see docs/performance.md): a
        // 3 kB record then shares its page, and SQLite writes a quarter as many.
        .page_size(16_384)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
        .statement_cache_capacity(STATEMENT_CACHE);
    // Turning a new file to WAL needs it to itself, and SQLite answers "database is
    // locked" at once, without its busy handler, when another process is in the
    // middle of creating the same file: try again for as long as the busy time-out.
    let started = std::time::Instant::now();
    loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.clone())
            .await;
        match opened {
            Err(e) if is_busy(&e) && started.elapsed() < BUSY_WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other.map_err(|e| connect_error(url, e)),
        }
    }
}

/// Opens the database with `mode=ro` (no journal mode set, no file created); a file that
/// does not exist is [`StoreError::Missing`].
pub(super) async fn open_read_only(url: &DatabaseUrl) -> Result<SqlitePool, StoreError> {
    let options = options(url)?
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(BUSY_WAIT);
    let path = options.get_filename().to_path_buf();
    if !path.is_file() {
        return Err(StoreError::Missing {
            url: url.to_string(),
            why: format!("the file {} does not exist", path.display()),
        });
    }
    // Opening is lazy about the WAL: the first read is what fails when it cannot be used.
    let open = |options: SqliteConnectOptions| async move {
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&pool)
            .await?;
        Ok::<_, sqlx::Error>(pool)
    };
    match open(options.clone()).await {
        Ok(pool) => Ok(pool),
        // A WAL database whose -wal and -shm files are gone (no writer has it open) in
        // a folder the reader cannot write: SQLite cannot create the shared memory, and
        // reads the file only as immutable, which is safe while no writer runs.
        Err(first) if !wal_file(&path).exists() => open(options.immutable(true))
            .await
            .map_err(|_| connect_error(url, first)),
        Err(e) => Err(connect_error(url, e)),
    }
}

/// Binds values in order; `len` says how many there are, where the iterator cannot (so
/// the arguments are allocated once).
pub(super) fn args(args: impl IntoIterator<Item = Val>, len: usize) -> SqliteArguments<'static> {
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

/// Multi-row `VALUES` lists of `?` placeholders (see [`super::Backend::insert`]).
pub(super) fn insert(insert: Insert<'_>) -> Statements<'static> {
    let (table, columns, doing) = (insert.table, insert.columns, insert.doing);
    // A real row with a NULL first column would be dropped with the padding: refuse it.
    assert!(
        insert
            .rows
            .iter()
            .all(|r| r.first().is_some_and(|v| !v.is_null())),
        "a row for {table} has no value in its first column, {}",
        columns[0]
    );
    let head = format!(
        "INSERT OR FAIL INTO {table} ({}) SELECT * FROM (VALUES ",
        columns.join(", ")
    );
    let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
    let tail = format!(") WHERE column1 IS NOT NULL {}", insert.conflict);
    let width = columns.len();
    let sizes = chunk_sizes(insert.rows.len(), (MAX_BINDS / width).clamp(1, MAX_ROWS));
    let mut rows = insert.rows.into_iter();
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
        let bound = args(values.chain(padding), padded * width);
        Statement {
            sql,
            args: Args::Sqlite(bound),
            doing,
            persistent: true,
        }
    }))
}

/// The statements that insert `n` rows, none over `max` rows: `(rows, padded)`, the rows
/// a statement inserts and the power of two it is padded to with rows of NULLs (which its
/// `WHERE column1 IS NOT NULL` drops). All but the last hold the largest power of two up to
/// `max`, so the statements of a table take a dozen shapes, which the connection's
/// statement cache keeps prepared, and a table takes one statement per chunk.
pub(super) fn chunk_sizes(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let top = 1usize << max.max(1).ilog2();
    let full = std::iter::repeat_n((top, top), n / top);
    let rest = n % top;
    full.chain((rest > 0).then(|| (rest, rest.next_power_of_two())))
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
        let _ = insert(Insert {
            table: "t",
            columns: &["k"],
            rows,
            conflict: "",
            doing: "testing",
        });
    }

    /// A large transaction grows the log far past the limit; the next write, on any of the
    /// pool's connections, starts the log over and cuts the file back to the limit.
    #[tokio::test]
    async fn the_write_ahead_log_is_cut_back_after_a_large_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        let url = DatabaseUrl::from_str(&format!("sqlite://{}", db.display())).unwrap();
        let pool = open(&url, 2).await.unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        let large = (WAL_SIZE_LIMIT * 3) as i64;
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
             INSERT INTO t SELECT hex(randomblob(500)) FROM n",
        )
        .bind(large / 1000)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let size = || std::fs::metadata(wal_file(&db)).unwrap().len();
        assert!(
            size() > WAL_SIZE_LIMIT * 2,
            "the log holds the whole transaction: {} bytes",
            size()
        );
        sqlx::query("INSERT INTO t VALUES ('small')")
            .execute(&pool)
            .await
            .unwrap();
        assert!(
            size() <= WAL_SIZE_LIMIT,
            "the log stayed at {} bytes",
            size()
        );
    }
}
