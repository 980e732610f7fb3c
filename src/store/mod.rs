//! The database: open the one the URL names, run the embedded migrations, hold the
//! one-writer lock, and open the transaction in which a run applies its snapshot.

pub(crate) mod apply;
pub mod dashboards;
pub(crate) mod history;
mod lock;
mod postgres;
pub mod runs;
pub(crate) mod sql;
mod sqlite;

use std::path::PathBuf;

use sqlx::migrate::MigrateError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, Sqlite};

use crate::db_url::DatabaseUrl;
use crate::failure::Failure;
use lock::lock_file;
pub use lock::WriterLock;
pub use sql::{Backend, Conn};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Prepared statements a connection keeps: a run's batched inserts and id lists take a
/// dozen shapes per table (see `sqlite::chunk_sizes`), about 250 in all.
const STATEMENT_CACHE: usize = 320;

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
    #[error(
        "the PostgreSQL database at {url} does not exist ({why}). closebot-sync creates its \
         tables, not the database: have it created, owned by the user closebot-sync connects \
         as, e.g. `CREATE DATABASE closebot OWNER closebot;` (docs/operating.md), then run \
         `closebot-sync sync`"
    )]
    NoPostgresDatabase { url: String, why: String },
    #[error("database error while {doing}: {source}")]
    Sql {
        doing: &'static str,
        source: sqlx::Error,
    },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database was upgraded by a newer closebot-sync: it has migration {version}, and \
         this closebot-sync knows migrations up to {known}. Nothing was changed; run that newer \
         closebot-sync (or restore the backup taken before the upgrade)"
    )]
    Newer { version: i64, known: i64 },
    #[error(
        "the database's schema history does not match this closebot-sync's migrations ({0}): \
         it was migrated by another build. Nothing was changed; run the closebot-sync that last \
         migrated it, or restore a backup"
    )]
    History(sqlx::migrate::MigrateError),
    #[error(
        "cannot migrate the database: {0}. It held a table of that name before closebot-sync \
         first migrated it: point database.url at an empty database of its own"
    )]
    Occupied(sqlx::migrate::MigrateError),
    #[error(
        "cannot migrate the database: {0}. The database user may not create tables there \
         (since PostgreSQL 15, only the database's owner may create in schema public unless \
         granted): make the user the owner (ALTER DATABASE ... OWNER TO ...), or GRANT CREATE ON \
         SCHEMA public TO it"
    )]
    NotAllowed(sqlx::migrate::MigrateError),
    #[error(
        "the database user may use no schema of its search_path (PostgreSQL's current_schema() \
         is NULL), so there is nowhere to find or make closebot-sync's tables: GRANT USAGE, \
         CREATE ON SCHEMA public TO the user (or the schema it is to use), or set its search_path \
         to a schema it may use"
    )]
    NoSchema,
    #[error("another closebot-sync is syncing into this database ({0}); this run did not start")]
    Busy(String),
    #[error("the database schema is behind this closebot-sync ({} pending): run `closebot-sync migrate`", crate::text::count(*pending as u64, "migration", "migrations"))]
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
    pub(crate) fn failure(&self) -> Failure {
        match self {
            StoreError::Busy(_) => Failure::Busy,
            _ => Failure::Failed,
        }
    }
}

/// Tags a sqlx error with what the store was doing.
pub(crate) trait Doing<T> {
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

/// An open database of either backend. Made only by [`Store::connect`] and
/// [`Store::open_read_only`], so its lock file is always the one beside its database.
#[derive(Clone, Debug)]
pub struct Store(Pool);

#[derive(Clone, Debug)]
enum Pool {
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

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
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

impl Store {
    /// Opens the database `url` names, for writing (a SQLite file is created if missing).
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Store, StoreError> {
        Ok(match url {
            DatabaseUrl::Sqlite { file, .. } => {
                Store::sqlite(sqlite::open(url, max_connections).await?, file)
            }
            DatabaseUrl::Postgres { .. } => Store(Pool::Postgres {
                pool: postgres::open(url, max_connections).await?,
            }),
        })
    }

    /// Opens the database for reading only, never creating or changing it: SQLite with
    /// `mode=ro` (no journal mode set, no file created), PostgreSQL with
    /// `default_transaction_read_only`. A SQLite file that does not exist is
    /// [`StoreError::Missing`].
    pub async fn open_read_only(url: &DatabaseUrl) -> Result<Store, StoreError> {
        Ok(match url {
            DatabaseUrl::Sqlite { file, .. } => {
                Store::sqlite(sqlite::open_read_only(url).await?, file)
            }
            DatabaseUrl::Postgres { .. } => Store(Pool::Postgres {
                pool: postgres::open_read_only(url).await?,
            }),
        })
    }

    /// A SQLite store, with the writer's lock file beside `file`.
    fn sqlite(pool: SqlitePool, file: &std::path::Path) -> Store {
        Store(Pool::Sqlite {
            pool,
            lock_path: lock_file(file),
        })
    }

    pub fn backend(&self) -> Backend {
        match &self.0 {
            Pool::Sqlite { .. } => Backend::Sqlite,
            Pool::Postgres { .. } => Backend::Postgres,
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match &self.0 {
            Pool::Sqlite { .. } => &SQLITE_MIGRATIONS,
            Pool::Postgres { .. } => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the migrations this binary carries that the database lacks, and the backfill
    /// a migration left to do; returns how many migrations. The caller holds the writer
    /// lock: two processes never migrate one database at once (SQLite has no lock of its own
    /// for it).
    pub(crate) async fn migrate(&self, held: &WriterLock) -> Result<usize, StoreError> {
        let before = self.pending_migrations().await?;
        let applied = match &self.0 {
            Pool::Sqlite { pool, .. } => SQLITE_MIGRATIONS.run(pool).await,
            // sqlx leaves its migration lock (a PostgreSQL session lock) held when a
            // migration fails: that connection is closed, not handed back to the pool with
            // the lock, where it would make every later migration in this process wait for
            // ever. (`run_direct` is `run` on one connection, which sqlx keeps public for
            // futures that must be Send.) SQLite's migrations take no lock.
            Pool::Postgres { pool } => {
                let mut c = pool.acquire().await.doing("connecting")?;
                let applied = POSTGRES_MIGRATIONS.run_direct(&mut *c).await;
                if applied.is_err() {
                    c.close_on_drop();
                }
                applied
            }
        };
        let fresh = before == self.migrator().iter().count();
        applied.map_err(|e| self.migrate_error(e, fresh))?;
        dashboards::run_pending(self, held).await?;
        Ok(before)
    }

    /// Says what a refused migration means for the operator: a database a newer
    /// closebot-sync upgraded, or one whose applied migrations are not this binary's.
    /// `fresh`: the database had none of closebot-sync's migrations before.
    fn migrate_error(&self, e: MigrateError, fresh: bool) -> StoreError {
        let known = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        match e {
            MigrateError::VersionMissing(version) if version > known => {
                StoreError::Newer { version, known }
            }
            MigrateError::VersionMissing(_) | MigrateError::VersionMismatch(_) => {
                StoreError::History(e)
            }
            // PostgreSQL's insufficient_privilege.
            MigrateError::Execute(sqlx::Error::Database(ref d))
            | MigrateError::ExecuteMigration(sqlx::Error::Database(ref d), _)
                if d.code().as_deref() == Some("42501") =>
            {
                StoreError::NotAllowed(e)
            }
            // A table closebot-sync makes was there before it: PostgreSQL's duplicate_table,
            // SQLite's own words for it.
            MigrateError::ExecuteMigration(sqlx::Error::Database(ref d), _)
                if fresh
                    && (d.code().as_deref() == Some("42P07")
                        || (d.message().starts_with("table ")
                            && d.message().ends_with("already exists"))) =>
            {
                StoreError::Occupied(e)
            }
            other => StoreError::Migrate(other),
        }
    }

    /// Takes the writer lock, applies the pending migrations, releases the lock.
    pub async fn migrate_locked(&self) -> Result<usize, StoreError> {
        let lock = self.lock_writer().await?;
        let applied = self.migrate(&lock).await;
        lock.release().await;
        applied
    }

    /// For a command that only reads: the schema must be there and up to date.
    pub(crate) async fn require_schema(&self, url: &DatabaseUrl) -> Result<(), StoreError> {
        if !self.has_schema().await? {
            return Err(StoreError::Missing {
                url: url.to_string(),
                why: "it holds no closebot-sync tables".to_string(),
            });
        }
        match self.pending_migrations().await? {
            0 => Ok(()),
            pending => Err(StoreError::Outdated { pending }),
        }
    }

    /// Whether the migrations table exists (the database was migrated at least once).
    pub(crate) async fn has_schema(&self) -> Result<bool, StoreError> {
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

    /// How many of this binary's migrations the database has not applied yet; an error if
    /// it has applied one this binary does not have (a newer closebot-sync upgraded it) or
    /// one that differs from this binary's (another build migrated it): no command should
    /// read or write such a database as if it were its own.
    pub(crate) async fn pending_migrations(&self) -> Result<usize, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Applied {
            version: i64,
            checksum: Vec<u8>,
        }
        let applied: Vec<Applied> = if !self.has_schema().await? {
            Vec::new()
        } else {
            self.acquire()
                .await?
                .conn()
                .fetch_all(
                    "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
                    vec![],
                )
                .await
                .doing("reading the applied migrations")?
        };
        let known = self.migrator();
        for a in &applied {
            match known.iter().find(|m| m.version == a.version) {
                Some(m) if *m.checksum == *a.checksum => {}
                Some(_) => {
                    return Err(self.migrate_error(MigrateError::VersionMismatch(a.version), false))
                }
                None => {
                    return Err(self.migrate_error(MigrateError::VersionMissing(a.version), false))
                }
            }
        }
        Ok(known
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
            .count())
    }

    pub async fn acquire(&self) -> Result<Pooled, StoreError> {
        match &self.0 {
            Pool::Sqlite { pool, .. } => pool.acquire().await.map(Pooled::Sqlite),
            Pool::Postgres { pool } => pool.acquire().await.map(Pooled::Postgres),
        }
        .doing("connecting")
    }

    /// Opens a write transaction (SQLite: `BEGIN IMMEDIATE`, so it never fails half-way on a lock upgrade).
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        match &self.0 {
            Pool::Sqlite { pool, .. } => pool.begin_with("BEGIN IMMEDIATE").await.map(Tx::Sqlite),
            Pool::Postgres { pool } => pool.begin().await.map(Tx::Postgres),
        }
        .doing("starting the run's transaction")
    }

    /// Opens a read transaction that sees one committed state throughout: SQLite's
    /// deferred `BEGIN` (its snapshot is taken at the first read and held), PostgreSQL's
    /// `REPEATABLE READ READ ONLY`.
    pub(crate) async fn begin_read(&self) -> Result<Tx, StoreError> {
        match &self.0 {
            Pool::Sqlite { pool, .. } => pool.begin_with("BEGIN").await.map(Tx::Sqlite),
            Pool::Postgres { pool } => pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map(Tx::Postgres),
        }
        .doing("starting a read transaction")
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        match &self.0 {
            Pool::Sqlite { pool, .. } => close_pool(pool).await,
            Pool::Postgres { pool } => close_pool(pool).await,
        }
    }
}

/// Closes every connection of `pool`, once those just handed back are in it. sqlx returns a
/// dropped connection to its pool in a task of its own, and one still on its way back when
/// `Pool::close` runs stays open until the process exits (sqlx 0.8.6): SQLite, whose last
/// connection to close removes the write-ahead log, then left the log beside the database
/// after 7 first syncs in 10. So wait, briefly, for the pool to hold all its connections
/// idle; a connection still in use after that (a stop in the middle of a run) is closed by
/// the pool when it comes back.
async fn close_pool<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) {
    const STEP: std::time::Duration = std::time::Duration::from_millis(5);
    for _ in 0..200 {
        if pool.num_idle() >= pool.size() as usize {
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    pool.close().await;
}
