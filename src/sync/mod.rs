//! One run: take the writer lock, record the run, walk the listing (again, up to
//! `sync.max_walks`, while it cannot be shown complete), apply each page as it arrives,
//! decide what may be marked deleted, and commit it all at once.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::closebot::printable;
use crate::closebot::{walk, ApiError, Client, PageSink, RawSource};
use crate::config::Settings;
use crate::failure::Failure;
use crate::model::{prepare, Prepared, Rejected};
use crate::store::apply::{Applier, PREVIEW_MAX};
use crate::store::runs::{self, RunCounts, RunStatus};
use crate::store::{Store, StoreError};

mod report;

pub use report::RunReport;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the run was stopped by shutdown before it finished; nothing of it was applied")]
    Cancelled,
    #[error(
        "the run was still going after sync.max_run_time ({}) and was stopped; nothing of it \
         was applied. The API answered too slowly for the listing (see the run's pages and \
         retries); raise sync.max_run_time if runs this long are expected",
        humantime::format_duration(*.0)
    )]
    TooLong(Duration),
}

impl SyncError {
    /// The status a run that ended with this error gets.
    pub(crate) fn status(&self) -> RunStatus {
        match self {
            SyncError::Cancelled => RunStatus::Aborted,
            _ => RunStatus::Failed,
        }
    }

    /// What kind of failure this is when it ends a command.
    pub(crate) fn failure(&self) -> Failure {
        match self {
            SyncError::Cancelled => Failure::Aborted,
            SyncError::Store(e) => e.failure(),
            SyncError::Api(_) | SyncError::TooLong(_) => Failure::Failed,
        }
    }
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// What started the run (`manual`, `schedule`, `demo`); recorded in `sync_runs.trigger`.
    pub trigger: String,
    /// Walk and compare, write nothing (no run row either).
    pub dry_run: bool,
    /// Accept, once, a complete walk that would delete more than `sync.max_delete_fraction`.
    pub allow_mass_delete: bool,
    /// Apply pending migrations first, under the writer lock (`sync`; the daemon migrates at
    /// start).
    pub migrate: bool,
}

struct Sink<'a> {
    applier: &'a mut Applier,
    store_credentials: bool,
    cancel: &'a CancellationToken,
    /// Pages taken so far (kept when the walk fails: a failed run records what it saw).
    pages: &'a mut u64,
}

/// A page's sources ready to apply, and those quarantined.
type PreparedPage = (Vec<Prepared>, Vec<Rejected>);

impl PageSink for Sink<'_> {
    type Error = SyncError;
    type Page = PreparedPage;

    fn preparer(
        &self,
    ) -> impl Fn(u32, Vec<RawSource>) -> Result<PreparedPage, SyncError> + Clone + Send + Sync + 'static
    {
        let store_credentials = self.store_credentials;
        move |page, sources| {
            let mut page_of = (Vec::with_capacity(sources.len()), Vec::new());
            for raw in sources {
                match prepare(raw, store_credentials) {
                    Ok(p) => page_of.0.push(p),
                    Err(r) => {
                        tracing::warn!(page, source_id = %printable(&r.id), field = %r.defect.field,
                            problem = %r.defect.problem, "a source's record cannot be mirrored: quarantined");
                        page_of.1.push(r);
                    }
                }
            }
            Ok(page_of)
        }
    }

    async fn accept(
        &mut self,
        _page: u32,
        (prepared, rejected): PreparedPage,
    ) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        self.applier.reject(rejected);
        self.applier.apply(prepared).await?;
        *self.pages += 1;
        Ok(())
    }
}

/// The sink of a walk made to confirm deletions: it only counts pages (the walk itself keeps
/// the ids it saw); the records are dropped unprepared in their pages' tasks.
struct IdsOnly<'a> {
    cancel: &'a CancellationToken,
    pages: &'a mut u64,
}

impl PageSink for IdsOnly<'_> {
    type Error = SyncError;
    type Page = ();

    fn preparer(
        &self,
    ) -> impl Fn(u32, Vec<RawSource>) -> Result<(), SyncError> + Clone + Send + Sync + 'static {
        |_, _| Ok(())
    }

    async fn accept(&mut self, _page: u32, (): ()) -> Result<(), SyncError> {
        if self.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        *self.pages += 1;
        Ok(())
    }
}

/// The notes a run adds for quarantined and duplicate sources (the first few by id).
fn quality_notes(applier: &Applier) -> Vec<String> {
    const SHOWN: usize = 3;
    let mut notes = Vec::new();
    let mut rejected = applier.rejected();
    if !rejected.is_empty() {
        rejected.sort_by(|a, b| a.id.cmp(&b.id));
        let first: Vec<String> = rejected
            .iter()
            .take(SHOWN)
            .map(|r| {
                format!(
                    "{} ({})",
                    printable(&crate::store::apply::reject_key(&r.id)),
                    r.defect
                )
            })
            .collect();
        notes.push(format!(
            "{} {} quarantined, {} kept as stored (see source_rejects): {}{}",
            rejected.len(),
            if rejected.len() == 1 {
                "source"
            } else {
                "sources"
            },
            if rejected.len() == 1 {
                "its state"
            } else {
                "their state"
            },
            first.join("; "),
            if rejected.len() > SHOWN { "; ..." } else { "" }
        ));
    }
    let duplicates = applier.duplicates();
    if !duplicates.is_empty() {
        let first: Vec<String> = duplicates
            .iter()
            .take(SHOWN)
            .map(|id| printable(id).into_owned())
            .collect();
        notes.push(format!(
            "the listing held {} {} more than once with different content; the copy with the smallest content hash was kept: {}{}",
            duplicates.len(),
            if duplicates.len() == 1 { "source" } else { "sources" },
            first.join(", "),
            if duplicates.len() > SHOWN { ", ..." } else { "" }
        ));
    }
    notes
}

/// `work`, unless `cancel` comes first: then [`SyncError::Cancelled`].
async fn until_cancelled<T, E: Into<SyncError>>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, SyncError> {
    tokio::select! {
        r = work => r.map_err(Into::into),
        _ = cancel.cancelled() => Err(SyncError::Cancelled),
    }
}

/// Runs one sync. An error before the run row exists (the lock is taken, the database is
/// down) is returned as `Err`; once the row exists, every outcome is a [`RunReport`].
pub async fn run_once(
    settings: &Settings,
    store: &Store,
    client: &Client,
    options: &SyncOptions,
    cancel: &CancellationToken,
) -> Result<RunReport, SyncError> {
    let started = Instant::now();
    // Waiting for the database (down, or slow to hand a connection) gives way to a
    // shutdown: nothing has been written yet. The migrations are not cut short.
    let lock = until_cancelled(cancel, store.lock_writer()).await?;
    if options.migrate && !options.dry_run {
        let applied = store.migrate(&lock).await?;
        if applied > 0 {
            tracing::info!(applied, "migrated the database");
        }
    }
    let at = Utc::now();
    let run_id = if options.dry_run {
        None
    } else {
        let mut c = until_cancelled(cancel, store.acquire()).await?;
        let abandoned = runs::mark_abandoned(&mut c.conn()).await?;
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                "marked runs left running by a dead process as abandoned"
            );
        }
        Some(runs::start(&mut c.conn(), at, &options.trigger).await?)
    };
    let span = tracing::info_span!(
        "sync_run",
        run_id = run_id.unwrap_or(0),
        dry_run = options.dry_run
    );
    let before = (
        client.counters.requests.load(Ordering::Relaxed),
        client.counters.retries.load(Ordering::Relaxed),
    );
    let mut counts = RunCounts::default();
    let mut rows_written = 0;
    let mut preview = None;
    let outcome = async {
        let tx = until_cancelled(cancel, store.begin()).await?;
        let mut applier = Applier::new(tx, run_id.unwrap_or(0), at, options.dry_run);
        // Bounded in time as in size: a server that answers just inside api.timeout, page
        // after page, would otherwise hold the lock and the transaction for days.
        let limit = settings.sync.max_run_time;
        let result = tokio::select! {
            r = walk_and_apply(settings, client, options, &mut applier, &mut counts, cancel) => r,
            _ = cancel.cancelled() => Err(SyncError::Cancelled),
            _ = tokio::time::sleep(limit.saturating_sub(started.elapsed())) => Err(SyncError::TooLong(limit)),
        };
        counts.http_requests = client.counters.requests.load(Ordering::Relaxed) - before.0;
        counts.retries = client.counters.retries.load(Ordering::Relaxed) - before.1;
        let applied = applier.counts();
        rows_written = applied.rows_written;
        if options.dry_run {
            preview = Some(applier.preview(PREVIEW_MAX));
        }
        (
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.deleted,
            counts.restored,
        ) = (
            applied.created,
            applied.updated,
            applied.unchanged,
            applied.deleted,
            applied.restored,
        );
        let result = result.map(|(status, notes)| (status, with_unparsed(notes, applied.unparsed)));
        match result {
            Ok((status, notes)) => {
                let mut tx = applier.into_tx();
                if let Some(id) = run_id {
                    runs::finish(&mut tx.conn(), id, status, &counts, notes.as_deref(), None)
                        .await?;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok((status, notes))
            }
            Err(e) => {
                applier.into_tx().rollback().await?;
                Err(e)
            }
        }
    }
    .instrument(span.clone())
    .await;
    let (status, notes, error) = match outcome {
        Ok((status, notes)) => (status, notes, None),
        Err(e) => {
            let text = crate::text::chain(&e);
            // What the run saw stays (pages, requests, the sources it compared); what it
            // applied went with the rollback, so those counts are 0.
            let compared = counts.created + counts.updated + counts.unchanged + counts.restored;
            counts.seen = counts.seen.max(compared);
            (
                counts.created,
                counts.updated,
                counts.unchanged,
                counts.deleted,
                counts.restored,
            ) = (0, 0, 0, 0, 0);
            if let Some(id) = run_id {
                let finish = async {
                    let mut c = store.acquire().await?;
                    runs::finish(&mut c.conn(), id, e.status(), &counts, None, Some(&text)).await
                };
                if matches!(e, SyncError::Cancelled) {
                    // Stopping: the row is not worth outliving shutdown_timeout for. Left
                    // `running`, the next start marks it abandoned.
                    match tokio::time::timeout(Duration::from_secs(1), finish).await {
                        Ok(recorded) => recorded?,
                        Err(_) => tracing::warn!(
                            "could not record the stopped run in time; the next start marks it abandoned"
                        ),
                    }
                } else {
                    finish.await?;
                }
            }
            (e.status(), None, Some(text))
        }
    };
    let report = RunReport {
        run_id,
        status,
        counts,
        // The run row, which every real run writes.
        rows_written: rows_written + u64::from(run_id.is_some()),
        preview,
        notes,
        error,
        duration: started.elapsed(),
    };
    lock.release().await;
    // The caller shows the outcome once: `sync` on stdout, the daemon in its log.
    Ok(report)
}

/// Adds to the run's notes how many values it stored as text only.
fn with_unparsed(notes: Option<String>, unparsed: u64) -> Option<String> {
    if unparsed == 0 {
        return notes;
    }
    let text = format!(
        "{unparsed} respond-window or cost-override values did not parse: kept as text, their number columns NULL (see docs/schema.md)"
    );
    Some(match notes {
        Some(n) => format!("{n}; {text}"),
        None => text,
    })
}

async fn walk_and_apply(
    settings: &Settings,
    client: &Client,
    options: &SyncOptions,
    applier: &mut Applier,
    counts: &mut RunCounts,
    cancel: &CancellationToken,
) -> Result<(RunStatus, Option<String>), SyncError> {
    let mut union: HashSet<String> = HashSet::new();
    let mut totals: Vec<u64> = Vec::new();
    let mut steady = true;
    let mut complete: Option<HashSet<String>> = None;
    let mut problems: Vec<String> = Vec::new();
    for attempt in 1..=settings.sync.max_walks {
        let mut sink = Sink {
            applier: &mut *applier,
            store_credentials: settings.sync.store_credentials,
            cancel,
            pages: &mut counts.pages,
        };
        let w = walk(client, &mut sink).await?;
        counts.walks += 1;
        counts.api_total = Some(w.total);
        totals.push(w.total);
        steady &= w.steady;
        union.extend(w.seen.iter().cloned());
        match w.incomplete {
            None => {
                complete = Some(w.seen);
                break;
            }
            Some(why) => {
                tracing::warn!(walk = attempt, reason = %why, "the walk could not be shown complete");
                problems.push(format!("walk {attempt}: {why}"));
            }
        }
        // Walks that each missed something still cover the listing if together they saw as
        // many distinct sources as the total that every page of every walk reported.
        if steady && totals.windows(2).all(|t| t[0] == t[1]) && totals[0] == union.len() as u64 {
            complete = Some(union.clone());
            break;
        }
    }
    counts.seen = union.len() as u64;
    let mut notes = Vec::new();
    let mut status = RunStatus::Succeeded;
    match &mut complete {
        None => {
            let (missing, _) = applier.missing(&union).await?;
            applier.record_misses(&missing).await?;
            status = RunStatus::Partial;
            notes.push(format!(
                "the listing could not be shown complete after {} walks, so nothing was marked deleted ({})",
                counts.walks,
                problems.join("; ")
            ));
        }
        Some(seen) => {
            let (mut missing, live) = applier.missing(seen).await?;
            // A listing shown complete can still have hidden a source: one deleted from a
            // page already read and one added at the end leave `total` as it was while every
            // later source moves back a place, so a page boundary skips one. A source it did
            // not list is marked deleted only when one more walk, made to confirm, does not
            // list it either. That walk only reads ids: a source it lists stays as stored,
            // and what changed on it (or is new in it) is taken by the next run.
            if !missing.is_empty() {
                let mut sink = IdsOnly {
                    cancel,
                    pages: &mut counts.pages,
                };
                let w = walk(client, &mut sink).await?;
                counts.walks += 1;
                let (listed_again, gone): (Vec<String>, Vec<String>) =
                    missing.into_iter().partition(|id| w.seen.contains(id));
                if !listed_again.is_empty() {
                    tracing::warn!(
                        sources = listed_again.len(),
                        "the walk shown complete had missed sources that the walk made to confirm deletions listed: they stay live"
                    );
                }
                seen.extend(listed_again);
                missing = gone;
                // A confirming walk that could not be shown complete confirms nothing: what
                // it did not list may sit where it failed.
                if let Some(why) = w.incomplete {
                    if !missing.is_empty() {
                        let text = format!(
                            "{} sources the listing no longer held were not marked deleted: the walk made to confirm it could not be shown complete ({why})",
                            missing.len()
                        );
                        tracing::warn!(missing = missing.len(), "{text}");
                        applier.record_misses(&missing).await?;
                        status = RunStatus::Partial;
                        notes.push(text);
                        missing.clear();
                    }
                }
            }
            let limit = settings.sync.max_delete_fraction * live as f64;
            if !missing.is_empty() && missing.len() as f64 > limit && !options.allow_mass_delete {
                let text = format!(
                    "the listing no longer holds {} of {live} live sources, more than sync.max_delete_fraction ({}) allows: \
                     nothing was marked deleted; if the sources really are gone, run `closebot-sync sync --allow-mass-delete` once",
                    missing.len(),
                    settings.sync.max_delete_fraction
                );
                tracing::warn!(missing = missing.len(), live, "{text}");
                applier.record_misses(&missing).await?;
                status = RunStatus::Partial;
                notes.push(text);
            } else {
                applier.delete(&missing).await?;
            }
        }
    }
    applier.settle_rejects(complete.as_ref()).await?;
    counts.rejected = applier.rejected().len() as u64;
    if counts.rejected > 0 {
        status = RunStatus::Partial;
    }
    notes.extend(quality_notes(applier));
    if let Some(days) = settings.history_retain_days {
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
        applier.prune(cutoff).await?;
    }
    if cancel.is_cancelled() {
        return Err(SyncError::Cancelled);
    }
    // `missing` sent the pending writes already; this states the rule for the commit.
    applier.flush().await?;
    applier.gather_statistics().await?;
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok((status, note))
}
