//! The database: connect by URL scheme, run the embedded migrations, hold the one-writer
//! lock, and open the transaction in which a run applies its snapshot.

pub mod apply;
pub mod dashboards;
pub mod history;
mod lock;
mod redact;
pub mod runs;
pub mod sql;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Postgres, Sqlite};

use crate::failure::Failure;
use lock::lock_file;
pub use lock::WriterLock;
pub use redact::redact_url;
pub use sql::{Backend, Conn};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Prepared statements a connection keeps: a run's batched inserts and id lists take a
/// dozen shapes per table (see `sql::chunk_sizes`), about 250 in all.
const STATEMENT_CACHE: usize = 320;

/// How long a SQLite connection waits for another process's lock before it gives up.
const SQLITE_BUSY_WAIT: Duration = Duration::from_secs(30);

/// SQLITE_BUSY (5) or one of its extended codes (`5 | n << 8`).
fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "there is no closebot-sync database at {url} ({why}); this command only reads and never \
         creates one. To read the service's database, run it with the service's settings: \
         `--config /etc/closebot-sync/closebot-sync.toml`, or \
         CLOSEBOT_SYNC_DATABASE__URL=sqlite:///var/lib/closebot-sync/closebot-sync.db (with sudo: \
         the service's state directory is private); for a new mirror, run `closebot-sync sync` first"
    )]
    Missing { url: String, why: String },
    #[error("database error while {doing}: {source}")]
    Sql {
        doing: &'static str,
        source: sqlx::Error,
    },
    #[error("cannot migrate the database: {0}; if a migration was edited after it ran, restore it and add a new one instead")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("another closebot-sync is syncing into this database ({0}); this run did not start")]
    Busy(String),
    #[error("the database schema is behind this closebot-sync ({pending} migrations pending): run `closebot-sync migrate`")]
    Outdated { pending: usize },
    #[error("the database holds data this closebot-sync cannot read: {0}")]
    Corrupt(String),
    #[error("cannot use the lock file {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    /// What kind of failure this is when it ends a command: busy when another instance
    /// holds the writer lock.
    pub fn failure(&self) -> Failure {
        match self {
            StoreError::Busy(_) => Failure::Busy,
            _ => Failure::Failed,
        }
    }
}

/// Tags a sqlx error with what the store was doing.
pub trait Doing<T> {
    fn doing(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for sqlx::Result<T> {
    fn doing(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sql {
            doing: what,
            source,
        })
    }
}

#[derive(Clone, Debug)]
pub enum Store {
    Sqlite {
        pool: SqlitePool,
        lock_path: PathBuf,
    },
    Postgres {
        pool: PgPool,
    },
}

/// An open transaction of either backend.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(t) => Conn::Sqlite(&mut *t),
            Tx::Postgres(t) => Conn::Postgres(&mut *t),
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
        .doing("committing the run")
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        }
        .doing("rolling back the run")
    }
}

/// A pooled connection of either backend.
pub enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(&mut *c),
            Pooled::Postgres(c) => Conn::Postgres(&mut *c),
        }
    }
}

/// The write-ahead log beside a SQLite database.
fn wal_file(db: &std::path::Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-wal");
    path.into()
}

/// The file of a `sqlite:` database URL (`None` for PostgreSQL and in-memory databases).
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

impl Store {
    /// Opens the database named by `url` (`sqlite:` or `postgres://`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let fail = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(fail)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_WAIT)
                .foreign_keys(false)
                // Takes effect only when the file is new (see docs/performance.md): a
                // 3 kB record then shares its page, and SQLite writes a quarter as many.
                .page_size(16_384)
                .statement_cache_capacity(STATEMENT_CACHE);
            let lock_path = lock_file(options.get_filename());
            // Turning a new file to WAL needs it to itself, and SQLite answers "database is
            // locked" at once, without its busy handler, when another process is in the
            // middle of creating the same file: try again for as long as the busy time-out.
            let started = std::time::Instant::now();
            let pool = loop {
                let opened = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .connect_with(options.clone())
                    .await;
                match opened {
                    Err(e) if is_sqlite_busy(&e) && started.elapsed() < SQLITE_BUSY_WAIT => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => break other.map_err(fail)?,
                }
            };
            Ok(Store::Sqlite { pool, lock_path })
        } else {
            // Without JIT: the tables grow within a run's transaction, unanalyzed, so the
            // planner's costs overshoot, and it compiled statements of a few milliseconds
            // for 180 ms each. (Statements over id lists are planned with their values
            // every time: see `sql::Backend::keeps_plans_of_id_lists`.)
            let options = PgConnectOptions::from_str(url)
                .map_err(fail)?
                .statement_cache_capacity(STATEMENT_CACHE)
                .options([("jit", "off")]);
            Self::connect_postgres(url, options, max_connections).await
        }
    }

    /// A pool for PostgreSQL, after one plain connection has shown that the server answers:
    /// the pool itself retries a refused connection until its time-out, so "connection
    /// refused" would become "pool timed out" 30 s later.
    async fn connect_postgres(
        url: &str,
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        let fail = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        let probe = sqlx::PgConnection::connect_with(&options).await;
        match probe {
            Ok(c) => {
                let _ = c.close().await;
            }
            // 3D000: the database does not exist.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
                return Err(StoreError::Missing {
                    url: redact_url(url),
                    why: e.message().to_string(),
                })
            }
            Err(e) => return Err(fail(e)),
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(fail)?;
        Ok(Store::Postgres { pool })
    }

    /// Opens the database for reading only, never creating or changing it: SQLite with
    /// `mode=ro` (no journal mode set, no file created), PostgreSQL with
    /// `default_transaction_read_only`. A SQLite file that does not exist is
    /// [`StoreError::Missing`].
    pub async fn open_read_only(url: &str) -> Result<Store, StoreError> {
        let fail = |source| StoreError::Connect {
            url: redact_url(url),
            source,
        };
        if !url.starts_with("sqlite:") {
            let options = PgConnectOptions::from_str(url)
                .map_err(fail)?
                .options([("default_transaction_read_only", "on")]);
            return Self::connect_postgres(url, options, 2).await;
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(fail)?
            .read_only(true)
            .create_if_missing(false)
            .busy_timeout(SQLITE_BUSY_WAIT);
        let path = options.get_filename().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::Missing {
                url: redact_url(url),
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
        let pool = match open(options.clone()).await {
            Ok(pool) => pool,
            // A WAL database whose -wal and -shm files are gone (no writer has it open) in
            // a folder the reader cannot write: SQLite cannot create the shared memory, and
            // reads the file only as immutable, which is safe while no writer runs.
            Err(first) if !wal_file(&path).exists() => open(options.immutable(true))
                .await
                .map_err(|_| fail(first))?,
            Err(e) => return Err(fail(e)),
        };
        Ok(Store::Sqlite {
            pool,
            lock_path: lock_file(&path),
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite { .. } => Backend::Sqlite,
            Store::Postgres { .. } => Backend::Postgres,
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self {
            Store::Sqlite { .. } => &SQLITE_MIGRATIONS,
            Store::Postgres { .. } => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the migrations this binary carries that the database lacks, and the backfill
    /// a migration left to do; returns how many migrations. The caller holds the writer
    /// lock: two processes never migrate one database at once (SQLite has no lock of its own
    /// for it).
    pub async fn migrate(&self, held: &WriterLock) -> Result<usize, StoreError> {
        let before = self.pending_migrations().await?;
        match self {
            Store::Sqlite { pool, .. } => SQLITE_MIGRATIONS.run(pool).await?,
            Store::Postgres { pool } => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        dashboards::run_pending(self, held).await?;
        Ok(before)
    }

    /// Takes the writer lock, applies the pending migrations, releases the lock.
    pub async fn migrate_locked(&self) -> Result<usize, StoreError> {
        let lock = self.lock_writer().await?;
        let applied = self.migrate(&lock).await;
        lock.release().await;
        applied
    }

    /// For a command that only reads: the schema must be there and up to date.
    pub async fn require_schema(&self, url: &str) -> Result<(), StoreError> {
        if !self.has_schema().await? {
            return Err(StoreError::Missing {
                url: redact_url(url),
                why: "it holds no closebot-sync tables".to_string(),
            });
        }
        match self.pending_migrations().await? {
            0 => Ok(()),
            pending => Err(StoreError::Outdated { pending }),
        }
    }

    /// Whether the migrations table exists (the database was migrated at least once).
    pub async fn has_schema(&self) -> Result<bool, StoreError> {
        let mut c = self.acquire().await?;
        let found: Vec<(i64,)> = match c.conn() {
            Conn::Sqlite(s) => sqlx::query_as(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_all(&mut *s)
            .await,
            Conn::Postgres(p) => sqlx::query_as(
                "SELECT 1::bigint FROM pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()",
            )
            .fetch_all(&mut *p)
            .await,
        }
        .doing("reading the applied migrations")?;
        Ok(!found.is_empty())
    }

    /// How many of this binary's migrations the database has not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Applied {
            version: i64,
        }
        let applied: Vec<Applied> = if !self.has_schema().await? {
            Vec::new()
        } else {
            self.acquire()
                .await?
                .conn()
                .fetch_all("SELECT version FROM _sqlx_migrations WHERE success", vec![])
                .await
                .doing("reading the applied migrations")?
        };
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .count())
    }

    pub async fn acquire(&self) -> Result<Pooled, StoreError> {
        match self {
            Store::Sqlite { pool, .. } => pool.acquire().await.map(Pooled::Sqlite),
            Store::Postgres { pool } => pool.acquire().await.map(Pooled::Postgres),
        }
        .doing("connecting")
    }

    /// Opens a write transaction (SQLite: `BEGIN IMMEDIATE`, so it never fails half-way on a lock upgrade).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match self {
            Store::Sqlite { pool, .. } => pool.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
            Store::Postgres { pool } => pool.begin().await.map(Tx::Postgres),
        }
        .doing("starting the run's transaction")
    }

    /// Opens a read transaction that sees one committed state throughout: SQLite's
    /// deferred `BEGIN` (its snapshot is taken at the first read and held), PostgreSQL's
    /// `REPEATABLE READ READ ONLY`.
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        match self {
            Store::Sqlite { pool, .. } => pool.begin_with("BEGIN").await.map(Tx::Sqlite),
            Store::Postgres { pool } => pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map(Tx::Postgres),
        }
        .doing("starting a read transaction")
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        match self {
            Store::Sqlite { pool, .. } => pool.close().await,
            Store::Postgres { pool } => pool.close().await,
        }
    }
}
