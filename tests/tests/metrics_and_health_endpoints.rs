//! A worker serving `--metrics-addr` counts what happens to tasks in
//! Prometheus format, says it is alive on `/healthz`, and says on
//! `/readyz` whether it is connected and consuming: not ready as soon as
//! its broker connection is gone, and ready again once it reconnected.
//!
//! Run with `cargo test -p celeriac-tests --test metrics_and_health_endpoints`.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use celeriac_demo::{Add, AddArgs, Fail, FailArgs, Sleep, SleepArgs};
use celeriac_shared::{CallError, SendOptions, Task};
use celeriac_tests::{
    GUARD, TestWorker, broker_url, close_connections_named, delete_queues, http_get, producer_for,
    unique,
};
use celeriac_worker::{Backoff, Registry, TaskContext, TaskError, WorkerConfig};
use tokio::sync::{mpsc, oneshot};

fn worker_config(queue: &str) -> WorkerConfig {
    WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.to_owned()],
        concurrency: 4,
        ..WorkerConfig::default()
    }
}

/// The value of the sample `name{labels}` in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_success_and_a_failure_by_task_and_queue() {
    let queue = unique("metrics");
    let (worker, base) =
        TestWorker::start_serving_metrics(worker_config(&queue), celeriac_demo::registry())
            .await
            .unwrap();
    let producer = producer_for(&queue).await.unwrap();

    assert_eq!(
        producer
            .call::<Add>(&AddArgs { x: 2, y: 3 }, GUARD)
            .await
            .unwrap(),
        5
    );
    let failed = producer
        .call::<Fail>(
            &FailArgs {
                message: "on purpose".into(),
            },
            GUARD,
        )
        .await;
    assert!(
        matches!(failed, Err(CallError::Failed { .. })),
        "{failed:?}"
    );

    // The caller has its result a moment before the worker acks and
    // finishes the delivery: wait until nothing is in flight.
    let deadline = tokio::time::Instant::now() + GUARD;
    let page = loop {
        let (status, page) = http_get(&format!("{base}/metrics")).await.unwrap();
        assert_eq!(status, 200, "{page}");
        if sample(&page, "celeriac_tasks_in_flight") == Some(0.0) {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in flight:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let series =
        |name: &str, task: &str| format!(r#"celeriac_{name}{{task="{task}",queue="{queue}"}}"#);
    let expected = [
        (series("tasks_received_total", Add::NAME), 1.0),
        (series("tasks_succeeded_total", Add::NAME), 1.0),
        (series("task_duration_seconds_count", Add::NAME), 1.0),
        (series("tasks_received_total", Fail::NAME), 1.0),
        (series("tasks_failed_total", Fail::NAME), 1.0),
        (series("tasks_dead_lettered_total", Fail::NAME), 1.0),
        ("celeriac_tasks_in_flight".to_owned(), 0.0),
        ("celeriac_broker_connected".to_owned(), 1.0),
        ("celeriac_worker_ready".to_owned(), 1.0),
    ];
    for (series, value) in expected {
        assert_eq!(sample(&page, &series), Some(value), "{series} in\n{page}");
    }
    for absent in [
        series("tasks_failed_total", Add::NAME),
        series("tasks_succeeded_total", Fail::NAME),
    ] {
        assert_eq!(sample(&page, &absent), None, "{absent} in\n{page}");
    }

    assert_eq!(http_get(&format!("{base}/healthz")).await.unwrap().0, 200);
    let body = ready(&format!("{base}/readyz")).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], true);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

/// Polls `/readyz` until it answers 200 (the worker marks itself ready
/// just after its consumers are registered, so the broker may show them a
/// moment earlier); returns the body. Fails after [`GUARD`].
async fn ready(readyz: &str) -> String {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (status, body) = http_get(readyz).await.unwrap();
        if status == 200 {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready after {GUARD:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A registry whose `demo.sleep` reports that it started and then waits
/// until the test lets it go.
fn gated_registry(started: mpsc::UnboundedSender<()>, gate: oneshot::Receiver<()>) -> Registry {
    let gate = Arc::new(Mutex::new(Some(gate)));
    let mut registry = Registry::new();
    registry.register::<Sleep, _, _>(move |args: SleepArgs, _ctx: TaskContext| {
        let gate = gate.lock().unwrap().take();
        let _ = started.send(());
        async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            Ok::<_, TaskError>(args.seconds)
        }
    });
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_not_ready_while_the_broker_connection_is_down_and_ready_once_back() {
    let queue = unique("readyz");
    let name = unique("readyz-worker");
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, gate) = oneshot::channel();
    let config = WorkerConfig {
        connection_name: name.clone(),
        grace_period: GUARD,
        // A second before reconnecting, so the down state is there to see.
        reconnect: Backoff::Fixed(Duration::from_secs(1)),
        ..worker_config(&queue)
    };
    let (worker, base) =
        TestWorker::start_serving_metrics(config, gated_registry(started_tx, gate))
            .await
            .unwrap();
    let readyz = format!("{base}/readyz");
    ready(&readyz).await;

    // A task in flight when the connection goes: the worker abandons it.
    let producer = producer_for(&queue).await.unwrap();
    let _ignored = producer
        .send_with::<Sleep>(&SleepArgs { seconds: 0.0 }, SendOptions::ignore_result())
        .await
        .unwrap();
    tokio::time::timeout(GUARD, started.recv())
        .await
        .unwrap()
        .unwrap();

    assert!(
        close_connections_named(&name).unwrap() >= 1,
        "the worker's connection was found"
    );
    let deadline = tokio::time::Instant::now() + GUARD;
    let body = loop {
        let (status, body) = http_get(&readyz).await.unwrap();
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready after {GUARD:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["broker_connected"], false, "{body}");
    assert_eq!(
        http_get(&format!("{base}/healthz")).await.unwrap().0,
        200,
        "still alive"
    );
    let (_, page) = http_get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        sample(&page, "celeriac_broker_connected"),
        Some(0.0),
        "{page}"
    );

    // The worker reconnects by itself and is ready again.
    ready(&readyz).await;
    let (_, page) = http_get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(
        sample(&page, "celeriac_broker_connected"),
        Some(1.0),
        "{page}"
    );
    let _ = release.send(());
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}
