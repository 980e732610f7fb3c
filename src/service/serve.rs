//! The optional HTTP listener of `run` (`metrics.listen`): `/metrics` in the Prometheus text
//! format and `/healthz` (200 or 503, with the reason in the body).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use super::health::Health;
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

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> Result<PrometheusHandle, ServeError> {
    super::metrics::install().map_err(ServeError::Recorder)
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
                crate::text::chain(&e)
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
