//! A worker acknowledges a message only once everything its outcome needs
//! was confirmed by the broker: when the broker keeps refusing the result
//! for the caller's reply queue, or the retry copy in the delay ladder
//! (the worker sends it again on fresh channels for 15 s first), the
//! message is requeued (neither acknowledged nor lost), runs again, and
//! settles normally once the obstacle is gone.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{Router, TaskMessage, integer_header, string_header};
use celeriac_tests::{
    TestWorker, Vhost, channel, channel_on, declare_plain_queue, delete_queues, get_one,
    message_count, next_delivery, producer_for, publish_raw, unique, within,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, json};
use tokio::sync::{mpsc, watch};

/// One run of `demo.add`: its retry count and whether it was redelivered.
#[derive(Debug, PartialEq)]
struct Run {
    retries: u32,
    redelivered: bool,
}

/// `demo.add`, reporting every run. A redelivered first attempt waits
/// until `release` turns true, so the test removes the obstacle while
/// the message is held; with `retry_first`, a first attempt asks for a
/// retry after that delay.
fn registry(
    runs: mpsc::UnboundedSender<Run>,
    release: watch::Receiver<bool>,
    retry_first: Option<Duration>,
) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, ctx| {
        let (retries, redelivered) = (ctx.retries(), ctx.redelivered());
        runs.send(Run {
            retries,
            redelivered,
        })
        .unwrap();
        let mut release = release.clone();
        async move {
            if retries == 0 && redelivered {
                release.wait_for(|released| *released).await.unwrap();
            }
            if let (0, Some(delay)) = (retries, retry_first) {
                return Err(TaskError::retry_after("once", delay));
            }
            Ok::<i64, TaskError>(args.x + args.y)
        }
    });
    registry
}

/// Waits for a first run, then for the same task's run again after the
/// broker refused its `refused` (the message requeued, not acked).
async fn a_run_then_its_redelivery(runs: &mut mpsc::UnboundedReceiver<Run>, refused: &str) {
    let first = within("the first run", runs.recv()).await.unwrap();
    let fresh = Run {
        retries: 0,
        redelivered: false,
    };
    assert_eq!(first, fresh);
    let what = format!("the run after the refused {refused}");
    let again = within(&what, runs.recv()).await.unwrap();
    let requeued = Run {
        retries: 0,
        redelivered: true,
    };
    assert_eq!(again, requeued, "requeued, not acked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_the_broker_refuses_requeues_the_message_until_it_is_taken() {
    let queue = unique("refused-result");
    let reply = unique("refused-result-reply");
    let (runs_tx, mut runs) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let worker = TestWorker::start(&[&queue], registry(runs_tx, released, None))
        .await
        .unwrap();
    // A reply queue that refuses every message: the broker nacks the
    // result (a nack, not an unroutable return, which would count as sent).
    let (connection, raw) = channel().await.unwrap();
    let mut refusing = FieldTable::default();
    refusing.insert("x-max-length".into(), AMQPValue::LongInt(0));
    refusing.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    raw.queue_declare(reply.as_str().into(), exclusive, refusing)
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let mut message = TaskMessage::new("demo.add", vec![json!(20), json!(22)], Map::new());
    message.reply_to = Some(reply.clone());
    producer.publish(&message, None).await.unwrap();

    a_run_then_its_redelivery(&mut runs, "result").await;

    // Room for the result now: the held run's reply is confirmed.
    raw.queue_delete(reply.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    declare_plain_queue(&raw, &reply).await.unwrap();
    let mut results = celeriac_tests::consume(&raw, &reply).await.unwrap();
    release.send(true).unwrap();
    let result = next_delivery(&mut results).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&result.data).unwrap();
    assert_eq!(body["task_id"], json!(message.id()));
    assert_eq!(
        (&body["status"], &body["result"]),
        (&json!("SUCCESS"), &json!(42))
    );
    assert_eq!(
        message_count(&raw, &format!("{queue}.dead")).await.unwrap(),
        0
    );

    worker.stop().await.unwrap();
    assert_eq!(
        message_count(&raw, &queue).await.unwrap(),
        0,
        "acked once the result was taken"
    );
    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
}

/// Polls until `queue` counts a message: a quorum queue's count lags its
/// confirms a little.
async fn until_not_empty(raw: &lapin::Channel, queue: &str, what: &str) {
    within(what, async {
        while message_count(raw, queue).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// The delay-ladder queue that holds a copy delayed by [`LONG_DELAY`].
const LADDER_QUEUE: &str = "celery_delayed_10";

/// A delay of 2^10 s: its copy waits in [`LADDER_QUEUE`] alone.
const LONG_DELAY: Duration = Duration::from_secs(1024);

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_copy_the_broker_refuses_requeues_the_message_until_it_is_taken() {
    let vhost = Vhost::create().unwrap();
    let queue = unique("refused-retry");
    // The ladder queue of the retry copy refuses messages once it holds
    // one (a quorum queue takes the message that crosses its limit).
    let policy = r#"{"max-length":0,"overflow":"reject-publish"}"#;
    let pattern = format!("^{LADDER_QUEUE}$");
    vhost.set_policy("refuse-delays", &pattern, policy).unwrap();
    let (runs_tx, mut runs) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![queue.clone()],
        concurrency: 4,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, registry(runs_tx, released, Some(LONG_DELAY)))
        .await
        .unwrap();
    let (connection, raw) = channel_on(&vhost.url()).await.unwrap();
    publish_raw(&raw, LADDER_QUEUE, b"filler", Default::default())
        .await
        .unwrap();
    until_not_empty(&raw, LADDER_QUEUE, "the filler counted").await;
    let producer = Producer::connect(ProducerConfig {
        broker_url: vhost.url(),
        router: Router::new(vec![], &queue),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    let handle = producer
        .send::<Add>(&AddArgs { x: 20, y: 22 })
        .await
        .unwrap();

    a_run_then_its_redelivery(&mut runs, "retry copy").await;
    assert_eq!(
        message_count(&raw, LADDER_QUEUE).await.unwrap(),
        1,
        "the copy was refused"
    );

    // Taking the filler out puts the queue back under its limit: the held
    // run's retry copy is then confirmed.
    let filler = get_one(&raw, LADDER_QUEUE).await.unwrap().unwrap();
    assert_eq!(filler.delivery.data, b"filler");
    release.send(true).unwrap();
    until_not_empty(&raw, LADDER_QUEUE, "the retry copy in the delay ladder").await;
    worker.stop().await.unwrap();
    assert_eq!(
        message_count(&raw, &queue).await.unwrap(),
        0,
        "the original was acked"
    );
    assert_eq!(
        message_count(&raw, &format!("{queue}.dead")).await.unwrap(),
        0
    );
    let copy = get_one(&raw, LADDER_QUEUE).await.unwrap().unwrap();
    let headers = copy.delivery.properties.headers().as_ref();
    assert_eq!(string_header(headers, "id"), Some(handle.id()));
    assert_eq!(integer_header(headers, "retries"), Some(1));
    assert!(
        get_one(&raw, LADDER_QUEUE).await.unwrap().is_none(),
        "one copy only"
    );
    celeriac_tests::close(&connection).await;
}
