//! Health: is the last successful run younger than `health.max_age`? Read from `sync_runs`,
//! so the answer survives restarts and agrees between `/healthz`, `status` and the database.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{Doing, Store, StoreError};

/// The current health of the mirror.
#[derive(Debug, Clone)]
pub struct Health {
    pub checked_at: DateTime<Utc>,
    pub max_age: Duration,
    /// When the last `succeeded` run finished.
    pub last_success: Option<DateTime<Utc>>,
    /// The newest finished run (any status but `running`): id, status, error.
    pub last_run: Option<(i64, String, Option<String>)>,
}

#[derive(sqlx::FromRow)]
struct Success {
    finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Last {
    run_id: i64,
    status: String,
    error: Option<String>,
}

impl Health {
    /// Reads the health from the database.
    pub async fn read(store: &Store, max_age: Duration) -> Result<Health, StoreError> {
        let mut c = store.acquire().await?;
        let success: Vec<Success> = c
            .conn()
            .fetch_all(
                "SELECT finished_at FROM sync_runs WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1",
                vec![],
            )
            .await
            .doing("reading the last successful run")?;
        let last: Vec<Last> = c
            .conn()
            .fetch_all(
                "SELECT run_id, status, error FROM sync_runs WHERE status <> 'running' ORDER BY run_id DESC LIMIT 1",
                vec![],
            )
            .await
            .doing("reading the last finished run")?;
        Ok(Health {
            checked_at: Utc::now(),
            max_age,
            last_success: success.into_iter().next().and_then(|s| s.finished_at),
            last_run: last
                .into_iter()
                .next()
                .map(|l| (l.run_id, l.status, l.error)),
        })
    }

    /// How long ago the last successful run finished.
    pub fn age(&self) -> Option<Duration> {
        self.last_success
            .map(|t| (self.checked_at - t).to_std().unwrap_or_default())
    }

    pub fn is_healthy(&self) -> bool {
        matches!(self.age(), Some(age) if age <= self.max_age)
    }

    /// One paragraph for `/healthz` and `status`: healthy or not, and why.
    pub fn describe(&self) -> String {
        let max = humantime::format_duration(self.max_age);
        let mut text = match (self.last_success, self.age()) {
            (Some(at), Some(age)) => {
                let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
                let verdict = if self.is_healthy() {
                    "healthy"
                } else {
                    "unhealthy"
                };
                format!(
                    "{verdict}: the last successful run finished at {} UTC, {age} ago (health.max_age is {max})",
                    at.format("%Y-%m-%d %H:%M:%S")
                )
            }
            _ => format!("unhealthy: no run has succeeded yet (health.max_age is {max})"),
        };
        if let Some((id, status, error)) = &self.last_run {
            if status != "succeeded" {
                text.push_str(&format!("; the last finished run ({id}) is {status}"));
                if let Some(e) = error {
                    text.push_str(&format!(": {e}"));
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(age_secs: Option<i64>, last: Option<(&str, Option<&str>)>) -> Health {
        let now = Utc::now();
        Health {
            checked_at: now,
            max_age: Duration::from_secs(3600),
            last_success: age_secs.map(|s| now - chrono::Duration::seconds(s)),
            last_run: last.map(|(s, e)| (7, s.to_string(), e.map(str::to_string))),
        }
    }

    #[test]
    fn a_success_younger_than_max_age_is_healthy_and_an_older_one_is_not() {
        assert!(health(Some(3599), None).is_healthy());
        let old = health(Some(3601), Some(("failed", Some("API down"))));
        assert!(!old.is_healthy());
        let text = old.describe();
        assert!(text.starts_with("unhealthy"), "{text}");
        assert!(
            text.contains("the last finished run (7) is failed: API down"),
            "{text}"
        );
    }

    #[test]
    fn no_success_at_all_is_unhealthy_and_says_so() {
        let h = health(None, None);
        assert!(!h.is_healthy());
        assert!(h.describe().contains("no run has succeeded yet"));
    }
}
