//! Results travel back over reply queues as with Celery's `rpc://` backend:
//! typed outputs, failures, timeouts, many concurrent calls, groups,
//! `ignore_result`, `track_started` and dropped handles.
//!
//! Needs RabbitMQ; run with
//! `cargo test -p celeriac-tests --test results_over_reply_queues`.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use celeriac_demo::{Add, AddArgs, Fail, FailArgs, SumRange, SumRangeArgs, sum_range};
use celeriac_producer::Producer;
use celeriac_shared::{
    CallError, ResultMessage, Router, SendOptions, Task, TaskMessage, TaskState, Topology,
};
use celeriac_tests::{
    GUARD, TestWorker, broker_url, channel, delete_queues, message_count, producer_with, unique,
};
use celeriac_worker::{Registry, TaskContext, TaskError, WorkerConfig};
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use serde_json::{Map, json};

/// The size of each chunk when 1..=1_000_000 is summed in 100 tasks.
const CHUNK: i64 = 10_000;

/// A task whose handler panics, to show a panic becomes a failure.
struct Explode;

impl Task for Explode {
    const NAME: &'static str = "test.explode";
    type Args = ();
    type Output = ();
}

async fn explode(_args: (), _ctx: TaskContext) -> Result<(), TaskError> {
    panic!("kaboom")
}

/// A producer whose default queue is `queue`.
async fn producer_for(queue: &str) -> Producer {
    producer_with(Router::new(vec![], queue), Topology::default())
        .await
        .unwrap()
}

/// A worker on `queue` running tasks one at a time, so they finish in the
/// order they were sent.
async fn serial_worker(queue: &str, track_started: bool) -> TestWorker {
    let config = WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.to_owned()],
        concurrency: 1,
        track_started,
        ..WorkerConfig::default()
    };
    TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap()
}

/// The 100 chunks covering 1..=1_000_000, in order.
fn chunks() -> Vec<SumRangeArgs> {
    (0..100)
        .map(|i| SumRangeArgs {
            start: i * CHUNK + 1,
            end: (i + 1) * CHUNK,
        })
        .collect()
}

/// Declares a plain queue, exclusive to `channel`'s connection, to receive
/// results published by hand-made messages, and consumes it one
/// unacknowledged message at a time, so whatever follows stays ready and
/// countable.
async fn raw_reply_queue(channel: &Channel, name: &str) -> Consumer {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    channel
        .basic_consume(
            name.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap()
}

/// Publishes `demo.add(1, 2)` to `queue` by hand through the default
/// exchange, asking for its result on `reply_to`; returns the task id.
async fn publish_add(
    channel: &Channel,
    queue: &str,
    reply_to: &str,
    ignore_result: bool,
) -> String {
    let mut message = TaskMessage::new("demo.add", vec![json!(1), json!(2)], Map::new());
    message.reply_to = Some(reply_to.to_owned());
    message.headers.ignore_result = ignore_result;
    // `now` only sets the AMQP expiration of messages with `expires`, which
    // this one has not; the test crate does not depend on chrono.
    let (body, properties) = message.encode(Default::default()).unwrap();
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .unwrap();
    message.id().to_owned()
}

/// The next message on `consumer`, acknowledged, failing the test if none
/// arrives within the guard.
async fn next_reply(consumer: &mut Consumer) -> lapin::message::Delivery {
    let delivery = tokio::time::timeout(GUARD, consumer.next())
        .await
        .expect("no reply within the guard")
        .expect("the reply consumer ended")
        .unwrap();
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    delivery
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_returns_the_typed_result() {
    let queue = unique("results-typed");
    let worker = TestWorker::start(&[&queue], celeriac_demo::registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await;

    let sum = producer
        .call::<Add>(&AddArgs { x: 2, y: 3 }, GUARD)
        .await
        .unwrap();
    let big = producer
        .call::<SumRange>(
            &SumRangeArgs {
                start: 1,
                end: 10_000_000_000,
            },
            GUARD,
        )
        .await
        .unwrap();

    assert_eq!(sum, 5);
    assert_eq!(big, 50_000_000_005_000_000_000_i128);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_arrives_as_task_failure_with_the_handlers_message() {
    let queue = unique("results-failure");
    let mut registry = celeriac_demo::registry();
    // A panic is retried like any unexpected failure; one quick retry keeps
    // the test about the panic, not about backoff timing.
    let quick = celeriac_worker::TaskOptions {
        retry: Some(celeriac_worker::RetryPolicy {
            max_retries: 1,
            backoff: celeriac_worker::Backoff::Fixed(Duration::from_secs(1)),
            retry_unexpected: true,
        }),
        time_limit: None,
        soft_time_limit: None,
    };
    registry.register_with::<Explode, _, _>(quick, explode);
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await;

    let message = "the answer is not 42";
    let failed = producer
        .call::<Fail>(
            &FailArgs {
                message: message.into(),
            },
            GUARD,
        )
        .await
        .unwrap_err();
    let CallError::Failed { failure, .. } = failed else {
        panic!("expected a task failure, got {failed:?}");
    };
    assert_eq!(failure.exc_type, "Reject", "demo.fail fails permanently");
    assert_eq!(failure.message, message);
    assert_eq!(failure.exc_module.as_deref(), Some("celeriac"));
    let traceback = failure.traceback.unwrap_or_default();
    assert!(traceback.contains(message), "{traceback}");

    let panicked = producer.call::<Explode>(&(), GUARD).await.unwrap_err();
    let CallError::Failed { failure, .. } = panicked else {
        panic!("expected a task failure, got {panicked:?}");
    };
    assert_eq!(failure.exc_type, "Panic");
    assert!(failure.message.contains("kaboom"), "{}", failure.message);

    let after_panic = producer.call::<Add>(&AddArgs { x: 1, y: 1 }, GUARD).await;
    assert_eq!(after_panic.unwrap(), 2, "the worker survives a panic");
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_nobody_consumes_times_out_naming_the_task() {
    let queue = unique("results-nobody");
    let producer = producer_for(&queue).await;

    let handle = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    let id = handle.id().to_owned();
    let timeout = Duration::from_millis(300);
    let err = handle.wait(timeout).await.unwrap_err();

    let shown = err.to_string();
    let CallError::Timeout {
        task_id,
        timeout: waited,
    } = err
    else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!((task_id, waited), (id.clone(), timeout));
    assert!(shown.contains(&id), "{shown}");
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_calls_each_get_their_own_result() {
    let queue = unique("results-thousand");
    let config = WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.clone()],
        concurrency: 32,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await;
    let y = 1_000_000;

    let calls = (0..1000).map(|x| {
        let producer = producer.clone();
        async move { (x, producer.call::<Add>(&AddArgs { x, y }, GUARD).await) }
    });
    let results = futures::future::join_all(calls).await;

    assert_eq!(results.len(), 1000);
    for (x, result) in results {
        assert_eq!(result.unwrap(), x + y, "the result of add({x}, {y})");
    }
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_that_arrives_before_anyone_waits_is_kept() {
    let queue = unique("results-early");
    let worker = serial_worker(&queue, false).await;
    let producer = producer_for(&queue).await;

    let first = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    let second = producer.send::<Add>(&AddArgs { x: 3, y: 4 }).await.unwrap();
    // One task at a time from one queue, results over one reply queue: the
    // first result was delivered before the second.
    assert_eq!(second.wait(GUARD).await.unwrap(), 7);

    // No time to wait at all: the result must already be there.
    assert_eq!(first.wait(Duration::ZERO).await.unwrap(), 3);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_over_a_hundred_chunks_gives_the_right_total() {
    let queue = unique("results-map");
    let worker = TestWorker::start(&[&queue], celeriac_demo::registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await;
    let n: i128 = 1_000_000;

    let group = producer.map::<SumRange>(chunks()).await.unwrap();
    assert_eq!(group.len(), 100);
    let results = group.join(GUARD).await;
    let total: i128 = results.into_iter().map(Result::unwrap).sum();
    assert_eq!(total, n * (n + 1) / 2);

    let group = producer.map::<SumRange>(chunks()).await.unwrap();
    let mut progress = Vec::new();
    let results = group
        .join_with_progress(GUARD, |done, total| progress.push((done, total)))
        .await;
    let expected: Vec<(usize, usize)> = (1..=100).map(|done| (done, 100)).collect();
    assert_eq!(progress, expected);
    let total: i128 = results.into_iter().map(Result::unwrap).sum();
    assert_eq!(total, n * (n + 1) / 2);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failing_chunk_is_reported_and_the_rest_still_arrive() {
    let queue = unique("results-one-fails");
    let failing_start = 42 * CHUNK + 1;
    let mut registry = Registry::new();
    registry.register::<SumRange, _, _>(move |args: SumRangeArgs, _ctx| async move {
        if args.start == failing_start {
            Err(TaskError::reject("chunk 42 failed"))
        } else {
            Ok(sum_range(args.start, args.end))
        }
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await;

    let results = producer
        .map::<SumRange>(chunks())
        .await
        .unwrap()
        .join(GUARD)
        .await;
    assert_eq!(results.len(), 100);
    let failed: Vec<usize> = (0..100).filter(|&i| results[i].is_err()).collect();
    assert_eq!(failed, vec![42]);
    let failure = results[42].as_ref().unwrap_err().failure().unwrap();
    assert_eq!(failure.message, "chunk 42 failed");

    let completed: Vec<_> = producer
        .map::<SumRange>(chunks())
        .await
        .unwrap()
        .as_completed(GUARD)
        .collect()
        .await;
    assert_eq!(completed.len(), 100);
    let indexes: HashSet<usize> = completed.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, (0..100).collect::<HashSet<_>>());
    for (index, result) in &completed {
        match result {
            Err(CallError::Failed { .. }) if *index == 42 => {}
            Ok(sum) => assert_ne!(*index, 42, "chunk 42 succeeded with {sum}"),
            Err(err) => panic!("chunk {index} failed: {err}"),
        }
    }
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fire_and_forget_sends_get_no_result() {
    let queue = unique("results-ignored");
    let reply_queue = unique("results-ignored-reply");
    let worker = serial_worker(&queue, false).await;
    let (connection, channel) = channel().await.unwrap();
    let mut replies = raw_reply_queue(&channel, &reply_queue).await;

    let _ignored = publish_add(&channel, &queue, &reply_queue, true).await;
    let wanted = publish_add(&channel, &queue, &reply_queue, false).await;
    // One task at a time: had the first sent a result, it would come first.
    let first_reply = next_reply(&mut replies).await;
    let correlation_id = first_reply.properties.correlation_id().clone().unwrap();
    assert_eq!(correlation_id.as_str(), wanted);
    assert_eq!(message_count(&channel, &reply_queue).await.unwrap(), 0);

    let producer = producer_for(&queue).await;
    let handle = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 2 }, SendOptions::ignore_result())
        .await
        .unwrap();
    let id = handle.id().to_owned();
    let waited = handle
        .wait(GUARD)
        .now_or_never()
        .expect("wait returns at once");
    let Err(CallError::ResultIgnored { task_id }) = waited else {
        panic!("expected ResultIgnored, got {waited:?}");
    };
    assert_eq!(task_id, id);
    celeriac_tests::close(&connection).await;
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &reply_queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn track_started_sends_a_started_state() {
    let queue = unique("results-started");
    let reply_queue = unique("results-started-reply");
    let worker = serial_worker(&queue, true).await;
    let (connection, channel) = channel().await.unwrap();
    let mut replies = raw_reply_queue(&channel, &reply_queue).await;

    let id = publish_add(&channel, &queue, &reply_queue, false).await;
    let started = ResultMessage::decode(&next_reply(&mut replies).await.data).unwrap();
    let finished = ResultMessage::decode(&next_reply(&mut replies).await.data).unwrap();

    assert_eq!(
        (started.task_id.as_str(), started.status),
        (id.as_str(), TaskState::Started)
    );
    assert_eq!(
        (finished.task_id.as_str(), finished.status),
        (id.as_str(), TaskState::Success)
    );
    assert_eq!(finished.result.get(), "3");
    celeriac_tests::close(&connection).await;
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &reply_queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_handle_discards_its_result() {
    let queue = unique("results-dropped");
    let worker = serial_worker(&queue, false).await;
    let producer = producer_for(&queue).await;

    let abandoned = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    drop(abandoned);
    // One task at a time: the abandoned result reaches the reply consumer
    // first, which must drop it and carry on.
    let sum = producer.call::<Add>(&AddArgs { x: 5, y: 6 }, GUARD).await;

    assert_eq!(sum.unwrap(), 11);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_the_id_of_a_task_still_waiting_is_refused() {
    let queue = unique("dup-id");
    let producer = producer_for(&queue).await;
    let options = SendOptions {
        task_id: Some(uuid::Uuid::new_v4().to_string()),
        ..SendOptions::default()
    };
    let first = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 2 }, options.clone())
        .await
        .unwrap();
    let second = producer
        .send_with::<Add>(&AddArgs { x: 3, y: 4 }, options)
        .await;
    assert!(
        matches!(
            second,
            Err(celeriac_producer::Error::DuplicateTaskId { .. })
        ),
        "{second:?}"
    );
    let worker = TestWorker::start(&[&queue], celeriac_demo::registry())
        .await
        .unwrap();
    assert_eq!(
        first.wait(GUARD).await.unwrap(),
        3,
        "the first send still gets its result"
    );
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}
