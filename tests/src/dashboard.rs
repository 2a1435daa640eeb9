//! Helpers for the dashboard's tests: requests to the app without a
//! server (and event streams, read up to their first event), waiting for
//! the overview or the Tasks page to show something, dead letters with
//! markup in them, tasks parked in a queue nothing consumes.

use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use celeriac_admin::DashboardConfig;
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, DeadLetter, SendOptions, TaskMessage};
use chrono::Utc;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::GUARD;

/// A trace id the dead letters of [`markup_dead_letter`] carry.
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A producer on `url` (a test vhost).
pub async fn producer_on(url: BrokerUrl) -> anyhow::Result<Producer> {
    let config = ProducerConfig {
        broker_url: url,
        ..ProducerConfig::default()
    };
    Ok(Producer::connect(config).await?)
}

/// A dashboard configuration for tests: these queues, a fast refresh and
/// delay scan, the local management API.
pub fn fast_config(queues: &[&str]) -> DashboardConfig {
    DashboardConfig {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        refresh: Duration::from_millis(200),
        delay_scan: Some(Duration::from_millis(500)),
        ..DashboardConfig::default()
    }
}

/// A response's status, headers and body.
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: axum::http::HeaderMap,
    /// The body as text.
    pub body: String,
}

/// Sends `request` to the app, without a server.
pub async fn send(app: &Router, request: Request<Body>) -> anyhow::Result<Reply> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec())?,
    })
}

/// GETs `path`.
pub async fn get(app: &Router, path: &str) -> anyhow::Result<Reply> {
    let request = Request::get(path).header(header::HOST, "127.0.0.1:8080");
    send(app, request.body(Body::empty())?).await
}

/// GETs the event stream at `path` and reads it up to its first event
/// (failing after [`GUARD`]): the status, the headers and that first
/// event's text. The rest of the stream is dropped.
pub async fn first_event(app: &Router, path: &str) -> anyhow::Result<Reply> {
    let request = Request::get(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ACCEPT, "text/event-stream")
        .body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut text = String::new();
    let read = async {
        while !text.contains("\n\n") {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame?.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(GUARD, read)
        .await
        .context("no event within the guard")??;
    Ok(Reply {
        status,
        headers,
        body: text,
    })
}

/// Polls `path` until its body satisfies `ready`, failing after
/// [`GUARD`]; returns that body.
pub async fn wait_for_page(
    app: &Router,
    path: &str,
    ready: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let reply = get(app, path).await?;
        if reply.status == StatusCode::OK && ready(&reply.body) {
            return Ok(reply.body);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{path} did not show what was expected within {GUARD:?}: {}",
                reply.body
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The opening tag of a task's row on the Tasks page, in `state`.
pub fn task_row_tag(task_id: &str, state: &str) -> String {
    format!("<tr data-task-id=\"{task_id}\" data-state=\"{state}\">")
}

/// POSTs the form `body` to `path` as a same-origin browser would.
pub async fn post_form(app: &Router, path: &str, body: &str) -> anyhow::Result<Reply> {
    let request = Request::post(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))?;
    send(app, request).await
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> anyhow::Result<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).context("no CSRF field in the page")? + marker.len();
    let end = html[start..].find('"').context("unterminated CSRF field")?;
    Ok(html[start..start + end].to_owned())
}

/// Polls `/api/overview` until `ready` holds for it, failing after
/// [`GUARD`]; returns the overview that satisfied it.
pub async fn wait_for_overview(
    app: &Router,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let reply = get(app, "/api/overview").await?;
        let overview: Value = serde_json::from_str(&reply.body)?;
        if ready(&overview) {
            return Ok(overview);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the overview did not show {what} within {GUARD:?}: {overview:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The overview's row of `queue`.
pub fn queue_row<'a>(overview: &'a Value, queue: &str) -> Option<&'a Value> {
    overview["queues"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == queue)
}

/// A dead letter of `queue` whose arguments, error message and traceback
/// hold markup, with a `traceparent` header.
pub fn markup_dead_letter(queue: &str) -> (TaskMessage, DeadLetter) {
    let mut kwargs = Map::new();
    kwargs.insert("note".into(), json!("<img src=x onerror=alert(2)>"));
    let mut message = TaskMessage::new(
        "reports.render",
        vec![json!("<script>alert('args')</script>")],
        kwargs,
    );
    message.headers.extra.insert(
        "traceparent".into(),
        Value::from(format!("00-{TRACE_ID}-00f067aa0ba902b7-01")),
    );
    let letter = DeadLetter {
        reason: "rejected".into(),
        error_type: "Reject".into(),
        error_message: "<script>alert('error')</script>".into(),
        traceback: Some("Reject: <b>bold</b> failure\n  caused by: <script>x</script>\n".into()),
        retries: 1,
        failed_at: Utc::now(),
        worker: "celeriac-worker-1@test".into(),
        original_queue: queue.into(),
        original_exchange: queue.into(),
        original_routing_key: queue.into(),
    };
    (message, letter)
}

/// Sends `count` tasks to `queue`, which nothing consumes.
pub async fn park_tasks(
    producer: &Producer,
    queue: &str,
    count: usize,
    countdown: Option<Duration>,
) -> anyhow::Result<()> {
    for _ in 0..count {
        let options = SendOptions {
            queue: Some(queue.to_owned()),
            ignore_result: true,
            countdown,
            ..SendOptions::default()
        };
        let _sent = producer
            .send_raw::<Value>("demo.add", vec![json!(1), json!(2)], Map::new(), options)
            .await?;
    }
    Ok(())
}
