//! Spans leave the process over OTLP/HTTP: the `celeriac` CLI (the
//! producer) and `celeriac-demo-worker`, started as separate processes
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a receiver in this test,
//! send spans that form one trace. Neither sets a short batch delay, so
//! the spans arrive only because each process flushes them on shutdown.
//!
//! Run with `cargo test -p celeriac-tests --test otlp_export_across_processes`.
#![allow(clippy::unwrap_used)]

use celeriac_tests::{
    DemoWorker, GUARD, OtlpReceiver, ReceivedSpan, broker_url, delete_queues, unique,
    workspace_binary,
};

/// OTLP span kinds.
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_the_worker_export_one_trace() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let queue = unique("otlp");
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str());
    let mut worker = DemoWorker::start_with_env(
        &["--queues", &queue],
        &[endpoint, ("OTEL_SERVICE_NAME", "test-worker")],
    )
    .await
    .unwrap();

    let called = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(["call", "demo.add", "--args", "[2, 3]", "--queue", &queue])
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .env(endpoint.0, endpoint.1)
        .env("OTEL_SERVICE_NAME", "test-cli")
        .output();
    let called = tokio::time::timeout(GUARD, called).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&called.stderr);
    assert!(called.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&called.stdout).trim(), "5");

    let destination = format!("{queue}:{queue}");
    let publish = receiver
        .wait_for("the CLI's publish span", |spans| {
            spans
                .iter()
                .find(|s| s.service == "test-cli" && s.name == format!("publish {destination}"))
                .cloned()
        })
        .await
        .unwrap();
    assert_eq!(publish.kind, PRODUCER);
    let task_id = publish
        .attribute("messaging.message.id")
        .unwrap()
        .to_owned();

    // SIGTERM: the worker shuts down gracefully and flushes its spans.
    let pid = worker.child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.await.unwrap().success());
    let exited = tokio::time::timeout(GUARD, worker.child.wait())
        .await
        .unwrap();
    assert!(exited.unwrap().success());

    let of_task = |spans: &[ReceivedSpan], name: &str| {
        spans
            .iter()
            .find(|s| {
                s.service == "test-worker"
                    && s.name == name
                    && s.attribute("messaging.message.id") == Some(task_id.as_str())
            })
            .cloned()
    };
    let process_name = format!("process {destination}");
    let process = receiver
        .wait_for("the worker's process span", |spans| {
            of_task(spans, &process_name)
        })
        .await
        .unwrap();
    let result = receiver
        .wait_for("the worker's result span", |spans| {
            of_task(spans, "publish result")
        })
        .await
        .unwrap();
    assert_eq!(process.kind, CONSUMER);
    assert_eq!(process.trace_id, publish.trace_id, "one trace");
    assert_eq!(
        process.parent_span_id, publish.span_id,
        "process is a child of publish"
    );
    assert_eq!(result.trace_id, publish.trace_id);
    assert_eq!(result.parent_span_id, process.span_id);
    assert_eq!(process.attribute("messaging.system"), Some("rabbitmq"));
    assert_eq!(process.attribute("celery.task_name"), Some("demo.add"));

    delete_queues(&[&queue]).await;
}
