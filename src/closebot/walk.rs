//! The page walk: page 0 gives `total`, the other pages are fetched with bounded
//! concurrency and handed to a sink as they arrive. The walk reports whether it can be
//! shown complete; only a complete walk may lead to deletions.

use std::collections::HashSet;

use futures::stream::{self, StreamExt};

use super::client::{ApiError, Client};
use super::wire::RawSource;

/// Receives each page's sources as it arrives (the run applies them).
#[allow(async_fn_in_trait)]
pub trait PageSink {
    type Error: From<ApiError>;
    async fn accept(&mut self, page: u32, sources: Vec<RawSource>) -> Result<(), Self::Error>;
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

/// Walks the listing once, with up to `concurrency` requests in flight after page 0.
pub async fn walk<S: PageSink>(
    client: &Client,
    concurrency: usize,
    sink: &mut S,
) -> Result<Walk, S::Error> {
    let first = client.fetch_page(0).await?;
    let total = first.total;
    // The server may clamp the page size: trust what it says it used, or else what page 0
    // held when it was short of a listing that has more.
    let asked = u64::from(client.page_size()).max(1);
    let held = (first.results.len() + first.unidentified) as u64;
    let page_size = match first.page_size.filter(|&s| s > 0) {
        Some(reported) => reported.min(asked),
        None if held > 0 && held < asked && total > held => held,
        None => asked,
    };
    let planned = total.div_ceil(page_size).max(1);
    let mut walk = Walk {
        total,
        steady: true,
        ..Walk::default()
    };
    let mut problems: Vec<String> = Vec::new();
    let mut duplicates = 0u64;
    let mut unidentified = 0u64;
    let mut accept = |walk: &mut Walk,
                      page: u32,
                      reported_total: u64,
                      results: &[RawSource],
                      without_id: usize| {
        walk.pages += 1;
        unidentified += without_id as u64;
        if reported_total != total {
            walk.steady = false;
            problems.push(format!(
                "the listing's total changed from {total} to {reported_total} while it was paged (page {page})"
            ));
        }
        let last = u64::from(page) + 1 == planned;
        if !last && ((results.len() + without_id) as u64) < page_size {
            problems.push(format!(
                "page {page} held {} sources where {page_size} were expected",
                results.len()
            ));
        }
        for source in results {
            if !walk.seen.insert(source.id.clone()) {
                duplicates += 1;
            }
        }
    };
    accept(
        &mut walk,
        0,
        first.total,
        &first.results,
        first.unidentified,
    );
    sink.accept(0, first.results).await?;

    let mut rest = stream::iter(1..planned)
        .map(|page| {
            let page = page as u32;
            async move { (page, client.fetch_page(page).await) }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((page, result)) = rest.next().await {
        let fetched = result?;
        accept(
            &mut walk,
            page,
            fetched.total,
            &fetched.results,
            fetched.unidentified,
        );
        sink.accept(page, fetched.results).await?;
    }
    drop(rest);

    if unidentified > 0 {
        problems.push(format!(
            "{unidentified} sources had no sourceId and cannot be mirrored (left out)"
        ));
        tracing::warn!(unidentified, "sources without a sourceId were left out");
    }
    if duplicates > 0 {
        problems.push(format!(
            "{duplicates} sources appeared on more than one page (the listing's order moved)"
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
