//! One page of the listing: query parameters validated with the live API's rules, then
//! filtering, ordering and paging, plus the faults that change what a page contains
//! (unstable order, a shrunken listing, sources inserted or deleted mid-walk).

use super::faults::Shuffle;
use super::fields::{parse_uuid, uuid_text};
use super::generate::Generator;
use super::{Body, Entry, MidWalk, State};
use rand::Rng;

const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OrderKey {
    Id,
    Name,
    Category,
}

#[derive(Clone, Debug)]
pub(crate) struct PageRequest {
    pub page: u32,
    /// Already clamped to 1..=100.
    pub page_size: u32,
    pub query: Option<String>,
    pub category: Option<String>,
    pub order: OrderKey,
    pub descending: bool,
    pub force_refresh: bool,
}

/// A rejected parameter: its name and a message for the problem body.
pub(crate) type ParamError = (String, String);

/// ASP.NET binds query parameters by case-insensitive name; the first occurrence wins here.
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn int32(query: &[(String, String)], name: &str) -> Result<Option<i32>, ParamError> {
    match param(query, name) {
        None => Ok(None),
        Some(v) => v.parse::<i32>().map(Some).map_err(|_| {
            (
                name.to_owned(),
                format!("The value '{v}' is not valid for {name}."),
            )
        }),
    }
}

pub(crate) fn parse(query: &[(String, String)]) -> Result<PageRequest, Vec<ParamError>> {
    let mut errors = Vec::new();
    let page_size = match int32(query, "pageSize") {
        Ok(None) => DEFAULT_PAGE_SIZE,
        Ok(Some(n)) if n <= 0 => {
            errors.push((
                "pageSize".into(),
                format!("pageSize must be at least 1, got {n}."),
            ));
            DEFAULT_PAGE_SIZE
        }
        Ok(Some(n)) => n.unsigned_abs().min(MAX_PAGE_SIZE),
        Err(e) => {
            errors.push(e);
            DEFAULT_PAGE_SIZE
        }
    };
    let page = match int32(query, "page") {
        Ok(None) => 0,
        Ok(Some(n)) if n < 0 => {
            errors.push((
                "page".into(),
                format!("page must not be negative, got {n}."),
            ));
            0
        }
        Ok(Some(n)) => n.unsigned_abs(),
        Err(e) => {
            errors.push(e);
            0
        }
    };
    let (order, descending) = match param(query, "order").map(str::trim) {
        None => (OrderKey::Id, false),
        Some(raw) => {
            let (desc, key) = match raw.as_bytes().first() {
                Some(b'-') => (true, &raw[1..]),
                Some(b'+') => (false, &raw[1..]),
                _ => (false, raw),
            };
            let key = match key.to_ascii_lowercase().as_str() {
                "id" => Some(OrderKey::Id),
                "name" => Some(OrderKey::Name),
                "category" => Some(OrderKey::Category),
                _ => None,
            };
            key.map(|k| (k, desc)).unwrap_or_else(|| {
                let msg = format!(
                    "Unknown order '{raw}'; use +id, -id, +name, -name, +category or -category."
                );
                errors.push(("order".into(), msg));
                (OrderKey::Id, false)
            })
        }
    };
    let force_refresh = match param(query, "forceTokenRefresh") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => {
            let msg = format!("The value '{v}' is not valid for forceTokenRefresh.");
            errors.push(("forceTokenRefresh".into(), msg));
            false
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PageRequest {
        page,
        page_size,
        query: param(query, "query").map(str::to_lowercase),
        category: param(query, "category").map(str::to_lowercase),
        order,
        descending,
        force_refresh,
    })
}

pub(crate) struct Selected {
    /// Matching sources in the whole (visible) listing.
    pub total: usize,
    pub entries: Vec<Entry>,
}

/// Picks the entries of one page. Runs under the state lock; records are built later.
pub(crate) fn select(st: &mut State, gen: &Generator, req: &PageRequest) -> Selected {
    let visible = st
        .faults
        .shrink_to
        .map_or(st.entries.len(), |n| n.min(st.entries.len()));
    let view = &st.entries[..visible];
    let filtered = req.query.is_some() || req.category.is_some();
    // None means "every visible entry in id order", which avoids any per-request work
    // proportional to the listing on the common path.
    let mut matching: Option<Vec<usize>> = filtered.then(|| {
        (0..visible)
            .filter(|&i| {
                let e = &view[i];
                let name_ok = req.query.as_ref().is_none_or(|q| {
                    e.name(gen)
                        .is_some_and(|n| n.to_lowercase().contains(q.as_str()))
                });
                name_ok
                    && req
                        .category
                        .as_ref()
                        .is_none_or(|c| e.category(gen).is_some_and(|x| x.to_lowercase() == *c))
            })
            .collect()
    });
    if req.order != OrderKey::Id {
        let mut m = matching.take().unwrap_or_else(|| (0..visible).collect());
        m.sort_by_cached_key(|&i| {
            let key = match req.order {
                OrderKey::Name => view[i].name(gen),
                _ => view[i].category(gen),
            };
            (key.map(|k| k.to_lowercase()), i)
        });
        matching = Some(m);
    }
    let total = matching.as_ref().map_or(visible, Vec::len);
    let shuffle = st.faults.unstable_order.then(|| {
        let counter = st.next_fresh();
        Shuffle::new(total as u64, &mut gen.fresh(counter))
    });
    let start = u64::from(req.page) * u64::from(req.page_size);
    let end = (start + u64::from(req.page_size)).min(total as u64);
    let picked: Vec<usize> = (start..end)
        .map(|p| {
            let mut q = shuffle.as_ref().map_or(p, |s| s.at(p)) as usize;
            if req.descending {
                q = total - 1 - q;
            }
            matching.as_ref().map_or(q, |m| m[q])
        })
        .collect();
    if req.force_refresh {
        for &i in &picked {
            st.rotate_token(i, gen);
        }
    }
    let entries = picked.iter().map(|&i| st.entries[i].clone()).collect();
    if st.served.insert(req.page) {
        apply_mid_walk(st, gen, req.page);
    }
    Selected { total, entries }
}

fn apply_mid_walk(st: &mut State, gen: &Generator, page: u32) {
    let events: Vec<MidWalk> = st
        .faults
        .mid_walk
        .iter()
        .filter(|m| match m {
            MidWalk::InsertFirst { after_page }
            | MidWalk::DeleteFirst { after_page }
            | MidWalk::InsertLast { after_page } => *after_page == page,
        })
        .cloned()
        .collect();
    for event in events {
        match event {
            MidWalk::InsertFirst { .. } => insert_new(st, gen, true),
            MidWalk::InsertLast { .. } => insert_new(st, gen, false),
            MidWalk::DeleteFirst { .. } => {
                if !st.entries.is_empty() {
                    st.entries.remove(0);
                }
            }
        }
    }
}

/// A brand-new source whose id sorts before (`first`) or after every current one.
fn insert_new(st: &mut State, gen: &Generator, first: bool) {
    let slot = st.next_slot;
    st.next_slot += 1;
    let counter = st.next_fresh();
    let end = if first {
        st.entries.first()
    } else {
        st.entries.last()
    };
    let id = match (end.map(|e| parse_uuid(&e.id)), first) {
        (None, _) => gen.source_id(slot),
        (Some(Some(v)), true) if v > 0 => uuid_text(gen.fresh(counter).gen_range(0..v)),
        (Some(Some(v)), false) if v < u128::MAX => {
            uuid_text(gen.fresh(counter).gen_range(v + 1..=u128::MAX))
        }
        // The id at that end is not a GUID (only after `edit`): the zero GUID sorts before
        // every GUID, and "z"s after every GUID and hex digit.
        (Some(_), true) => uuid_text(0),
        (Some(_), false) => "z".repeat(36),
    };
    let entry = Entry {
        id: id.into(),
        body: Body::Generated { slot, token_rev: 0 },
    };
    if first {
        st.entries.insert(0, entry);
    } else {
        st.entries.push(entry);
    }
}
