//! The database URL, parsed once at load into the backend it names, so no other module
//! looks at its scheme again. It shows itself (`Display`, `Debug`) with every credential
//! replaced by `***`; only [`DatabaseUrl::as_str`] gives the text to connect with.

mod redact;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use redact::redact_url;

/// Where the mirror lives: a SQLite file or a PostgreSQL database.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH` (or `sqlite:PATH`), with the file it names.
    Sqlite { url: String, file: PathBuf },
    /// `postgres://...` or `postgresql://...`, passed to the server's client as written: a
    /// password that does not parse still reaches the connection's error, never the screen.
    Postgres { url: String },
}

/// Why a text is no database URL closebot-sync can use, and what to write instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDatabaseUrl(String);

const EXAMPLES: &str = "e.g. sqlite://closebot-sync.db or postgres://user@localhost/closebot";

impl DatabaseUrl {
    /// The SQLite database in `file`.
    pub(crate) fn sqlite(file: &Path) -> DatabaseUrl {
        DatabaseUrl::Sqlite {
            url: format!("sqlite://{}", file.display()),
            file: file.to_path_buf(),
        }
    }

    /// The URL as written, credentials and all: for connecting, never for showing.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite { url, .. } | DatabaseUrl::Postgres { url } => url,
        }
    }

    /// The SQLite database's file (`None` for PostgreSQL).
    pub(crate) fn sqlite_file(&self) -> Option<&Path> {
        match self {
            DatabaseUrl::Sqlite { file, .. } => Some(file),
            DatabaseUrl::Postgres { .. } => None,
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    fn from_str(text: &str) -> Result<DatabaseUrl, InvalidDatabaseUrl> {
        let url = text.trim().to_string();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            refuse_unknown_parameters(&url)?;
            return Ok(DatabaseUrl::Postgres { url });
        }
        if !url.starts_with("sqlite:") {
            return Err(InvalidDatabaseUrl(format!(
                "must start with sqlite: or postgres:// ({EXAMPLES})"
            )));
        }
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(InvalidDatabaseUrl(
                "an in-memory SQLite database is gone when the process exits: every run would \
                 start from nothing and no other command could read it; give a file, e.g. \
                 sqlite://closebot-sync.db"
                    .to_string(),
            ));
        }
        // The file as SQLite will open it (percent-decoded, the query left off), so the lock
        // file and the "does it exist" checks look at the same path.
        let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .map_err(|e| {
                InvalidDatabaseUrl(format!(
                    "{url} is not a SQLite URL closebot-sync can open ({e}); write \
                     sqlite://PATH, e.g. sqlite://closebot-sync.db or \
                     sqlite:///var/lib/closebot-sync/closebot-sync.db"
                ))
            })?
            .get_filename()
            .to_path_buf();
        if file.as_os_str().is_empty() {
            // SQLite's name for a temporary database, gone when the process exits (an unset
            // variable in `sqlite://$DB` writes it).
            return Err(InvalidDatabaseUrl(format!(
                "{url} names no file: give one, e.g. sqlite://closebot-sync.db or \
                 sqlite:///var/lib/closebot-sync/closebot-sync.db"
            )));
        }
        Ok(DatabaseUrl::Sqlite { url, file })
    }
}

/// The query parameters PostgreSQL's driver (sqlx 0.8) reads; it ignores any other, and logs
/// its value as it does, a password included (`sslpassword`).
const POSTGRES_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// A PostgreSQL URL's parameter the driver would ignore is refused by its name (never its
/// value): a setting that does nothing is a mistake to show, and the driver's own warning
/// would print the value.
fn refuse_unknown_parameters(url: &str) -> Result<(), InvalidDatabaseUrl> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    for (key, _) in parsed.query_pairs() {
        let known = POSTGRES_PARAMETERS.contains(&key.as_ref())
            || (key.starts_with("options[") && key.ends_with(']'));
        if !known {
            return Err(InvalidDatabaseUrl(format!(
                "the PostgreSQL URL has the parameter `{}`, which closebot-sync's PostgreSQL \
                 driver does not know and would ignore: remove it (it reads {})",
                crate::closebot::untrusted::printable(&key),
                POSTGRES_PARAMETERS.join(", ")
            )));
        }
    }
    Ok(())
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { url, .. } => f.write_str(url),
            DatabaseUrl::Postgres { url } => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend_and_sqlite_names_its_file() {
        let url: DatabaseUrl = " sqlite:///var/lib/x/db.sqlite?mode=rwc ".parse().unwrap();
        assert_eq!(url.sqlite_file(), Some(Path::new("/var/lib/x/db.sqlite")));
        assert_eq!(url.as_str(), "sqlite:///var/lib/x/db.sqlite?mode=rwc");
        let url: DatabaseUrl = "sqlite://closebot-sync.db".parse().unwrap();
        assert_eq!(url.sqlite_file(), Some(Path::new("closebot-sync.db")));
        assert_eq!(url, DatabaseUrl::sqlite(Path::new("closebot-sync.db")));
        for text in ["postgres://u@h/db", "postgresql://u@h/db"] {
            let url: DatabaseUrl = text.parse().unwrap();
            assert_eq!(url.sqlite_file(), None, "{text}");
            assert_eq!(url.as_str(), text);
        }
    }

    #[test]
    fn a_postgres_parameter_the_driver_would_ignore_is_refused_by_its_name_alone() {
        for text in [
            "postgres://u:pw@h/db?sslpassword=hunter3",
            "postgres://u@h/db?sslmode=require&passcode=hunter3",
        ] {
            let e = text.parse::<DatabaseUrl>().unwrap_err().to_string();
            assert!(e.contains("would ignore"), "{e}");
            assert!(!e.contains("hunter3") && !e.contains("pw"), "{e}");
        }
        for text in [
            "postgres://u@h/db?sslmode=require&application_name=x&options[search_path]=m",
            "postgres://u@h/db?host=/run/postgresql&statement-cache-capacity=10",
        ] {
            assert!(text.parse::<DatabaseUrl>().is_ok(), "{text}");
        }
    }

    #[test]
    fn a_url_of_no_usable_database_says_what_to_write() {
        for (text, says) in [
            ("mysql://x", "must start with sqlite: or postgres://"),
            ("closebot-sync.db", "must start with sqlite: or postgres://"),
            ("sqlite::memory:", "in-memory"),
            ("sqlite://x.db?mode=memory", "in-memory"),
            ("sqlite://x.db?cache=sideways", "sqlite://PATH"),
            ("sqlite://", "names no file"),
        ] {
            let e = text.parse::<DatabaseUrl>().unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains("sqlite://closebot-sync.db"), "{text}: {e}");
        }
    }

    #[test]
    fn it_shows_itself_without_the_password() {
        let url: DatabaseUrl = "postgres://u:s3cret@db.internal/closebot".parse().unwrap();
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("postgres://u:***@db.internal/closebot"),
                "{shown}"
            );
        }
        assert!(url.as_str().contains("s3cret"));
    }
}
