//! Real Celery (5.7, from the `scripts/celery-venv` virtualenv) on the
//! other side of the broker: Celery's client calls the Rust worker, a
//! Celery worker serves the Rust producer, and kombu reads a celeriac
//! message off the queue as it is on the wire.
//!
//! Each test runs in its own throwaway vhost, because the point is Celery's
//! fixed default queue `celery`. The Python helpers live in `tests/python/`
//! and get the vhost's broker URL in `CELERIAC_BROKER_URL`.
//!
//! Run with `cargo test -p celeriac-tests --test python_interop`.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{CallError, DEFAULT_QUEUE, SendOptions};
use celeriac_tests::{
    GUARD, Python, TestWorker, Vhost, channel_on, init_logging, message_count, unique,
};
use celeriac_worker::{Registry, TaskContext, TaskError, WorkerConfig};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

/// Every application header of a Celery protocol v2 task message.
const CELERY_HEADERS: [&str; 19] = [
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
];

/// A worker configuration consuming Celery's default queue of `vhost`.
fn worker_config(vhost: &Vhost) -> WorkerConfig {
    WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        concurrency: 4,
        ..WorkerConfig::default()
    }
}

/// A producer connected to `vhost`.
async fn producer_in(vhost: &Vhost) -> Producer {
    let config = ProducerConfig {
        broker_url: vhost.url(),
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// The number of ready messages in `queue` of `vhost`.
async fn ready_messages(vhost: &Vhost, queue: &str) -> u32 {
    let (connection, channel) = channel_on(&vhost.url()).await.unwrap();
    let count = message_count(&channel, queue).await.unwrap();
    celeriac_tests::close(&connection).await;
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn python_send_task_runs_on_the_rust_worker() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, _ctx: TaskContext| {
        let seen_tx = seen_tx.clone();
        async move {
            let _ = seen_tx.send((args.x, args.y));
            Ok::<_, TaskError>(args.x + args.y)
        }
    });
    // The worker declares `celery` first; kombu then declares it again
    // when publishing, which fails if the two shapes differ.
    let worker = TestWorker::start_with(worker_config(&vhost), registry)
        .await
        .unwrap();

    let transcript = Python::run("send_tasks.py", &vhost.url()).await.unwrap();

    let mut calls = Vec::new();
    for _ in 0..2 {
        let call = tokio::time::timeout(GUARD, seen.recv())
            .await
            .unwrap_or_else(|_| panic!("demo.add did not run within {GUARD:?}\n{transcript}"))
            .unwrap();
        calls.push(call);
    }
    calls.sort_unstable();
    assert_eq!(
        calls,
        [(2, 3), (4, 5)],
        "positional and keyword calls\n{transcript}"
    );
    worker.stop().await.unwrap();
    assert_eq!(
        ready_messages(&vhost, DEFAULT_QUEUE).await,
        0,
        "both acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_rpc_client_gets_results_from_the_rust_worker() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let worker = TestWorker::start_with(worker_config(&vhost), celeriac_demo::registry())
        .await
        .unwrap();

    let transcript = Python::run("rpc_client.py", &vhost.url()).await.unwrap();

    let results = transcript.named_lines();
    assert_eq!(results.get("add"), Some(&"ok 5"), "{transcript}");
    // The exception type is whatever the worker names its error; what
    // matters is that Celery raises it with the task's message.
    let failure = results.get("fail").copied().unwrap_or_default();
    assert!(
        failure.starts_with("raised ") && failure.ends_with(": boom from rust"),
        "the failure is raised as an exception in Python\n{transcript}"
    );
    assert_eq!(
        results.get("sum_range"),
        Some(&"ok 50000000005000000000"),
        "an integer beyond u64 arrives as a Python int\n{transcript}"
    );
    assert_eq!(
        results.get("flaky"),
        Some(&"ok 3"),
        "a task retried twice through the delay topology answers after its retries\n{transcript}"
    );
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_producer_calls_a_python_worker() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let celery = Python::celery_worker(&vhost.url(), DEFAULT_QUEUE, &unique("pytasks"))
        .await
        .unwrap();
    let producer = producer_in(&vhost).await;

    let sum = producer
        .send_raw::<Value>(
            "py.add",
            vec![json!(2), json!(3)],
            Map::new(),
            SendOptions::default(),
        )
        .await
        .unwrap()
        .wait(GUARD)
        .await
        .unwrap_or_else(|err| panic!("py.add(2, 3): {err}\n{}", celery.transcript()));
    assert_eq!(sum, json!(5));

    let kwargs = Map::from_iter([("x".to_owned(), json!(4)), ("y".to_owned(), json!(5))]);
    let sum = producer
        .send_raw::<Value>("py.add", Vec::new(), kwargs, SendOptions::default())
        .await
        .unwrap()
        .wait(GUARD)
        .await
        .unwrap_or_else(|err| panic!("py.add(x=4, y=5): {err}\n{}", celery.transcript()));
    assert_eq!(sum, json!(9));

    let outcome = producer
        .send_raw::<Value>(
            "py.fail",
            vec![json!("boom from python")],
            Map::new(),
            SendOptions::default(),
        )
        .await
        .unwrap()
        .wait(GUARD)
        .await;
    match outcome {
        Err(CallError::Failed { failure, .. }) => {
            assert_eq!(failure.exc_type, "ValueError", "{failure:?}");
            assert!(failure.message.contains("boom from python"), "{failure:?}");
            assert_eq!(
                failure.exc_module.as_deref(),
                Some("builtins"),
                "{failure:?}"
            );
            let traceback = failure.traceback.as_deref().unwrap_or_default();
            assert!(
                traceback.contains("raise ValueError(message)"),
                "{failure:?}"
            );
        }
        other => panic!(
            "py.fail: expected a ValueError, got {other:?}\n{}",
            celery.transcript()
        ),
    }

    celery.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sees_celeriac_messages_as_valid() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_in(&vhost).await;
    let kwargs = Map::from_iter([("x".to_owned(), json!(2)), ("y".to_owned(), json!(3))]);
    let handle = producer
        .send_raw::<Value>("demo.add", Vec::new(), kwargs, SendOptions::ignore_result())
        .await
        .unwrap();
    let id = handle.id().to_owned();

    let transcript = Python::run("get_raw_message.py", &vhost.url())
        .await
        .unwrap();

    let message: Value = serde_json::from_str(transcript.stdout.trim())
        .unwrap_or_else(|err| panic!("{err}\n{transcript}"));
    let headers = message["headers"].as_object().unwrap();
    for header in CELERY_HEADERS {
        assert!(headers.contains_key(header), "no `{header}` in {headers:?}");
    }
    assert_eq!(headers["task"], "demo.add");
    assert_eq!(headers["id"], json!(id));
    assert_eq!(headers["root_id"], json!(id));
    assert_eq!(headers["parent_id"], Value::Null);
    assert_eq!(headers["retries"], 0);
    assert_eq!(headers["ignore_result"], true);
    assert_eq!(headers["timelimit"], json!([null, null]));
    assert!(headers["lang"].is_string(), "{headers:?}");
    assert!(headers["argsrepr"].is_string(), "{headers:?}");
    assert!(headers["kwargsrepr"].is_string(), "{headers:?}");
    assert!(
        headers["origin"].as_str().unwrap().starts_with("gen"),
        "{headers:?}"
    );

    let properties = &message["properties"];
    assert_eq!(properties["correlation_id"], json!(id));
    assert_eq!(properties["content_type"], "application/json");
    assert_eq!(properties["content_encoding"], "utf-8");
    assert_eq!(properties["delivery_mode"], 2);
    assert_eq!(message["delivery_info"]["routing_key"], DEFAULT_QUEUE);

    let body: Value = serde_json::from_str(message["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!([
            [],
            {"x": 2, "y": 3},
            {"callbacks": null, "errbacks": null, "chain": null, "chord": null}
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_countdown_runs_on_the_rust_worker_after_the_delay() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, _ctx: TaskContext| {
        let seen_tx = seen_tx.clone();
        async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let _ = seen_tx.send(now);
            Ok::<_, TaskError>(args.x + args.y)
        }
    });
    let worker = TestWorker::start_with(worker_config(&vhost), registry)
        .await
        .unwrap();

    let transcript = Python::run("send_countdown.py", &vhost.url())
        .await
        .unwrap();
    let sent: f64 = transcript
        .to_string()
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no send time printed\n{transcript}"));
    let ran = tokio::time::timeout(GUARD, seen.recv())
        .await
        .unwrap_or_else(|_| panic!("demo.add did not run within {GUARD:?}\n{transcript}"))
        .unwrap();
    let waited = ran - sent;
    assert!(
        waited >= 1.9,
        "ran {waited:.3}s after the send, before its countdown"
    );
    assert!(
        waited <= 4.0,
        "ran {waited:.3}s after the send, long after its countdown"
    );
    worker.stop().await.unwrap();
    assert_eq!(ready_messages(&vhost, DEFAULT_QUEUE).await, 0);
}
