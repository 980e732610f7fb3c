//! The page walk: page 0 gives `total`, the other pages are fetched with bounded
//! concurrency and handed to a sink as they arrive. The walk reports whether it can be
//! shown complete; only a complete walk may lead to deletions.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};
use tokio_util::task::AbortOnDropHandle;

use super::client::{ApiError, Client};
use super::wire::{PageError, RawSource, MAX_PAGES};

/// Receives each page's sources as it arrives (the run applies them).
///
/// A page is fetched, parsed and handed to the sink's `preparer` in a task of its own, on
/// whichever of the runtime's threads is free, so that the CPU work of turning JSON into
/// rows runs beside the apply of the pages before it; `accept` then takes the pages one at
/// a time, in the order they finished.
#[allow(async_fn_in_trait)]
pub trait PageSink {
    type Error: From<ApiError> + Send + 'static;
    /// A page as `accept` takes it.
    type Page: Send + 'static;
    /// Turns a page's sources into what `accept` takes; runs in the page's task.
    fn preparer(
        &self,
    ) -> impl Fn(u32, Vec<RawSource>) -> Result<Self::Page, Self::Error> + Clone + Send + Sync + 'static;
    async fn accept(&mut self, page: u32, prepared: Self::Page) -> Result<(), Self::Error>;
}

/// What the walk keeps of a page once its sources went to the sink.
struct Fetched<P> {
    page: u32,
    total: u64,
    /// The page size the server reported, if it did.
    page_size: Option<u64>,
    /// The page number the server said it answered with, if it did.
    echoed_page: Option<i64>,
    ids: Vec<String>,
    unidentified: usize,
    prepared: P,
}

/// How the server numbers the page it echoes in each answer: the API documents `page` as
/// 0-based in the request but says nothing of the echo, so page 0's answer tells (0 or 1,
/// or no echo at all), and every later page must agree. A page that comes back as another
/// page's fails the walk: the server is not paging as asked.
#[derive(Clone, Copy)]
struct EchoedPage {
    /// The echo of page 0, when there was one.
    base: Option<i64>,
}

impl EchoedPage {
    fn learn<P>(first: &Fetched<P>) -> Result<EchoedPage, ApiError> {
        match first.echoed_page {
            None | Some(0 | 1) => Ok(EchoedPage {
                base: first.echoed_page,
            }),
            Some(got) => Err(wrong_page(0, got)),
        }
    }

    fn check<P>(self, f: &Fetched<P>) -> Result<(), ApiError> {
        match (self.base, f.echoed_page) {
            // Both within int32 (the page checks it), so neither sum nor difference overflows.
            (Some(base), Some(got)) if got != i64::from(f.page) + base => {
                Err(wrong_page(f.page, got - base))
            }
            _ => Ok(()),
        }
    }
}

/// `got` counted from 0, as `page` is asked for.
fn wrong_page(page: u32, got: i64) -> ApiError {
    ApiError::BadPage {
        page,
        problem: PageError::WrongPage { asked: page, got },
    }
}

/// Fetches and prepares one page in a task of its own; dropping the handle aborts it (a
/// failed walk leaves nothing running).
fn spawn_page<S: PageSink>(
    client: &Client,
    prepare: &(impl Fn(u32, Vec<RawSource>) -> Result<S::Page, S::Error>
          + Clone
          + Send
          + Sync
          + 'static),
    page: u32,
) -> AbortOnDropHandle<Result<Fetched<S::Page>, S::Error>> {
    let (client, prepare) = (client.clone(), prepare.clone());
    // In the run's span, so that every line of the page's work (a retry, a quarantine)
    // carries the run's id.
    let span = tracing::Span::current();
    let task = async move {
        let fetched = client.fetch_page(page).await?;
        let ids = fetched.results.iter().map(|s| s.id.clone()).collect();
        // Turning a page into rows is CPU work: off the runtime's threads, so that a huge
        // page cannot hold up its timers (SIGTERM, the watchdog, the schedule).
        let results = fetched.results;
        let in_span = tracing::Span::current();
        let prepared = joined(
            tokio::task::spawn_blocking(move || in_span.in_scope(|| prepare(page, results))).await,
        )?;
        Ok(Fetched {
            page,
            total: fetched.total,
            page_size: fetched.page_size,
            echoed_page: fetched.echoed_page,
            ids,
            unidentified: fetched.unidentified,
            prepared,
        })
    };
    AbortOnDropHandle::new(tokio::spawn(tracing::Instrument::instrument(task, span)))
}

/// A task's outcome; a panic in it is the caller's panic.
pub(crate) fn joined<T>(r: Result<T, tokio::task::JoinError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a task was cancelled while it was awaited: {e}"),
    }
}

/// What one pass over the listing saw.
#[derive(Debug, Default)]
pub struct Walk {
    pub pages: u32,
    /// `total` as page 0 reported it.
    pub total: u64,
    /// Every page reported the same `total`.
    pub steady: bool,
    /// Distinct sourceIds this walk saw.
    pub seen: HashSet<String>,
    /// Why the walk cannot be shown complete; `None` for a complete walk.
    pub incomplete: Option<String>,
}

/// Walks the listing once. After page 0, the client keeps up to `api.concurrency`
/// requests in flight; twice as many pages may be under way, the others being parsed and
/// prepared or waiting for the sink, so that no request waits for the CPU work on a page.
pub async fn walk<S: PageSink>(client: &Client, sink: &mut S) -> Result<Walk, S::Error> {
    let prepare = sink.preparer();
    let mut first = joined(spawn_page::<S>(client, &prepare, 0).await)?;
    let echo = EchoedPage::learn(&first)?;
    let total = first.total;
    // The server may clamp the page size: trust what it says it used, or else what page 0
    // held when it was short of a listing that has more.
    let asked = u64::from(client.page_size()).max(1);
    let held = (first.ids.len() + first.unidentified) as u64;
    let page_size = match first.page_size.filter(|&s| s > 0) {
        Some(reported) => reported.min(asked),
        None if held > 0 && held < asked && total > held => held,
        None => asked,
    };
    let planned = total.div_ceil(page_size).max(1);
    if planned > MAX_PAGES {
        return Err(ApiError::BadPage {
            page: 0,
            problem: PageError::TooManyPages {
                total,
                page_size,
                pages: planned,
            },
        }
        .into());
    }
    let mut walk = Walk {
        total,
        steady: true,
        ..Walk::default()
    };
    let mut problems: Vec<String> = Vec::new();
    let mut duplicates = 0u64;
    let mut unidentified = 0u64;
    // Returns false for an empty page where `total` promised sources: the server has
    // nothing more to give this walk, and asking for further pages only hammers it.
    let mut account = |walk: &mut Walk, f: &mut Fetched<S::Page>| -> bool {
        let (page, without_id) = (f.page, f.unidentified);
        walk.pages += 1;
        unidentified += without_id as u64;
        if f.total != total {
            walk.steady = false;
            problems.push(format!(
                "the listing's total changed from {total} to {} while it was paged (page {page})",
                f.total
            ));
        }
        let empty = f.ids.is_empty() && without_id == 0;
        if empty && u64::from(page) * page_size < total {
            problems.push(format!(
                "page {page} was empty although the listing reported {total} sources: \
                 the walk stopped there"
            ));
            return false;
        }
        let last = u64::from(page) + 1 == planned;
        if !last && ((f.ids.len() + without_id) as u64) < page_size {
            problems.push(format!(
                "page {page} held {} sources where {page_size} were expected",
                f.ids.len()
            ));
        }
        for id in std::mem::take(&mut f.ids) {
            if !walk.seen.insert(id) {
                duplicates += 1;
            }
        }
        true
    };
    let go_on = account(&mut walk, &mut first);
    sink.accept(0, first.prepared).await?;

    if go_on {
        let mut rest = stream::iter(1..planned)
            .map(|page| spawn_page::<S>(client, &prepare, page as u32))
            .buffer_unordered(2 * client.concurrency());
        while let Some(result) = rest.next().await {
            let mut fetched = joined(result)?;
            echo.check(&fetched)?;
            if !account(&mut walk, &mut fetched) {
                // Dropping the stream aborts the pages still in flight.
                break;
            }
            sink.accept(fetched.page, fetched.prepared).await?;
        }
    }

    if unidentified > 0 {
        problems.push(format!(
            "{unidentified} sources had no sourceId and cannot be mirrored (left out)"
        ));
        tracing::warn!(unidentified, "sources without a sourceId were left out");
    }
    if duplicates > 0 {
        problems.push(format!(
            "{duplicates} sources appeared more than once (the listing's order moved, or it holds duplicates)"
        ));
    }
    if walk.seen.len() as u64 != total {
        problems.push(format!(
            "saw {} distinct sources where the listing reported {total}",
            walk.seen.len()
        ));
    }
    problems.dedup();
    if !problems.is_empty() {
        walk.incomplete = Some(problems.join("; "));
    }
    Ok(walk)
}
