//! The web service: start a report's build unless one is under way.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use celeriac_producer::Producer;
use celeriac_shared::{SendOptions, Uniqueness};
use serde_json::json;
use tracing::{info, warn};

use crate::{BuildReport, ReportArgs};

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct App {
    /// Sends the builds.
    pub producer: Producer,
    /// How long a build takes (passed to the task).
    pub build_time: Duration,
    /// How long a report's key is held at most, should its worker die:
    /// between 1 s and 24 h.
    pub unique_ttl: Duration,
}

/// The routes: `POST /reports/{id}` and `GET /healthz`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/reports/{id}", post(start))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

/// Starts the report's build, unless one holds its key: `202` with
/// `"started": true` and the new task's id, or `200` with `"started":
/// false` and the id of the build under way. `400` for an id that cannot
/// be a key, `503` when the broker cannot be reached.
async fn start(State(app): State<App>, Path(report_id): Path<String>) -> Response {
    let unique = match Uniqueness::new(format!("report:{report_id}"))
        .and_then(|unique| unique.with_ttl(app.unique_ttl))
    {
        Ok(unique) => unique,
        Err(err) => {
            let body = Json(json!({ "error": err.to_string() }));
            return (StatusCode::BAD_REQUEST, body).into_response();
        }
    };
    let args = ReportArgs {
        report_id: report_id.clone(),
        build_ms: u64::try_from(app.build_time.as_millis()).unwrap_or(u64::MAX),
    };
    let options = SendOptions {
        ignore_result: true,
        ..SendOptions::unique(unique)
    };
    let handle = match app.producer.send_with::<BuildReport>(&args, options).await {
        Ok(handle) => handle,
        Err(err) => {
            warn!(error = %err, report_id, "could not start the build");
            let body = Json(json!({ "error": format!("could not start the build: {err}") }));
            return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
        }
    };
    let started = !handle.is_duplicate();
    let task_id = handle.id();
    info!(report_id, task_id, started, "report requested");
    let status = match started {
        true => StatusCode::ACCEPTED,
        false => StatusCode::OK,
    };
    let body = json!({ "report_id": report_id, "task_id": task_id, "started": started });
    (status, Json(body)).into_response()
}
