//! The HTTP client: one request per page, `X-CB-KEY` auth, retries with backoff, and
//! errors that say whether retrying could help and what the operator should do.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::answer::{
    advice_for, describe_transport, parse_retry_after, read_bounded, show_body, shown_url, without,
};
use super::untrusted::printable;
use super::walk::joined;
use super::wire::{parse_page, Page, PageError};
use crate::config::ApiSettings;

/// The listing's path under the base URL.
pub const SOURCES_PATH: &str = "agency/source";
/// First backoff step; doubled per attempt, with full jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The most of an error body read: enough for any problem document, and the rest of a
/// huge one is never downloaded.
const ERROR_BODY_READ: usize = 64 * 1024;
/// Redirects followed within the configured origin before a request is given up.
pub const MAX_REDIRECTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "the API refused the key (HTTP {status}): {body}. If the body says \"upgrade required\", \
         the agency's CloseBot plan does not include API access: upgrade the plan. Otherwise the \
         key was revoked or mistyped: create a new key in CloseBot and set it in api.key or api.key_file"
    )]
    KeyRefused { status: u16, body: String },
    #[error("the API answered HTTP {status} for page {page}: {body}. {advice}")]
    Rejected {
        status: u16,
        page: u32,
        body: String,
        advice: &'static str,
    },
    #[error("the API kept failing for page {page} after {attempts} attempts: {last}")]
    GaveUp {
        page: u32,
        attempts: u32,
        last: String,
    },
    #[error("page {page} of the listing is malformed: {problem}")]
    BadPage { page: u32, problem: PageError },
    #[error(
        "the API answered HTTP {status} for page {page} with a redirect to {target}, {why}. \
         The API key is only ever sent to the origin of api.base_url ({origin}), so the redirect \
         was not followed. If the API has really moved, set api.base_url to the new https:// \
         address; otherwise a proxy or the API is misconfigured"
    )]
    Redirected {
        status: u16,
        page: u32,
        /// Where it pointed: escaped, without query string, fragment or user info.
        target: String,
        why: &'static str,
        origin: String,
    },
    #[error(
        "the API asked not to be called for another {seconds} s (its Retry-After), longer than \
         api.max_retry_wait: no request was sent for page {page}; a run after that tries again"
    )]
    HeldOff { page: u32, seconds: u64 },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

/// How long to wait before the next try: the server's `Retry-After` when it gave one
/// (`Err` with it when it is longer than `max_wait`: not to be cut short), else an
/// exponential backoff from [`BACKOFF_BASE`] drawn down by `jitter`, at most `max_wait`.
fn retry_delay(
    server: Option<Duration>,
    attempt: u32,
    max_wait: Duration,
    jitter: impl FnOnce(Duration) -> Duration,
) -> Result<Duration, Duration> {
    match server {
        Some(asked) if asked > max_wait => Err(asked),
        Some(asked) => Ok(asked),
        None => {
            let backoff = BACKOFF_BASE.saturating_mul(1 << (attempt.max(1) - 1).min(16));
            Ok(jitter(backoff).min(max_wait))
        }
    }
}

/// Whether two URLs carry the same query parameters, in any order.
fn same_query(a: &url::Url, b: &url::Url) -> bool {
    let pairs = |u: &url::Url| {
        let mut pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        pairs.sort();
        pairs
    };
    pairs(a) == pairs(b)
}

impl ApiError {
    /// The error with the API key taken out of everything the server said in it: every
    /// error the client hands out passes here, so no server-made text carries the key to a
    /// log, `sync_runs.error`, `status` or `/healthz`.
    fn without(self, key: &str) -> ApiError {
        let w = |text: String| without(text, key);
        match self {
            ApiError::KeyRefused { status, body } => ApiError::KeyRefused {
                status,
                body: w(body),
            },
            ApiError::Rejected {
                status,
                page,
                body,
                advice,
            } => ApiError::Rejected {
                status,
                page,
                body: w(body),
                advice,
            },
            ApiError::GaveUp {
                page,
                attempts,
                last,
            } => ApiError::GaveUp {
                page,
                attempts,
                last: w(last),
            },
            ApiError::BadPage { page, problem } => ApiError::BadPage {
                page,
                problem: match problem {
                    PageError::Json { detail, cut_off } => PageError::Json {
                        detail: w(detail),
                        cut_off,
                    },
                    PageError::WrongType { field, found } => PageError::WrongType {
                        field,
                        found: w(found),
                    },
                    PageError::TotalOutOfRange { found } => {
                        PageError::TotalOutOfRange { found: w(found) }
                    }
                    other => other,
                },
            },
            ApiError::Redirected {
                status,
                page,
                target,
                why,
                origin,
            } => ApiError::Redirected {
                status,
                page,
                target: w(target),
                why,
                origin,
            },
            ApiError::Setup(text) => ApiError::Setup(w(text)),
            held @ ApiError::HeldOff { .. } => held,
        }
    }
}

/// Requests and retries made, shared with the run that records them.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: url::Url,
    key: SecretString,
    page_size: u32,
    max_retries: u32,
    max_retry_wait: Duration,
    /// At most `api.concurrency` requests in flight, across every task that shares this
    /// client. A permit covers a request and the reading of its body, not the parsing,
    /// so that the CPU work on one page overlaps the wait for the next.
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    max_page_bytes: u64,
    /// The environment variable naming the proxy requests go through, if one is set.
    proxy_variable: Option<&'static str>,
    pub counters: Arc<Counters>,
    /// Set by a `Retry-After`: no request of any page leaves before it.
    not_before: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

/// The variables reqwest, like curl, takes an https request's proxy from, in its order.
const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// What one attempt came to.
enum Attempt {
    Done(Page),
    /// Worth another try, after at least this long (a server's Retry-After) if given.
    Retry {
        wait: Option<Duration>,
        why: String,
    },
}

impl Client {
    pub fn new(api: &ApiSettings, key: SecretString) -> Result<Client, ApiError> {
        // reqwest strips only the standard credential headers on a cross-host redirect, not
        // X-CB-KEY: a redirect is followed only within the configured origin (scheme, host
        // and port), and a few hops at most; any other comes back as the 3xx it is.
        // The query must stay the request's: a server may move the path, not choose the
        // page, the page size or the order, nor add a parameter such as forceTokenRefresh
        // (which refreshes every source's CRM token).
        let origin = api.base_url.origin();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let asked = attempt.previous().first();
            if attempt.previous().len() <= MAX_REDIRECTS
                && attempt.url().origin() == origin
                && asked.is_none_or(|asked| same_query(asked, attempt.url()))
            {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let mut builder = reqwest::Client::builder();
        let proxy_variable = if crate::config::is_loopback(&api.base_url) {
            // A proxy from the environment (HTTP_PROXY, ALL_PROXY) would carry a loopback
            // request, key and all, in plain text to another machine.
            builder = builder.no_proxy();
            None
        } else {
            PROXY_VARIABLES
                .into_iter()
                .find(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
        };
        if let Some(variable) = proxy_variable {
            // The variable's name only: its value may hold the proxy's password.
            tracing::debug!(
                variable,
                "requests to the API go through the proxy this names"
            );
        }
        let http = builder
            .timeout(api.timeout)
            .connect_timeout(api.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("closebot-sync/", env!("CARGO_PKG_VERSION")))
            .redirect(redirects)
            .build()
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        let mut url = api.base_url.clone();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let url = url
            .join(SOURCES_PATH)
            .map_err(|e| ApiError::Setup(e.to_string()))?;
        Ok(Client {
            http,
            url,
            key,
            page_size: api.page_size,
            max_retries: api.max_retries,
            max_retry_wait: api.max_retry_wait,
            in_flight: Arc::new(Semaphore::new(api.concurrency.max(1))),
            max_in_flight: api.concurrency.max(1),
            max_page_bytes: api.max_page_bytes,
            proxy_variable,
            counters: Arc::default(),
            not_before: Arc::default(),
        })
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// How many requests this client has in flight at most.
    pub fn concurrency(&self) -> usize {
        self.max_in_flight
    }

    /// Fetches one page (0-based), retrying what a retry can help.
    pub async fn fetch_page(&self, page: u32) -> Result<Page, ApiError> {
        self.fetch(page, self.page_size).await
    }

    /// Fetches one page of `page_size` sources (used by `check` with a page of one).
    pub async fn fetch(&self, page: u32, page_size: u32) -> Result<Page, ApiError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let answered = self.attempt(page, page_size).await;
            let (wait, why) = match answered.map_err(|e| e.without(self.key.expose_secret()))? {
                Attempt::Done(p) => return Ok(p),
                Attempt::Retry { wait, why } => (wait, without(why, self.key.expose_secret())),
            };
            if attempt > self.max_retries {
                return Err(ApiError::GaveUp {
                    page,
                    attempts: attempt,
                    last: why,
                });
            }
            let delay = match retry_delay(wait, attempt, self.max_retry_wait, |backoff| {
                rand::thread_rng().gen_range(Duration::ZERO..=backoff)
            }) {
                Ok(delay) => delay,
                // Asked to wait longer than we may: trying earlier than asked would be
                // refused again (and may count against the agency), so the run gives up now.
                Err(asked) => {
                    return Err(ApiError::GaveUp {
                        page,
                        attempts: attempt,
                        last: format!(
                            "{why}; the API asked to wait {} s before trying again, more than \
                             api.max_retry_wait ({} s): no request is sent before that time \
                             (or raise api.max_retry_wait)",
                            asked.as_secs(),
                            self.max_retry_wait.as_secs()
                        ),
                    })
                }
            };
            // A server's Retry-After is already the client's hold-off (set by `attempt`):
            // every page waits for it, not this one alone.
            tracing::warn!(page, attempt, delay_ms = delay.as_millis() as u64, reason = %why, "retrying a page");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    /// When the current hold-off ends, if one is running.
    fn held_until(&self) -> Option<tokio::time::Instant> {
        let until = *self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        until.filter(|&t| t > tokio::time::Instant::now())
    }

    /// Waits out the hold-off, or refuses at once when it is longer than
    /// `api.max_retry_wait` (a Retry-After the run gave up on, which a later run of the
    /// same process must not cut short either).
    async fn wait_out_hold_off(&self, page: u32) -> Result<(), ApiError> {
        while let Some(until) = self.held_until() {
            let left = until - tokio::time::Instant::now();
            if left > self.max_retry_wait {
                return Err(ApiError::HeldOff {
                    page,
                    seconds: left.as_secs().max(1),
                });
            }
            tokio::time::sleep_until(until).await;
        }
        Ok(())
    }

    /// No request leaves before `delay` from now (nor before an earlier hold-off ends).
    fn hold_off(&self, delay: Duration) {
        // A Retry-After of any u64 seconds: past what an Instant can hold, a century.
        let now = tokio::time::Instant::now();
        let until = now
            .checked_add(delay)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        *not_before = Some(not_before.map_or(until, |t| t.max(until)));
    }

    async fn attempt(&self, page: u32, page_size: u32) -> Result<Attempt, ApiError> {
        // The server's Retry-After holds every request, those waiting for a permit too: the
        // hold-off is read before and again after taking one.
        let permit = loop {
            self.wait_out_hold_off(page).await?;
            let permit = self
                .in_flight
                .acquire()
                .await
                .expect("the client never closes its semaphore");
            if self.held_until().is_none() {
                break permit;
            }
        };
        // `forceTokenRefresh` is never sent: it refreshes every returned source's CRM token.
        let request = self
            .http
            .get(self.url.clone())
            .query(&[
                ("page", page.to_string()),
                ("pageSize", page_size.to_string()),
                ("order", "+id".to_string()),
            ])
            .header("X-CB-KEY", self.key.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json");
        // Counted as it leaves: a request held off and refused is none.
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let mut why = describe_transport(&e);
                if let Some(variable) = self.proxy_variable.filter(|_| e.is_connect()) {
                    why.push_str(&format!(
                        "; {variable} is set: unless NO_PROXY names the API's host, this was \
                         the connection to the proxy it names"
                    ));
                }
                return Ok(Attempt::Retry { wait: None, why });
            }
        };
        let status = response.status();
        if status.is_redirection() {
            return Err(self.redirect_refused(page, status, &response));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let busy = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if let Some(wait) = retry_after.filter(|_| busy) {
            // Before this request's permit goes back, so no queued request slips through.
            self.hold_off(wait);
        }
        if status.is_success() {
            if let Some(declared) = response
                .content_length()
                .filter(|&n| n > self.max_page_bytes)
            {
                return Err(ApiError::BadPage {
                    page,
                    problem: PageError::TooLarge {
                        limit: self.max_page_bytes,
                        declared: Some(declared),
                    },
                });
            }
        }
        let limit = if status.is_success() {
            self.max_page_bytes
        } else {
            ERROR_BODY_READ as u64
        };
        let body = match read_bounded(response, limit).await {
            Ok(b) => b,
            Err(e) => {
                return Ok(Attempt::Retry {
                    wait: None,
                    why: format!("the response body was cut off: {}", describe_transport(&e)),
                })
            }
        };
        drop(permit);
        if status.is_success() {
            if !body.complete {
                return Err(ApiError::BadPage {
                    page,
                    problem: PageError::TooLarge {
                        limit: self.max_page_bytes,
                        declared: None,
                    },
                });
            }
            // Parsing a page is CPU work of up to api.max_page_bytes: off the runtime's
            // threads, so that timers (SIGTERM, the watchdog) are served meanwhile.
            let parsed =
                tokio::task::spawn_blocking(move || parse_page(&body.bytes, page_size)).await;
            return joined(parsed)
                .map(Attempt::Done)
                .map_err(|problem| ApiError::BadPage { page, problem });
        }
        let body = body.bytes;
        let shown = show_body(&body, self.key.expose_secret());
        match status {
            StatusCode::UNAUTHORIZED => Err(ApiError::KeyRefused {
                status: status.as_u16(),
                body: shown,
            }),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Ok(Attempt::Retry {
                wait: retry_after,
                why: format!("HTTP {}: {shown}", status.as_u16()),
            }),
            s if s.is_server_error() => Ok(Attempt::Retry {
                wait: None,
                why: format!("HTTP {}: {shown}", status.as_u16()),
            }),
            s => Err(ApiError::Rejected {
                status: s.as_u16(),
                page,
                body: shown,
                advice: advice_for(s),
            }),
        }
    }

    fn redirect_refused(
        &self,
        page: u32,
        status: StatusCode,
        response: &reqwest::Response,
    ) -> ApiError {
        // The key taken out before the target is cut to be shown.
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .map(|l| without(l, self.key.expose_secret()));
        let target = location.as_deref().map(|l| response.url().join(l));
        let (target, why) = match target {
            None => ("nowhere".to_string(), "without a Location header"),
            Some(Ok(url))
                if url.origin() == self.url.origin() && !same_query(response.url(), &url) =>
            {
                (
                    shown_url(url),
                    "which changes the request's query (page, pageSize, order, or a parameter \
                     never sent such as forceTokenRefresh)",
                )
            }
            Some(Ok(url)) if url.origin() == self.url.origin() => (
                shown_url(url),
                "after the most redirects followed within the same origin",
            ),
            Some(Ok(url)) => (shown_url(url), "another origin (scheme, host or port)"),
            Some(Err(_)) => {
                let raw = location.unwrap_or_default();
                let cut = raw.split(['?', '#']).next().unwrap_or_default();
                let cut: String = cut.chars().take(200).collect();
                (
                    format!("\"{}\"", printable(&cut)),
                    "which is not a valid address",
                )
            }
        };
        ApiError::Redirected {
            status: status.as_u16(),
            page,
            target,
            why,
            origin: self.url.origin().ascii_serialization(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_retry_after_wins_over_the_backoff_and_is_never_cut_short() {
        let max = Duration::from_secs(60);
        let full = |backoff: Duration| backoff;
        // The server's wait, whatever the backoff would be.
        assert_eq!(
            retry_delay(Some(Duration::from_secs(7)), 5, max, full),
            Ok(Duration::from_secs(7))
        );
        assert_eq!(
            retry_delay(Some(Duration::ZERO), 1, max, full),
            Ok(Duration::ZERO)
        );
        // Longer than allowed: not waited less, given up on.
        assert_eq!(
            retry_delay(Some(Duration::from_secs(3600)), 1, max, full),
            Err(Duration::from_secs(3600))
        );
        // Without one: doubling from the base, drawn down by the jitter, capped.
        assert_eq!(retry_delay(None, 1, max, full), Ok(BACKOFF_BASE));
        assert_eq!(retry_delay(None, 3, max, full), Ok(BACKOFF_BASE * 4));
        assert_eq!(retry_delay(None, 3, max, |b| b / 2), Ok(BACKOFF_BASE * 2));
        assert_eq!(retry_delay(None, 30, max, full), Ok(max));
    }

    #[test]
    fn a_query_is_the_same_in_any_order_and_not_with_a_parameter_more() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let asked = u("https://a.example/agency/source?page=1&pageSize=100&order=%2Bid");
        assert!(same_query(
            &asked,
            &u("https://a.example/x/?order=%2Bid&page=1&pageSize=100")
        ));
        assert!(!same_query(&asked, &u("https://a.example/agency/source?page=1&pageSize=100&order=%2Bid&forceTokenRefresh=true")));
        assert!(!same_query(
            &asked,
            &u("https://a.example/agency/source?page=0&pageSize=100&order=%2Bid")
        ));
    }

    #[test]
    fn the_key_is_taken_out_of_every_text_the_server_made() {
        let e = ApiError::BadPage {
            page: 0,
            problem: PageError::WrongType {
                field: "total",
                found: "a string (\"k3y-secret\")".into(),
            },
        };
        let shown = e.without("k3y-secret").to_string();
        assert!(
            !shown.contains("k3y-secret") && shown.contains("***"),
            "{shown}"
        );
        let e = ApiError::GaveUp {
            page: 2,
            attempts: 3,
            last: "HTTP 500: echo k3y-secret".into(),
        };
        assert!(!e.without("k3y-secret").to_string().contains("k3y-secret"));
        assert_eq!(without("nothing".into(), ""), "nothing");
        // Percent-encoded, as a Location or a .NET error page may carry it.
        assert_eq!(without("/a%2Bb%2F%3D/x".into(), "a+b/="), "/***/x");
        assert_eq!(without("?k=a%2bb%2f%3d".into(), "a+b/="), "?k=***");
        assert_eq!(without("/a%20b".into(), "a b"), "/***");
    }

    #[test]
    fn a_long_value_the_server_sent_is_shown_whole_or_not_at_all() {
        let key = "k".repeat(64);
        let e = ApiError::BadPage {
            page: 0,
            problem: PageError::WrongType {
                field: "total",
                found: crate::closebot::wire::type_name(&serde_json::json!(key)),
            },
        };
        let shown = e.without(&key).to_string();
        assert!(!shown.contains("kkkkkkkk"), "{shown}");
        assert!(shown.contains("a string of 66 characters"), "{shown}");
    }
}
