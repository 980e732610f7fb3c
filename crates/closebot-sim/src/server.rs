//! The HTTP side: auth, routing, RFC 7807 problems and the page response. It runs its own
//! hyper accept loop rather than `axum::serve` because one fault must drop a connection
//! without any response, which only a failing hyper service can do.

use super::faults;
use super::page::{self, PageRequest, ParamError};
use super::{FaultAction, Rendered, RequestRecord, Simulator, State};
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const JSON: &str = "application/json; charset=utf-8";
const PROBLEM: &str = "application/problem+json; charset=utf-8";

/// A running simulator server; it stops on `shutdown` or when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    token: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// "http://127.0.0.1:PORT"
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The service error that makes hyper close the connection without writing a response.
#[derive(Debug, thiserror::Error)]
#[error("fault injection: connection closed without a response")]
struct DroppedConnection;

pub(crate) async fn start(sim: Simulator, addr: SocketAddr) -> std::io::Result<SimServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let token = CancellationToken::new();
    let task = tokio::spawn(accept_loop(listener, sim, token.clone()));
    Ok(SimServer {
        addr,
        token,
        task: Some(task),
    })
}

async fn accept_loop(listener: TcpListener, sim: Simulator, token: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (sim, token) = (sim.clone(), token.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(sim.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = token.cancelled() => {}
            }
        });
    }
}

enum Plan {
    Reply(Response<Body>),
    Close,
    Serve {
        delay: Option<Duration>,
        shape: Option<FaultAction>,
        request: PageRequest,
    },
}

async fn handle(
    sim: Simulator,
    req: Request<Incoming>,
) -> Result<Response<Body>, DroppedConnection> {
    let path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or("").as_bytes();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(raw_query)
        .into_owned()
        .collect();
    let latency = sim.lock().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let plan = {
        let mut st = sim.lock();
        let trace = st.next_fresh();
        let authorized = is_authorized(req.headers(), &st.api_key);
        let header_names = req
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        let (plan, status) = route(&mut st, req.method(), &path, &query, authorized, trace);
        st.requests.push(RequestRecord {
            path,
            query,
            authorized,
            header_names,
            status,
        });
        plan
    };
    match plan {
        Plan::Reply(response) => Ok(response),
        Plan::Close => Err(DroppedConnection),
        Plan::Serve {
            delay,
            shape,
            request,
        } => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok(serve_page(&sim, &request, shape.as_ref()))
        }
    }
}

fn is_authorized(headers: &HeaderMap, key: &str) -> bool {
    let by_header = headers
        .get_all("x-cb-key")
        .iter()
        .any(|v| v.as_bytes() == key.as_bytes());
    let by_auth = headers.get_all(AUTHORIZATION).iter().any(|v| {
        let text = v.to_str().ok().and_then(|s| s.split_once(' '));
        text.is_some_and(|(scheme, k)| scheme.eq_ignore_ascii_case("key") && k.trim() == key)
    });
    !key.is_empty() && (by_header || by_auth)
}

/// Decides the answer under the state lock; returns it with the status to record.
fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    authorized: bool,
    trace: u64,
) -> (Plan, u16) {
    let reply = |status: u16, response: Response<Body>| (Plan::Reply(response), status);
    if !path
        .trim_end_matches('/')
        .eq_ignore_ascii_case("/agency/source")
    {
        let detail = format!("No endpoint at {path}; the sources listing is GET /agency/source.");
        return reply(404, problem(404, &detail, trace));
    }
    if method != Method::GET {
        return reply(
            405,
            problem(405, &format!("{method} is not allowed here."), trace),
        );
    }
    if !authorized {
        let detail = "The API key is missing or not valid. Send it in the X-CB-KEY header.";
        let mut response = problem(401, detail, trace);
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Key"));
        return reply(401, response);
    }
    if st.plan_limited {
        let body = json!({"error": "upgrade required"}).to_string();
        return reply(401, respond(401, JSON, body));
    }
    let request = match page::parse(query) {
        Ok(request) => request,
        Err(errors) => return reply(400, validation_problem(&errors, trace)),
    };
    let attempt = st.attempts.entry(request.page).or_insert(0);
    *attempt += 1;
    let serve = |delay, shape, request| {
        (
            Plan::Serve {
                delay,
                shape,
                request,
            },
            200,
        )
    };
    match faults::rule_for(&st.faults, request.page, *attempt) {
        None => serve(None, None, request),
        Some(FaultAction::Delay(d)) => serve(Some(d), None, request),
        Some(FaultAction::Status {
            code,
            retry_after,
            body,
        }) => {
            let mut response = match body {
                Some(body) => {
                    let json_like = body.trim_start().starts_with(['{', '[']);
                    let ct = if json_like {
                        JSON
                    } else {
                        "text/plain; charset=utf-8"
                    };
                    respond(code, ct, body)
                }
                None => problem(code, "Injected fault.", trace),
            };
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            reply(code, response)
        }
        Some(FaultAction::InvalidJson) => {
            let body = "<html><head><title>502 Bad Gateway</title></head><body><center>\
                        <h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center>\
                        </body></html>";
            reply(
                200,
                respond(200, "text/html; charset=utf-8", body.to_owned()),
            )
        }
        Some(FaultAction::CloseConnection) => (Plan::Close, 0),
        Some(FaultAction::Redirect { code, location }) => {
            let mut response = respond(code, JSON, String::new());
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(LOCATION, value);
            }
            reply(code, response)
        }
        Some(shape) => serve(None, Some(shape), request),
    }
}

fn serve_page(
    sim: &Simulator,
    request: &PageRequest,
    shape: Option<&FaultAction>,
) -> Response<Body> {
    let echo_base = u32::from(sim.lock().faults.echo_page_from_one);
    let selected = match shape {
        Some(FaultAction::IgnorePaging) => {
            let everything = PageRequest {
                page: 0,
                page_size: u32::MAX,
                ..request.clone()
            };
            page::select(&mut sim.lock(), &sim.gen, &everything)
        }
        _ => page::select(&mut sim.lock(), &sim.gen, request),
    };
    // Records are built and serialized outside the lock: that is the expensive part.
    let results: Vec<Rendered<'_>> = selected
        .entries
        .iter()
        .map(|e| e.render(&sim.gen))
        .collect();
    let doc = PageDoc {
        total: selected.total,
        results: &results,
        page: request.page.saturating_add(echo_base),
        page_size: request.page_size,
    };
    let mut body = match shape {
        // Reshaping needs a mutable document; faults are rare, so the slow path is fine.
        Some(shape) if faults::reshapes(shape) => {
            let mut value = serde_json::to_value(&doc).unwrap_or_default();
            if let Value::Object(map) = &mut value {
                faults::reshape(map, shape);
            }
            value.to_string()
        }
        _ => serde_json::to_string(&doc).unwrap_or_default(),
    };
    match shape {
        Some(FaultAction::TruncatedBody) => body = faults::truncate(body),
        Some(FaultAction::ReplaceInBody { from, to }) => body = body.replace(from.as_str(), to),
        _ => {}
    }
    respond(200, JSON, body)
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PageDoc<'a> {
    total: usize,
    results: &'a [Rendered<'a>],
    page: u32,
    page_size: u32,
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// ASP.NET Core's problem shape: type, title, status, detail, traceId.
fn problem_value(status: u16, detail: &str, trace: u64) -> Map<String, Value> {
    let title = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let kind = match status {
        400 => "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        401 => "https://tools.ietf.org/html/rfc9110#section-15.5.2",
        403 => "https://tools.ietf.org/html/rfc9110#section-15.5.4",
        404 => "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        405 => "https://tools.ietf.org/html/rfc9110#section-15.5.6",
        429 => "https://tools.ietf.org/html/rfc6585#section-4",
        500 => "https://tools.ietf.org/html/rfc9110#section-15.6.1",
        502 => "https://tools.ietf.org/html/rfc9110#section-15.6.3",
        503 => "https://tools.ietf.org/html/rfc9110#section-15.6.4",
        504 => "https://tools.ietf.org/html/rfc9110#section-15.6.5",
        _ => "about:blank",
    };
    let trace_id = format!(
        "00-{:032x}-{:016x}-00",
        u128::from(trace) * 0x9E37_79B9,
        trace
    );
    let value = json!({"type": kind, "title": title, "status": status, "detail": detail, "traceId": trace_id});
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! object literal"),
    }
}

fn problem(status: u16, detail: &str, trace: u64) -> Response<Body> {
    respond(
        status,
        PROBLEM,
        Value::Object(problem_value(status, detail, trace)).to_string(),
    )
}

/// A 400 naming each rejected parameter, as ASP.NET's model validation does.
fn validation_problem(errors: &[ParamError], trace: u64) -> Response<Body> {
    let detail: Vec<&str> = errors.iter().map(|(_, msg)| msg.as_str()).collect();
    let mut doc = problem_value(400, &detail.join(" "), trace);
    doc.insert(
        "title".into(),
        "One or more validation errors occurred.".into(),
    );
    let mut by_param = Map::new();
    for (param, msg) in errors {
        by_param.insert(param.clone(), json!([msg]));
    }
    doc.insert("errors".into(), Value::Object(by_param));
    respond(400, PROBLEM, Value::Object(doc).to_string())
}
