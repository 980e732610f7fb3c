//! The one-writer lock: a PostgreSQL advisory lock or an exclusive lock on a file beside
//! the SQLite database, taken before a run (and before migrations) writes anything.

use std::path::PathBuf;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Postgres};

use super::{Doing, Pool, Store, StoreError};

/// Held while a run writes: no two runs sync into one database at the same time.
/// PostgreSQL: a session advisory lock (its connection is closed, not pooled, on drop, so
/// the lock cannot outlive the run). SQLite: an exclusive lock on `<database>.lock`.
pub enum WriterLock {
    Postgres(Option<PoolConnection<Postgres>>),
    File(std::fs::File),
}

impl WriterLock {
    /// Releases the lock now. Dropping it releases it too, but on PostgreSQL only once the
    /// server has noticed the closed session, which a run started right after may beat.
    pub async fn release(mut self) {
        if let WriterLock::Postgres(conn) = &mut self {
            if let Some(mut c) = conn.take() {
                // The session holds nothing but this lock. If the unlock fails, closing the
                // session releases it all the same.
                let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
                    .execute(&mut *c)
                    .await;
                let _ = c.detach().close().await;
            }
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let WriterLock::Postgres(conn) = self {
            if let Some(conn) = conn.take() {
                // Closing the session releases the advisory lock.
                drop(conn.detach());
            }
        }
    }
}

/// The writer's lock file beside a SQLite database.
pub(super) fn lock_file(db: &std::path::Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    path.into()
}

impl Store {
    /// Takes the one-writer lock, or says who has it.
    pub async fn lock_writer(&self) -> Result<WriterLock, StoreError> {
        match &self.0 {
            Pool::Sqlite { lock_path, .. } => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(lock_path)
                    .map_err(|source| StoreError::LockFile {
                        path: lock_path.clone(),
                        source,
                    })?;
                match file.try_lock() {
                    Ok(()) => Ok(WriterLock::File(file)),
                    Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy(format!(
                        "the lock file {} is held by another process",
                        lock_path.display()
                    ))),
                    Err(std::fs::TryLockError::Error(source)) => Err(StoreError::LockFile {
                        path: lock_path.clone(),
                        source,
                    }),
                }
            }
            Pool::Postgres { pool } => {
                let mut conn = pool.acquire().await.doing("connecting")?;
                // One lock per database and schema, so separate test schemas do not collide. A
                // user that may use no schema of its search_path has none: its key is NULL, and
                // pg_try_advisory_lock (strict) takes no lock and answers NULL.
                let (got,): (Option<bool>,) = sqlx::query_as(
                    "SELECT pg_try_advisory_lock(hashtext('closebot-sync:' || current_database() || ':' || current_schema())::bigint)",
                )
                .fetch_one(&mut *conn)
                .await
                .doing("taking the writer lock")?;
                let Some(got) = got else {
                    return Err(StoreError::NoSchema);
                };
                if got {
                    Ok(WriterLock::Postgres(Some(conn)))
                } else {
                    Err(StoreError::Busy(
                        "another instance holds the PostgreSQL advisory lock".to_string(),
                    ))
                }
            }
        }
    }
}
