//! Python Celery with opentelemetry-instrumentation-celery and celeriac
//! continue each other's traces: a task Python publishes inside a span
//! runs on the celeriac worker in a `process` span whose parent is the
//! Python publish span, in the same trace; and a task celeriac publishes
//! runs on an instrumented Celery worker as a child of celeriac's
//! `publish` span.
//!
//! Each test runs in its own vhost (Celery's fixed `celery` queue). The
//! Python helpers are `tests/python/send_traced_task.py` and
//! `tests/python/traced_pytasks.py`, from the `scripts/celery-venv`
//! virtualenv.
//!
//! Run with `cargo test -p celeriac-tests --test python_trace_context`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Stdio;

use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{DEFAULT_QUEUE, SendOptions};
use celeriac_tests::spans::{SpanRecorder, attribute};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, celery_python, python_dir, unique, wait_for_consumers,
};
use celeriac_worker::WorkerConfig;
use opentelemetry::trace::SpanKind;
use serde_json::{Map, Value};

#[tokio::test(flavor = "multi_thread")]
async fn a_task_published_in_a_python_span_is_processed_as_its_child() {
    let recorder = SpanRecorder::install().unwrap();
    let vhost = Vhost::create().unwrap();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        concurrency: 2,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();

    let python = tokio::process::Command::new(celery_python().unwrap())
        .arg("send_traced_task.py")
        .current_dir(python_dir())
        .env("CELERIAC_BROKER_URL", vhost.url().expose())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output();
    let output = tokio::time::timeout(GUARD, python).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let transcript = format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{transcript}");
    let lines: HashMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once(' ')).collect();
    let [task_id, trace_id, span_id] = ["task_id", "trace_id", "span_id"].map(|key| {
        *lines
            .get(key)
            .unwrap_or_else(|| panic!("no {key}\n{transcript}"))
    });
    assert_eq!(
        lines.get("span_name"),
        Some(&"apply_async/demo.add"),
        "{transcript}"
    );

    let what = format!("process span of {task_id}");
    let process = recorder
        .wait_for(&what, |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name.starts_with("process ")
                        && attribute(s, "messaging.message.id").as_deref() == Some(task_id)
                })
                .cloned()
        })
        .await
        .unwrap();
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        process.span_context.trace_id().to_string(),
        trace_id,
        "one trace"
    );
    assert_eq!(
        process.parent_span_id.to_string(),
        span_id,
        "the Python publish span is the parent"
    );
    assert!(process.parent_span_is_remote);
    assert_eq!(
        process.name, "process amq.default:celery",
        "Celery publishes to the default exchange"
    );
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_celeriac_publishes_runs_on_an_instrumented_celery_worker_as_its_child() {
    let recorder = SpanRecorder::install().unwrap();
    let vhost = Vhost::create().unwrap();
    let log_path = std::env::temp_dir().join(format!("{}.log", unique("traced-celery")));
    let log = std::fs::File::create(&log_path).unwrap();
    let node = format!("{}@%h", unique("traced"));
    let mut celery = tokio::process::Command::new(celery_python().unwrap())
        .args([
            "-m",
            "celery",
            "-A",
            "traced_pytasks",
            "worker",
            "-P",
            "solo",
        ])
        .args([
            "-Q",
            DEFAULT_QUEUE,
            "-n",
            &node,
            "--without-gossip",
            "--without-mingle",
        ])
        .current_dir(python_dir())
        .env("CELERIAC_BROKER_URL", vhost.url().expose())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let python_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for_consumers(&vhost.url(), &[DEFAULT_QUEUE.to_owned()])
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", python_log()));

    let config = ProducerConfig {
        broker_url: vhost.url(),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config).await.unwrap();
    let handle = producer
        .send_raw::<Value>(
            "py.trace_context",
            Vec::new(),
            Map::new(),
            SendOptions::default(),
        )
        .await
        .unwrap();
    let task_id = handle.id().to_owned();
    let seen = handle
        .wait(GUARD)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", python_log()));

    let publish = recorder
        .wait_for("the publish span", |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name.starts_with("publish ")
                        && attribute(s, "messaging.message.id").as_deref() == Some(&task_id)
                })
                .cloned()
        })
        .await
        .unwrap();
    assert_eq!(seen["span_name"], "run/py.trace_context", "{seen}");
    assert_eq!(
        seen["trace_id"],
        publish.span_context.trace_id().to_string(),
        "one trace"
    );
    assert_eq!(
        seen["parent_span_id"],
        publish.span_context.span_id().to_string(),
        "celeriac's publish span is the parent"
    );

    let pid = celery.id().unwrap().to_string();
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await;
    if tokio::time::timeout(GUARD, celery.wait()).await.is_err() {
        let _ = celery.kill().await;
    }
    let _ = std::fs::remove_file(&log_path);
}
