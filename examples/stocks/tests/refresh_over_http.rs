//! The stocks example, driven over HTTP against the real broker: the
//! service (on a free port) and its worker run in this process; a refresh
//! answers 202 at once with the stocks loading, the task's state moves to
//! SUCCESS and the stocks get their prices; the client's `traceparent`
//! is continued through the service, RabbitMQ and the worker. A replica
//! killed with a refresh in flight loses nothing: another replica on the
//! same named reply queue records the result.
//!
//! Run with `cargo test -p celeriac-example-stocks --test refresh_over_http`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use celeriac_example_stocks::{
    App, RefreshArgs, RefreshOptions, RefreshStocks, StockBook, listen_for_results, refresh,
    registry, router,
};
use celeriac_producer::{Producer, ProducerConfig, ResultListener};
use celeriac_shared::{Route, Router};
use celeriac_tests::spans::{SpanRecorder, attribute, is_child_of};
use celeriac_tests::{
    GUARD, TestWorker, broker_url, close_connections_named, delete_queues, unique,
};
use celeriac_worker::{Registry, TaskContext};
use opentelemetry::trace::SpanKind;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The client's trace: the W3C specification's example ids.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// One replica of the service, running in this process.
struct Service {
    /// Its base URL.
    base: String,
    /// Its broker connection's name, to close it as if the process died.
    connection: String,
    /// Records the results that reach this replica.
    results: ResultListener,
    /// The HTTP server.
    server: JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Kills the replica: no graceful stop, its connection closed under it.
    fn kill(self) {
        self.server.abort();
        drop(self.results);
        close_connections_named(&self.connection).unwrap();
    }
}

/// Starts a replica of the service for `symbols`, sending refreshes to
/// `queue` and receiving results on the named reply queue `replies`.
async fn start_service(queue: &str, replies: &str, symbols: &[&str]) -> Service {
    let connection = unique("stocks-service");
    let config = ProducerConfig {
        broker_url: broker_url(),
        router: Router::new(vec![Route::new("stocks.*", queue)], "celery"),
        connection_name: connection.clone(),
        ..ProducerConfig::default()
    }
    .reply_queue(replies);
    let producer = Producer::connect(config).await.unwrap();
    let options = RefreshOptions {
        latency: Duration::from_millis(20),
    };
    let book = Arc::new(StockBook::new(symbols.iter().copied()));
    let results = listen_for_results(&producer, Arc::clone(&book))
        .await
        .unwrap();
    let app = router(App {
        producer,
        book,
        options,
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Service {
        base,
        connection,
        results,
        server,
    }
}

/// A registry whose refreshes wait until `gate` is open.
fn gated_registry(gate: watch::Receiver<bool>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<RefreshStocks, _, _>(move |args: RefreshArgs, ctx: TaskContext| {
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            refresh(args, ctx).await
        }
    });
    registry
}

/// Posts a refresh of every stock; returns its task id.
async fn post_refresh(base: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/stocks/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let accepted: Value = response.json().await.unwrap();
    accepted["task_id"].as_str().unwrap().to_owned()
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Polls the task until it is known and no longer PENDING (each poll is
/// a real HTTP request; the loop ends at [`GUARD`]).
async fn finished_task(base: &str, task_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (status, task) = get_json(&format!("{base}/tasks/{task_id}")).await;
        assert!(status == 200 || status == 404, "{status}: {task}");
        if status == 200 && task["state"] != "PENDING" {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending after {GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_answers_at_once_and_the_worker_fills_in_the_prices() {
    let recorder = SpanRecorder::install().unwrap();
    let (queue, replies) = (unique("stocks"), unique("stocks-service.replies"));
    let worker = TestWorker::start(&[&queue], registry()).await.unwrap();
    let service = start_service(&queue, &replies, &["ACME", "GLOBEX"]).await;
    let base = service.base.clone();

    let (status, stocks) = get_json(&format!("{base}/stocks")).await;
    assert_eq!(status, 200);
    assert_eq!(stocks[0]["status"], "unknown", "{stocks}");

    let response = reqwest::Client::new()
        .post(format!("{base}/stocks/refresh"))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    let task_id = accepted["task_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/tasks/{task_id}"));
    let loading: Vec<&Value> = accepted["stocks"].as_array().unwrap().iter().collect();
    assert_eq!(loading.len(), 2);
    assert!(
        loading.iter().all(|s| s["status"] == "loading"),
        "{accepted}"
    );

    let task = finished_task(&base, &task_id).await;
    assert_eq!(task["state"], "SUCCESS", "{task}");
    let quotes = task["result"].as_array().unwrap();
    let (_, stocks) = get_json(&format!("{base}/stocks")).await;
    for (stock, quote) in stocks.as_array().unwrap().iter().zip(quotes) {
        assert_eq!(stock["status"], "ready", "{stocks}");
        assert_eq!(stock["symbol"], quote["symbol"]);
        assert_eq!(stock["price"], quote["price"]);
        assert!(stock["price"].as_f64().unwrap() > 0.0);
    }

    // One trace: the client's span > HTTP request > publish > process > fetch price.
    let find = |name: &'static str| {
        recorder.wait_for(name, move |spans| {
            spans
                .iter()
                .find(|s| {
                    s.span_context.trace_id().to_string() == TRACE_ID && s.name.starts_with(name)
                })
                .cloned()
        })
    };
    let http = find("POST /stocks/refresh").await.unwrap();
    let publish = find("publish ").await.unwrap();
    let process = find("process ").await.unwrap();
    let fetch = find("fetch price").await.unwrap();
    assert_eq!(http.span_kind, SpanKind::Server);
    assert_eq!(
        http.parent_span_id.to_string(),
        CLIENT_SPAN,
        "continues the client's span"
    );
    assert_eq!(
        attribute(&http, "http.response.status_code").as_deref(),
        Some("202")
    );
    assert!(
        is_child_of(&publish, &http),
        "the task is published in the request"
    );
    assert_eq!(
        attribute(&publish, "messaging.message.id"),
        Some(task_id.clone())
    );
    assert!(is_child_of(&process, &publish));
    assert!(
        is_child_of(&fetch, &process),
        "the handler's spans nest in process"
    );

    worker.stop().await.unwrap();
    service.results.stop().await;
    delete_queues(&[&queue, &replies]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_in_flight_when_its_replica_dies_lands_on_another_replica() {
    let (queue, replies) = (unique("stocks"), unique("stocks-service.replies"));
    let (open, gate) = watch::channel(false);
    let worker = TestWorker::start(&[&queue], gated_registry(gate))
        .await
        .unwrap();
    let symbols = ["ACME", "GLOBEX"];
    let a = start_service(&queue, &replies, &symbols).await;
    let first = post_refresh(&a.base).await;
    let second = post_refresh(&a.base).await;
    a.kill();

    open.send(true).unwrap();
    let b = start_service(&queue, &replies, &symbols).await;
    for task_id in [&first, &second] {
        let task = finished_task(&b.base, task_id).await;
        assert_eq!(task["state"], "SUCCESS", "{task}");
        assert_eq!(task["result"].as_array().unwrap().len(), 2, "{task}");
    }
    let (_, stocks) = get_json(&format!("{}/stocks", b.base)).await;
    for stock in stocks.as_array().unwrap() {
        assert_eq!(stock["status"], "ready", "{stocks}");
        assert!(stock["price"].as_f64().unwrap() > 0.0, "{stocks}");
    }
    worker.stop().await.unwrap();
    b.results.stop().await;
    delete_queues(&[&queue, &replies]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_symbols_and_tasks_are_refused() {
    let (queue, replies) = (unique("stocks-bad"), unique("stocks-service.replies"));
    let service = start_service(&queue, &replies, &["ACME"]).await;
    let base = service.base.clone();
    let response = reqwest::Client::new()
        .post(format!("{base}/stocks/refresh"))
        .json(&json!({"symbols": ["NOPE"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("NOPE"), "{body}");
    let (status, _) = get_json(&format!("{base}/tasks/no-such-task")).await;
    assert_eq!(status, 404);
    service.results.stop().await;
    delete_queues(&[&replies]).await;
}
