//! The optional HTTP listener of `run` (`metrics.listen`): `/metrics` in the Prometheus text
//! format and `/healthz` (200 or 503, with the reason in the body).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} (metrics.listen): {source}; pick a free port or unset metrics.listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
}

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Run durations reach from seconds (a small agency) to many minutes.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> Result<PrometheusHandle, ServeError> {
    // Held while installing: a second caller waits and gets the same handle.
    let mut slot = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                "closebot_sync_run_duration_seconds".to_string(),
            ),
            &DURATION_BUCKETS,
        )
        .map_err(|e| ServeError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| ServeError::Recorder(e.to_string()))?;
    describe();
    *slot = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "closebot_sync_runs_total",
        "Runs by how they ended (status)."
    );
    describe_histogram!(
        "closebot_sync_run_duration_seconds",
        Unit::Seconds,
        "How long runs took."
    );
    describe_gauge!(
        "closebot_sync_last_run_sources",
        "Sources of the last run by what happened to them (state; `rejected`: quarantined, see source_rejects)."
    );
    describe_gauge!(
        "closebot_sync_last_success_timestamp_seconds",
        Unit::Seconds,
        "When the last successful run finished (Unix time), read from sync_runs at start."
    );
    describe_counter!(
        "closebot_sync_http_requests_total",
        "Requests made to the CloseBot API."
    );
    describe_counter!(
        "closebot_sync_http_retries_total",
        "Requests to the CloseBot API that were retried."
    );
    describe_counter!(
        "closebot_sync_skipped_ticks_total",
        "Ticks of the schedule that started no run: overlap (the last run was still going) or busy (another instance was syncing)."
    );
    describe_counter!(
        "closebot_sync_scheduler_rebuilds_total",
        "Times the scheduler delivered no tick for well over its interval and was rebuilt."
    );
}

#[derive(Clone)]
struct AppState {
    handle: PrometheusHandle,
    store: Store,
    max_age: Duration,
}

/// The listener's routes.
pub fn router(handle: PrometheusHandle, store: Store, max_age: Duration) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            handle,
            store,
            max_age,
        })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.handle.render(),
    )
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match Health::read(&state.store, state.max_age).await {
        Ok(h) if h.is_healthy() => (StatusCode::OK, h.describe() + "\n"),
        Ok(h) => (StatusCode::SERVICE_UNAVAILABLE, h.describe() + "\n"),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: cannot read sync_runs: {}\n",
                crate::sync::chain(&e)
            ),
        ),
    }
}

/// Binds `addr` and serves until `stop` is cancelled; returns the bound address and the task.
pub async fn start(
    addr: SocketAddr,
    router: Router,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(%bound, "serving /metrics and /healthz");
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok((bound, task))
}
