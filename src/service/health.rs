//! Health: did a run apply the listing's changes (`succeeded` or `partial`) within
//! `health.max_age`? Read from `sync_runs` by the same rule as the `sync_health` view, so
//! `/healthz`, `status` and the database agree, and the answer survives restarts. Partial
//! runs count as applied (an always-partial listing is not stale), and the text says how
//! many came in a row and why, since nothing is marked deleted while they last.

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
    /// The last run that applied changes (`succeeded` or `partial`).
    pub last_applied: Option<Applied>,
    /// `partial` runs since the last `succeeded` one, and the notes of the newest.
    pub partial_streak: u64,
    pub partial_notes: Option<String>,
    /// The newest finished run (any status but `running`): id, status, error.
    pub last_run: Option<(i64, String, Option<String>)>,
}

/// A run that applied changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub run_id: i64,
    pub status: String,
    pub finished_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    run_id: i64,
    status: String,
    finished_at: Option<DateTime<Utc>>,
    notes: Option<String>,
    error: Option<String>,
}

impl Health {
    /// Reads the health from the database: the runs since the last success (a handful).
    pub async fn read(store: &Store, max_age: Duration) -> Result<Health, StoreError> {
        let mut c = store.acquire().await?;
        let rows: Vec<Row> = c
            .conn()
            .fetch_all(
                "SELECT run_id, status, finished_at, notes, error FROM sync_runs \
                 WHERE status <> 'running' AND run_id >= COALESCE((SELECT MAX(run_id) FROM sync_runs \
                 WHERE status = 'succeeded'), (SELECT MIN(run_id) FROM sync_runs)) ORDER BY run_id DESC",
                vec![],
            )
            .await
            .doing("reading the runs since the last success")?;
        Ok(Health::from_runs(Utc::now(), max_age, rows))
    }

    /// `rows`: finished runs from the last success on, newest first.
    fn from_runs(checked_at: DateTime<Utc>, max_age: Duration, rows: Vec<Row>) -> Health {
        let applied = |r: &&Row| matches!(r.status.as_str(), "succeeded" | "partial");
        let partial: Vec<&Row> = rows.iter().filter(|r| r.status == "partial").collect();
        Health {
            checked_at,
            max_age,
            last_success: rows
                .iter()
                .find(|r| r.status == "succeeded")
                .and_then(|r| r.finished_at),
            last_applied: rows.iter().find(applied).and_then(|r| {
                Some(Applied {
                    run_id: r.run_id,
                    status: r.status.clone(),
                    finished_at: r.finished_at?,
                })
            }),
            partial_streak: partial.len() as u64,
            partial_notes: partial.first().and_then(|r| r.notes.clone()),
            last_run: rows
                .first()
                .map(|r| (r.run_id, r.status.clone(), r.error.clone())),
        }
    }

    /// How long ago the last run that applied changes finished.
    pub(crate) fn age(&self) -> Option<Duration> {
        self.last_applied.as_ref().map(|a| {
            (self.checked_at - a.finished_at)
                .to_std()
                .unwrap_or_default()
        })
    }

    pub fn is_healthy(&self) -> bool {
        matches!(self.age(), Some(age) if age <= self.max_age)
    }

    /// One paragraph for `/healthz` and `status`: healthy or not, and why.
    pub fn describe(&self) -> String {
        let max = humantime::format_duration(self.max_age);
        let mut text = match (&self.last_applied, self.age()) {
            (Some(a), Some(age)) => {
                let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
                let verdict = if self.is_healthy() {
                    "healthy"
                } else {
                    "unhealthy"
                };
                format!(
                    "{verdict}: the last run that applied changes (run {}, {}) finished at {} UTC, {age} ago (health.max_age is {max})",
                    a.run_id,
                    a.status,
                    a.finished_at.format("%Y-%m-%d %H:%M:%S")
                )
            }
            _ => format!("unhealthy: no run has applied changes yet (health.max_age is {max})"),
        };
        if self.partial_streak > 0 {
            let n = self.partial_streak;
            let (runs, were) = if n == 1 {
                ("run", "was")
            } else {
                ("runs", "were")
            };
            let since = match self.last_success {
                Some(at) => format!(
                    "the last full success at {} UTC",
                    at.format("%Y-%m-%d %H:%M:%S")
                ),
                None => "the start (no run has fully succeeded)".to_string(),
            };
            text.push_str(&format!(
                "; {n} {runs} in a row {were} partial since {since}, so nothing was marked deleted"
            ));
            if let Some(notes) = &self.partial_notes {
                text.push_str(&format!(": {notes}"));
            }
        }
        if let Some((id, status, error)) = &self.last_run {
            if status != "succeeded" && status != "partial" {
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

    fn run(id: i64, status: &str, age_secs: i64, now: DateTime<Utc>) -> Row {
        Row {
            run_id: id,
            status: status.to_string(),
            finished_at: Some(now - chrono::Duration::seconds(age_secs)),
            notes: (status == "partial").then(|| format!("walk of run {id} incomplete")),
            error: (status == "failed").then(|| "API down".to_string()),
        }
    }

    fn health(runs: &[(i64, &str, i64)]) -> Health {
        let now = Utc::now();
        let rows = runs.iter().map(|(i, s, a)| run(*i, s, *a, now)).collect();
        Health::from_runs(now, Duration::from_secs(3600), rows)
    }

    #[test]
    fn a_success_younger_than_max_age_is_healthy_and_an_older_one_is_not() {
        assert!(health(&[(7, "succeeded", 3599)]).is_healthy());
        let old = health(&[(8, "failed", 10), (7, "succeeded", 3601)]);
        assert!(!old.is_healthy());
        let text = old.describe();
        assert!(text.starts_with("unhealthy"), "{text}");
        assert!(
            text.contains("the last finished run (8) is failed: API down"),
            "{text}"
        );
    }

    #[test]
    fn partial_runs_keep_the_mirror_healthy_and_say_how_many_and_why() {
        let h = health(&[
            (9, "partial", 60),
            (8, "failed", 120),
            (7, "partial", 180),
            (6, "succeeded", 7200),
        ]);
        assert!(h.is_healthy(), "{}", h.describe());
        assert_eq!(h.last_applied.as_ref().map(|a| a.run_id), Some(9));
        assert_eq!(h.partial_streak, 2);
        let text = h.describe();
        assert!(text.contains("(run 9, partial)"), "{text}");
        assert!(text.contains("2 runs in a row were partial"), "{text}");
        assert!(
            text.ends_with("nothing was marked deleted: walk of run 9 incomplete"),
            "{text}"
        );
    }

    #[test]
    fn no_applied_run_at_all_is_unhealthy_and_says_so() {
        let h = health(&[(1, "failed", 5)]);
        assert!(!h.is_healthy());
        assert!(h.describe().contains("no run has applied changes yet"));
    }
}
