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

/// How long `/healthz` waits for the database before it answers 503.
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    // A probe waits seconds, not the pool's 30 s for a database that does not answer.
    let read = tokio::time::timeout(HEALTH_WAIT, Health::read(&state.store, state.max_age));
    let Ok(read) = read.await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: the database did not answer within {} s\n",
                HEALTH_WAIT.as_secs()
            ),
        );
    };
    match read {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db_url::DatabaseUrl;

    /// A database that does not hand out a connection (every one taken here; down, in
    /// service) gets a 503 within `HEALTH_WAIT`, saying so, not the pool's 30 s wait.
    #[tokio::test]
    async fn healthz_answers_503_when_the_database_does_not_answer_in_time() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::sqlite(&dir.path().join("h.db"));
        let store = Store::connect(&url, 2).await.unwrap();
        store.migrate_locked().await.unwrap();
        let _held = (
            store.acquire().await.unwrap(),
            store.acquire().await.unwrap(),
        );
        let state = AppState {
            handle: metrics_handle().unwrap(),
            store,
            max_age: Duration::from_secs(3600),
        };
        let response = healthz(State(state)).await.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("did not answer within 2 s"), "{body}");
    }
}
