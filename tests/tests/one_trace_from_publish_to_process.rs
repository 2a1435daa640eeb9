//! A task is one trace: the producer's `publish` span (a child of whatever
//! span the caller is in), the worker's `process` span as its child (or
//! linked to it), the handler's own spans inside, and the result's
//! `publish result`; retries stay in the trace, failures are recorded.
//!
//! Spans are recorded in memory by an OpenTelemetry layer in this test
//! process, where both the producer and the worker run.
//!
//! Run with `cargo test -p celeriac-tests --test one_trace_from_publish_to_process`.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs, Fail, FailArgs, Flaky, FlakyArgs};
use celeriac_shared::{CallError, Task};
use celeriac_tests::spans::{SpanRecorder, attribute, is_child_of};
use celeriac_tests::{GUARD, TestWorker, broker_url, delete_queues, producer_for, unique};
use celeriac_worker::{
    ProducerSpan, Registry, RetryPolicy, TaskContext, TaskError, TaskOptions, WorkerConfig,
};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use tracing::Instrument;

struct Panics;

impl Task for Panics {
    const NAME: &'static str = "test.panics";
    type Args = FailArgs;
    type Output = ();
}

/// The spans whose name starts with `prefix` for task `task_id`.
fn spans_of(spans: &[SpanData], prefix: &str, task_id: &str) -> Vec<SpanData> {
    spans
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .filter(|s| attribute(s, "messaging.message.id").as_deref() == Some(task_id))
        .cloned()
        .collect()
}

/// Waits for the `process` span of attempt `retries` of `task_id`.
async fn process_span(recorder: &SpanRecorder, task_id: &str, retries: u32) -> SpanData {
    let what = format!("process span of {task_id}, attempt {retries}");
    recorder
        .wait_for(&what, |spans| {
            spans_of(spans, "process ", task_id)
                .into_iter()
                .find(|s| attribute(s, "celery.retries") == Some(retries.to_string()))
        })
        .await
        .unwrap()
}

/// Waits for the first span named exactly `name` (after `prefix` match)
/// for task `task_id`.
async fn one_span(recorder: &SpanRecorder, prefix: &str, task_id: &str) -> SpanData {
    let what = format!("`{prefix}` span of {task_id}");
    recorder
        .wait_for(&what, |spans| {
            spans_of(spans, prefix, task_id).into_iter().next()
        })
        .await
        .unwrap()
}

fn worker_config(queue: &str) -> WorkerConfig {
    WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.to_owned()],
        concurrency: 4,
        ..WorkerConfig::default()
    }
}

fn registry() -> Registry {
    let mut registry = celeriac_demo::registry();
    registry.register::<Add, _, _>(|args: AddArgs, ctx: TaskContext| async move {
        let sum = async { args.x + args.y }
            .instrument(tracing::info_span!("adding", task_id = ctx.id()))
            .await;
        Ok::<_, TaskError>(sum)
    });
    let never = TaskOptions {
        retry: Some(RetryPolicy::never()),
        ..TaskOptions::default()
    };
    registry.register_with::<Panics, _, _>(never, |args: FailArgs, _ctx: TaskContext| async move {
        panic!("{}", args.message)
    });
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_and_process_spans_form_one_trace_with_the_callers_span() {
    let recorder = SpanRecorder::install().unwrap();
    let queue = unique("trace");
    let worker = TestWorker::start_with(worker_config(&queue), registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer
        .send::<Add>(&AddArgs { x: 2, y: 3 })
        .instrument(tracing::info_span!("request"))
        .await
        .unwrap();
    let task_id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 5);

    let process = process_span(recorder, &task_id, 0).await;
    let publish = one_span(recorder, &format!("publish {queue}:"), &task_id).await;
    let result = one_span(recorder, "publish result", &task_id).await;
    let request = recorder
        .wait_for("request span", |spans| {
            spans
                .iter()
                .find(|s| s.name == "request" && s.span_context.span_id() == publish.parent_span_id)
                .cloned()
        })
        .await
        .unwrap();
    let adding = recorder
        .wait_for("handler span", |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name == "adding" && attribute(s, "task_id").as_deref() == Some(&task_id)
                })
                .cloned()
        })
        .await
        .unwrap();

    assert!(
        is_child_of(&publish, &request),
        "publish is a child of the caller's span"
    );
    assert!(
        is_child_of(&process, &publish),
        "process is a child of publish"
    );
    assert!(
        process.parent_span_is_remote,
        "the parent came over the wire"
    );
    assert!(
        is_child_of(&adding, &process),
        "the handler's span nests in process"
    );
    assert!(
        is_child_of(&result, &process),
        "the result's publish is in process"
    );

    let destination = format!("{queue}:{queue}");
    assert_eq!(publish.name, format!("publish {destination}"));
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(process.name, format!("process {destination}"));
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(result.span_kind, SpanKind::Producer);
    for (span, operation) in [(&publish, "publish"), (&process, "process")] {
        assert_eq!(
            attribute(span, "messaging.system").as_deref(),
            Some("rabbitmq")
        );
        assert_eq!(
            attribute(span, "messaging.destination.name"),
            Some(destination.clone())
        );
        assert_eq!(
            attribute(span, "messaging.rabbitmq.destination.routing_key"),
            Some(queue.clone())
        );
        assert_eq!(
            attribute(span, "messaging.operation.name").as_deref(),
            Some(operation)
        );
        assert_eq!(
            attribute(span, "celery.task_name").as_deref(),
            Some("demo.add")
        );
        assert_eq!(attribute(span, "celery.retries").as_deref(), Some("0"));
    }
    assert_eq!(
        attribute(&process, "messaging.destination.subscription.name"),
        Some(queue.clone())
    );
    assert_eq!(
        attribute(&process, "celeriac.disposition").as_deref(),
        Some("ack")
    );
    assert_eq!(
        attribute(&result, "celery.state").as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(process.status, Status::Unset);

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_link_mode_the_process_span_starts_a_trace_linked_to_the_publish() {
    let recorder = SpanRecorder::install().unwrap();
    let queue = unique("trace-link");
    let config = WorkerConfig {
        producer_span: ProducerSpan::Link,
        ..worker_config(&queue)
    };
    let worker = TestWorker::start_with(config, registry()).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer.send::<Add>(&AddArgs { x: 1, y: 1 }).await.unwrap();
    let task_id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 2);

    let process = process_span(recorder, &task_id, 0).await;
    let publish = one_span(recorder, &format!("publish {queue}:"), &task_id).await;
    assert_ne!(
        process.span_context.trace_id(),
        publish.span_context.trace_id()
    );
    assert!(!is_child_of(&process, &publish));
    let linked: Vec<_> = process
        .links
        .iter()
        .map(|link| (link.span_context.trace_id(), link.span_context.span_id()))
        .collect();
    let published = (
        publish.span_context.trace_id(),
        publish.span_context.span_id(),
    );
    assert_eq!(linked, vec![published], "one link, to the publish span");

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_tasks_attempts_stay_in_the_trace() {
    let recorder = SpanRecorder::install().unwrap();
    let queue = unique("trace-retry");
    let worker = TestWorker::start_with(worker_config(&queue), registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer
        .send::<Flaky>(&FlakyArgs { failures: 1 })
        .await
        .unwrap();
    let task_id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 2, "ran twice");

    let publish = one_span(recorder, &format!("publish {queue}:"), &task_id).await;
    let first = process_span(recorder, &task_id, 0).await;
    let second = process_span(recorder, &task_id, 1).await;
    let trace = publish.span_context.trace_id();
    assert_eq!(first.span_context.trace_id(), trace);
    assert_eq!(second.span_context.trace_id(), trace);
    assert!(is_child_of(&first, &publish));
    assert!(
        matches!(first.status, Status::Error { .. }),
        "{:?}",
        first.status
    );
    assert_eq!(
        attribute(&first, "celeriac.disposition").as_deref(),
        Some("retry")
    );

    // The retry copy is published from the first attempt, and the second
    // attempt continues from that publish.
    let spans = recorder.trace(trace);
    let retry_publish = spans
        .iter()
        .find(|s| s.span_context.span_id() == second.parent_span_id)
        .unwrap_or_else(|| panic!("the second attempt's parent is not in the trace: {spans:#?}"));
    assert!(
        retry_publish.name.starts_with("publish celery_delayed_27:"),
        "{}",
        retry_publish.name
    );
    assert!(is_child_of(retry_publish, &first));
    assert_eq!(second.status, Status::Unset);

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_or_panicking_handler_records_the_error_on_its_span() {
    let recorder = SpanRecorder::install().unwrap();
    let queue = unique("trace-fail");
    let worker = TestWorker::start_with(worker_config(&queue), registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();

    for (task, expected_type) in [(Fail::NAME, "Reject"), (Panics::NAME, "Panic")] {
        let handle = producer
            .send_raw::<serde_json::Value>(
                task,
                vec!["boom".into()],
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        let task_id = handle.id().to_owned();
        assert!(matches!(
            handle.wait(GUARD).await,
            Err(CallError::Failed { .. })
        ));

        let process = process_span(recorder, &task_id, 0).await;
        match &process.status {
            Status::Error { description } => assert!(description.contains("boom"), "{description}"),
            other => panic!("{task}: status {other:?}"),
        }
        assert_eq!(
            attribute(&process, "error.type").as_deref(),
            Some(expected_type)
        );
        assert_eq!(
            attribute(&process, "celeriac.disposition").as_deref(),
            Some("dead-letter")
        );
        let exception = process.events.iter().find(|e| e.name == "exception");
        let exception =
            exception.unwrap_or_else(|| panic!("{task}: no exception event: {:?}", process.events));
        let exception_type = exception
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "exception.type");
        assert_eq!(
            exception_type.map(|kv| kv.value.to_string()).as_deref(),
            Some(expected_type)
        );
    }

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}
