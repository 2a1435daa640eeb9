//! The web service: refresh stocks through a worker, show tasks and
//! stocks.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use celeriac_producer::Producer;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::{RefreshArgs, RefreshStocks, StockBook, http_span};

/// How refreshes are sent.
#[derive(Debug, Clone, Copy)]
pub struct RefreshOptions {
    /// The simulated price API's latency per symbol, passed to the task.
    pub latency: Duration,
}

impl Default for RefreshOptions {
    /// 500 ms per symbol.
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(500),
        }
    }
}

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct App {
    /// Sends the refresh tasks, their results to the named reply queue
    /// that [`listen_for_results`](crate::listen_for_results) consumes.
    pub producer: Producer,
    /// The stocks and tasks.
    pub book: Arc<StockBook>,
    /// How refreshes are sent.
    pub options: RefreshOptions,
}

/// The routes: `POST /stocks/refresh`, `GET /stocks`, `GET /tasks/{id}`,
/// `GET /healthz`, each request in a traced span.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/stocks", get(stocks))
        .route("/stocks/refresh", post(refresh))
        .route("/tasks/{id}", get(task))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(http_span::layer())
        .with_state(app)
}

/// The body of `POST /stocks/refresh`; no body refreshes every stock.
#[derive(Debug, Default, Deserialize)]
struct RefreshRequest {
    symbols: Option<Vec<String>>,
}

async fn stocks(State(app): State<App>) -> Response {
    Json(app.book.stocks()).into_response()
}

async fn task(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.book.task(&id) {
        Some(record) => Json(record).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such task"})),
        )
            .into_response(),
    }
}

/// Marks the stocks loading, sends the task and answers 202 with its id;
/// the result is recorded by the handler on the named reply queue, in
/// whichever replica receives it.
async fn refresh(State(app): State<App>, body: Option<Json<RefreshRequest>>) -> Response {
    let wanted = body.and_then(|Json(request)| request.symbols);
    let symbols = wanted.unwrap_or_else(|| app.book.symbols());
    let unknown = app.book.unknown(&symbols);
    if !unknown.is_empty() {
        let error = format!("unknown symbols: {}", unknown.join(", "));
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let args = RefreshArgs {
        symbols: symbols.clone(),
        latency_ms: u64::try_from(app.options.latency.as_millis()).unwrap_or(u64::MAX),
    };
    let handle = match app.producer.send::<RefreshStocks>(&args).await {
        Ok(handle) => handle,
        Err(err) => {
            warn!(error = %err, "could not send the refresh");
            let error = format!("could not send the refresh: {err}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": error })),
            )
                .into_response();
        }
    };
    let task_id = handle.id().to_owned();
    let stocks = app.book.loading(&task_id, &symbols);
    info!(task_id = %task_id, task = "stocks.refresh", symbols = symbols.len(), "refresh sent");
    // The handle is not awaited: the result goes to the service's named
    // reply queue, and the replica that receives it records it.
    drop(handle);
    let location = format!("/tasks/{task_id}");
    let body = json!({ "task_id": task_id, "status_url": location, "stocks": stocks });
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}
