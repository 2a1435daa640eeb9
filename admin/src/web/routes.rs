//! The dashboard's routes and their handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use maud::Markup;
use serde_json::json;

use super::dashboard::Inner;
use super::dead_letter_form::{Action, ActionForm, Filter, pairs};
use super::dead_letter_pages::{
    ListPage, confirm_page, deleted_page, detail_page, error_page, list_page, replayed_page,
};
use super::overview::Overview;
use super::overview_page::{overview_fragment, overview_page, workers_fragment, workers_page};
use super::security::{authenticate, secure_headers};
use super::task_list::TaskFilter;
use super::task_pages::{SHOWN, task_page, tasks_fragment, tasks_page, unknown_task_page};
use crate::Error;
use celeriac_shared::ErrorChain;

const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// The least time between two events of a `/tasks/events` stream: a
/// busy broker's task events are coalesced into a few refreshes a second.
const TASK_EVENTS_EVERY: Duration = Duration::from_millis(250);

type Shared = State<Arc<Inner>>;

/// Every route, behind the token check and with the security headers.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let guard = inner.guard.clone();
    Router::new()
        .route("/", get(overview))
        .route("/fragments/overview", get(overview_part))
        .route("/workers", get(workers))
        .route("/fragments/workers", get(workers_part))
        .route("/tasks", get(tasks))
        .route("/tasks/events", get(task_events))
        .route("/tasks/{task_id}", get(task))
        .route("/api/tasks", get(api_tasks))
        .route("/api/overview", get(api_overview))
        .route("/dead-letters", get(dead_letters))
        .route("/api/dead-letters", get(api_dead_letters))
        .route("/dead-letters/confirm", post(confirm))
        .route("/dead-letters/replay", post(replay))
        .route("/dead-letters/delete", post(delete))
        .route("/dead-letters/{queue}/{task_id}", get(detail))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(inner)
        .layer(from_fn_with_state(guard, authenticate))
        .layer(from_fn(secure_headers))
}

impl Inner {
    fn overview(&self) -> Overview {
        let overview = self.sampler.overview.read();
        overview.unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn refresh_ms(&self) -> u128 {
        self.config.refresh.as_millis()
    }

    fn window_s(&self) -> u64 {
        self.config.history.as_secs()
    }

    /// The shown queues (configured, and announced by workers) that have
    /// a dead-letter queue.
    async fn dead_letter_queues(&self) -> Result<Vec<String>, Error> {
        let mut queues = self.config.queues.clone();
        for row in self.overview().queues {
            if !queues.contains(&row.name) {
                queues.push(row.name);
            }
        }
        let mut found = Vec::new();
        for queue in queues {
            if self.dead.count(&queue).await?.is_some() {
                found.push(queue);
            }
        }
        Ok(found)
    }

    /// The queues a filter reads: its queue, or every one with dead
    /// letters.
    async fn queues_for(&self, filter: &Filter) -> Result<(Vec<String>, Vec<String>), Error> {
        let all = self.dead_letter_queues().await?;
        let chosen = match &filter.queue {
            Some(queue) if all.contains(queue) => vec![queue.clone()],
            Some(queue) => {
                return Err(Error::UnknownQueue {
                    queue: celeriac_shared::DeadLetterTopology::queue_name(queue),
                });
            }
            None => all.clone(),
        };
        Ok((chosen, all))
    }
}

async fn overview(State(inner): Shared) -> Html<String> {
    html(overview_page(
        &inner.overview(),
        inner.refresh_ms(),
        inner.window_s(),
    ))
}

async fn overview_part(State(inner): Shared) -> Html<String> {
    html(overview_fragment(&inner.overview(), inner.window_s()))
}

async fn workers(State(inner): Shared) -> Html<String> {
    html(workers_page(&inner.overview(), inner.refresh_ms()))
}

async fn workers_part(State(inner): Shared) -> Html<String> {
    html(workers_fragment(&inner.overview()))
}

async fn api_overview(State(inner): Shared) -> Response {
    axum::Json(inner.overview()).into_response()
}

/// The Tasks page, or with `fragment=1` its live part alone.
async fn tasks(State(inner): Shared, RawQuery(query): RawQuery) -> Html<String> {
    let pairs = pairs(query.unwrap_or_default().as_bytes());
    let filter = TaskFilter::from_pairs(&pairs);
    let (rows, total) = inner.tasks.matching(&filter, SHOWN);
    let fragment = pairs.iter().any(|(k, v)| k == "fragment" && v == "1");
    match fragment {
        true => html(tasks_fragment(&filter, &rows, total)),
        false => html(tasks_page(&filter, &rows, total)),
    }
}

async fn task(State(inner): Shared, Path(task_id): Path<String>) -> Response {
    match inner.tasks.get(&task_id) {
        Some(row) => html(task_page(&row)).into_response(),
        None => (StatusCode::NOT_FOUND, html(unknown_task_page(&task_id))).into_response(),
    }
}

async fn api_tasks(State(inner): Shared, RawQuery(query): RawQuery) -> Response {
    let filter = TaskFilter::from_pairs(&pairs(query.unwrap_or_default().as_bytes()));
    let (rows, total) = inner.tasks.matching(&filter, usize::MAX);
    axum::Json(json!({ "count": total, "tasks": rows })).into_response()
}

/// Server-sent events: a `tasks` event when the stream opens and then
/// whenever tasks changed (at most one per [`TASK_EVENTS_EVERY`]), its
/// data a change counter. Pages fetch the rendered list again on each;
/// no task data travels in the stream. It ends when the dashboard shuts
/// down.
async fn task_events(State(inner): Shared) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let feed = inner.tasks.subscribe();
    let stream = futures::stream::unfold((feed, true), |(mut feed, first)| async move {
        if !first {
            tokio::time::sleep(TASK_EVENTS_EVERY).await;
            feed.changed().await.ok()?;
        }
        let now = *feed.borrow_and_update();
        if now.closed {
            return None;
        }
        let event = Event::default()
            .event("tasks")
            .data(now.version.to_string());
        Some((Ok(event), (feed, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn dead_letters(State(inner): Shared, RawQuery(query): RawQuery) -> Response {
    let filter = Filter::from_pairs(&pairs(query.unwrap_or_default().as_bytes()));
    let listed = async {
        let (queues, all) = inner.queues_for(&filter).await?;
        let entries = inner.dead.list(&queues, &filter.selection()).await?;
        Ok::<_, Error>((entries, all))
    };
    match listed.await {
        Ok((entries, all)) => html(list_page(&ListPage {
            filter: &filter,
            queues: &all,
            entries: &entries,
            page_size: inner.config.page_size.max(1),
            csrf: &inner.guard.csrf,
        }))
        .into_response(),
        Err(err) => failure(&err),
    }
}

async fn api_dead_letters(State(inner): Shared, RawQuery(query): RawQuery) -> Response {
    let filter = Filter::from_pairs(&pairs(query.unwrap_or_default().as_bytes()));
    let listed = async {
        let (queues, _) = inner.queues_for(&filter).await?;
        inner.dead.list(&queues, &filter.selection()).await
    };
    match listed.await {
        Ok(entries) => {
            axum::Json(json!({ "count": entries.len(), "dead_letters": entries })).into_response()
        }
        Err(err) => failure(&err),
    }
}

async fn detail(State(inner): Shared, Path((queue, task_id)): Path<(String, String)>) -> Response {
    let filter = Filter {
        queue: Some(queue),
        ..Filter::default()
    };
    let found = async {
        let (queues, _) = inner.queues_for(&filter).await?;
        inner.dead.find(&queues, &task_id).await
    };
    match found.await {
        Ok(Some(entry)) => html(detail_page(
            &entry,
            inner.config.jaeger_url.as_deref(),
            &inner.guard.csrf,
        ))
        .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            html(error_page(
                "Not found",
                &format!("No dead letter with task id {task_id} (replayed or deleted meanwhile?)"),
            )),
        )
            .into_response(),
        Err(err) => failure(&err),
    }
}

/// Why an action form was refused.
struct Refusal {
    status: StatusCode,
    title: &'static str,
    why: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, html(error_page(self.title, &self.why))).into_response()
    }
}

/// Parses and checks an action form: the CSRF secret and the origin.
fn action_form(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Result<ActionForm, Refusal> {
    let pairs = pairs(body);
    let form = ActionForm::from_pairs(&pairs).map_err(|why| Refusal {
        status: StatusCode::BAD_REQUEST,
        title: "Nothing to do",
        why: why.to_string(),
    })?;
    if let Some(why) = inner.guard.refuses(headers, &form.csrf) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            title: "Refused",
            why: why.to_owned(),
        });
    }
    Ok(form)
}

/// The confirmation step: lists what the action would take.
async fn confirm(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form = match action_form(&inner, &headers, &body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let listed = async {
        let (queues, _) = inner.queues_for(&form.filter).await?;
        inner.dead.list(&queues, &form.selection()).await
    };
    match listed.await {
        Ok(matching) if matching.is_empty() => html(error_page(
            "Nothing to do",
            "No dead letter matches any more: replayed or deleted meanwhile?",
        ))
        .into_response(),
        Ok(matching) => html(confirm_page(&form, &matching, &inner.guard.csrf)).into_response(),
        Err(err) => failure(&err),
    }
}

async fn replay(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    act(&inner, &headers, &body, Action::Replay).await
}

async fn delete(State(inner): Shared, headers: HeaderMap, body: Bytes) -> Response {
    act(&inner, &headers, &body, Action::Delete).await
}

/// Replays or deletes, once confirmed, with the library's guarantees.
async fn act(inner: &Inner, headers: &HeaderMap, body: &[u8], action: Action) -> Response {
    let form = match action_form(inner, headers, body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let confirmed = pairs(body)
        .iter()
        .any(|(k, v)| k == "confirm" && v == "yes");
    if !confirmed || form.action != action {
        let why = "not confirmed: use the confirmation page's button";
        return (
            StatusCode::BAD_REQUEST,
            html(error_page("Not confirmed", why)),
        )
            .into_response();
    }
    let queues = match inner.queues_for(&form.filter).await {
        Ok((queues, _)) => queues,
        Err(err) => return failure(&err),
    };
    let selection = form.selection();
    match action {
        Action::Replay => match inner.dead.replay(&queues, &selection, |_| {}).await {
            Ok(summary) => html(replayed_page(&summary, &form.filter)).into_response(),
            Err(err) => failure(&err),
        },
        Action::Delete => match inner.dead.purge(&queues, &selection).await {
            Ok(summary) => html(deleted_page(&summary, &form.filter)).into_response(),
            Err(err) => failure(&err),
        },
    }
}

async fn script() -> Response {
    let kind = "text/javascript; charset=utf-8";
    ([(header::CONTENT_TYPE, kind)], SCRIPT).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// A rendered page or fragment as a response body.
fn html(markup: Markup) -> Html<String> {
    Html(markup.into_string())
}

/// An error page whose status says whose fault it is.
fn failure(err: &Error) -> Response {
    let (status, title) = match err {
        Error::UnknownQueue { .. } => (StatusCode::NOT_FOUND, "No such queue"),
        Error::QueueBusy { .. } => (StatusCode::CONFLICT, "Queue busy"),
        _ => (StatusCode::BAD_GATEWAY, "Broker error"),
    };
    let text = ErrorChain(err).to_string();
    (status, html(error_page(title, &text))).into_response()
}
