//! The worker's HTTP endpoints for containers and Prometheus: `/metrics`,
//! `/healthz` and `/readyz`, served while [`Worker::run`] runs.
//!
//! [`Worker::run`]: crate::Worker::run

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::Error;
use crate::health::Health;
use crate::metrics::Metrics;

/// The content type of the OpenMetrics text format, which Prometheus reads.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints read.
#[derive(Clone)]
struct Endpoints {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The running server; stops when dropped (when `run` returns).
pub(crate) struct MetricsServer {
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port); returns the listener and
    /// the address bound.
    pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
        let failed = |source| Error::MetricsListen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(failed)?;
        let bound = listener.local_addr().map_err(failed)?;
        Ok((listener, bound))
    }

    /// Starts serving, when an address is configured, on `listener` (bound
    /// early by [`Worker::bind_metrics`]) or on `addr`; returns the metrics
    /// to count into and the server, or nothing when metrics are off.
    ///
    /// [`Worker::bind_metrics`]: crate::Worker::bind_metrics
    pub(crate) async fn serve(
        listener: Option<TcpListener>,
        addr: Option<SocketAddr>,
        health: &Arc<Health>,
    ) -> Result<(Option<Arc<Metrics>>, Option<Self>), Error> {
        let listener = match (listener, addr) {
            (Some(listener), _) => listener,
            (None, Some(addr)) => Self::bind(addr).await?.0,
            (None, None) => return Ok((None, None)),
        };
        let metrics = Arc::new(Metrics::new());
        let server = Self::start(listener, Arc::clone(&metrics), Arc::clone(health));
        Ok((Some(metrics), Some(server)))
    }

    /// Serves the endpoints on `listener` until dropped.
    fn start(listener: TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        match listener.local_addr() {
            Ok(addr) => info!(%addr, "serving /metrics, /healthz and /readyz"),
            Err(err) => warn!(error = %err, "serving metrics on an unknown address"),
        }
        let app = router(Endpoints { metrics, health });
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                warn!(error = %err, "the metrics server stopped");
            }
        });
        Self { task }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoints)
}

/// Every metric, in the OpenMetrics text format.
async fn metrics(State(endpoints): State<Endpoints>) -> Response {
    let text = endpoints.metrics.encode(endpoints.health.readiness());
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// The process is alive and answering: always 200.
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 when connected to the broker and consuming every queue, else 503;
/// the body says which.
async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    let readiness = endpoints.health.readiness();
    let status = match readiness.is_ready() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({
        "ready": readiness.is_ready(),
        "broker_connected": readiness.connected,
        "consuming": readiness.consuming,
    });
    (status, axum::Json(body)).into_response()
}
