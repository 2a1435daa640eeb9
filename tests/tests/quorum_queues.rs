//! With `queue_type = "quorum"` in `celeriac.toml`, every queue celeriac
//! declares for tasks is a quorum queue, dead-letter queues included; tasks
//! run, retry through the delay ladder and are dead-lettered as on classic
//! queues, and the broker's own delivery count ends a message that crashes
//! every worker after exactly `delivery_limit` runs.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs, Fail, FailArgs, Flaky, FlakyArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{
    Config, DeadLetter, DeadLetterTopology, QUORUM_DELIVERIES_HEADER, QueueDef, QueueType,
    SendOptions, Task, Topology, field_table_to_json, integer_header,
};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, channel_on, consume, init_logging, message_count, next_delivery,
    publish_raw, within,
};
use celeriac_worker::{Registry, TaskError, Worker, WorkerConfig};
use lapin::options::{BasicGetOptions, BasicNackOptions};
use tokio::sync::mpsc;

/// The switch on, and a delivery limit of 2.
const QUORUM: &str = "queue_type = \"quorum\"\ndelivery_limit = 2\n";

/// A worker of the demo tasks (or of `registry`) on `celery` in `vhost`,
/// configured from [`QUORUM`], and a producer configured alike.
async fn start(vhost: &Vhost, registry: Registry) -> (TestWorker, Producer) {
    let file = Config::from_toml(QUORUM, "quorum.toml").unwrap();
    let worker = TestWorker::start_with(worker_config(&file, vhost), registry)
        .await
        .unwrap();
    let producer = Producer::connect(ProducerConfig::from_config(&file, vhost.url()))
        .await
        .unwrap();
    (worker, producer)
}

fn worker_config(file: &Config, vhost: &Vhost) -> WorkerConfig {
    WorkerConfig {
        grace_period: Duration::from_millis(100),
        heartbeat_interval: None,
        ..WorkerConfig::from_config(file, vhost.url())
    }
}

/// The type and the arguments of `queue` in `vhost`.
fn queue(vhost: &Vhost, queue: &str) -> (String, String) {
    let queues = vhost.queue_types().unwrap();
    queues.get(queue).cloned().unwrap_or_else(|| {
        panic!("no queue `{queue}` in {queues:?}");
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_queue_a_worker_declares_is_quorum_and_a_task_runs() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (worker, producer) = start(&vhost, celeriac_demo::registry()).await;
    let sum = producer
        .call::<Add>(&AddArgs { x: 2, y: 3 }, GUARD)
        .await
        .unwrap();
    assert_eq!(sum, 5);
    for name in [
        "celery",
        "celery.dead",
        "celeriac.chords",
        "celeriac.chords.dead",
    ] {
        assert_eq!(queue(&vhost, name).0, "quorum", "{name}");
    }
    assert_eq!(queue(&vhost, "celery_delayed_0").0, "quorum");
    let (_, arguments) = queue(&vhost, "celery");
    for argument in [
        "{\"x-delivery-limit\",2}",
        "{\"x-dead-letter-exchange\",\"celeriac.dead\"}",
        "{\"x-dead-letter-routing-key\",\"celery\"}",
    ] {
        assert!(arguments.contains(argument), "{argument} in {arguments}");
    }
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_task_runs_after_two_retries_through_the_delay_ladder() {
    let vhost = Vhost::create().unwrap();
    let (worker, producer) = start(&vhost, celeriac_demo::registry()).await;
    let attempts = producer
        .call::<Flaky>(&FlakyArgs { failures: 2 }, GUARD)
        .await
        .unwrap();
    assert_eq!(attempts, 3, "ran twice in vain, then succeeded");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_task_ends_in_the_quorum_dead_letter_queue_with_its_error() {
    let vhost = Vhost::create().unwrap();
    let (worker, producer) = start(&vhost, celeriac_demo::registry()).await;
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    let mut dead_letters = consume(&channel, "celery.dead").await.unwrap();
    let args = FailArgs {
        message: "bad input".into(),
    };
    let _sent = producer
        .send_with::<Fail>(&args, SendOptions::ignore_result())
        .await
        .unwrap();
    let letter = next_delivery(&mut dead_letters).await.unwrap();
    let why = DeadLetter::from_headers(letter.properties.headers().as_ref().unwrap()).unwrap();
    assert_eq!(why.reason, "rejected");
    assert_eq!(why.error_message, "bad input");
    assert_eq!(why.original_queue, "celery");
    assert_eq!(queue(&vhost, "celery.dead").0, "quorum");
    worker.stop().await.unwrap();
}

struct Stalls;

impl Task for Stalls {
    const NAME: &'static str = "test.stalls";
    type Args = ();
    type Output = ();
}

/// A registry whose `test.stalls` reports each start, then never ends.
fn stalling(started: mpsc::UnboundedSender<()>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Stalls, _, _>(move |(), _ctx| {
        started.send(()).unwrap();
        std::future::pending::<Result<(), TaskError>>()
    });
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_never_finishes_runs_exactly_delivery_limit_times_then_is_dead_lettered() {
    let vhost = Vhost::create().unwrap();
    let (started, mut starts) = mpsc::unbounded_channel();
    let (first, producer) = start(&vhost, stalling(started.clone())).await;
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    let mut dead_letters = consume(&channel, "celery.dead").await.unwrap();
    let _sent = producer
        .send_with::<Stalls>(&(), SendOptions::ignore_result())
        .await
        .unwrap();
    within("the first run", starts.recv()).await.unwrap();
    first.stop().await.unwrap();

    let file = Config::from_toml(QUORUM, "quorum.toml").unwrap();
    let config = worker_config(&file, &vhost);
    let second = TestWorker::start_with(config.clone(), stalling(started.clone()))
        .await
        .unwrap();
    within("the second run", starts.recv()).await.unwrap();
    second.stop().await.unwrap();

    let third = TestWorker::start_with(config, stalling(started))
        .await
        .unwrap();
    let letter = next_delivery(&mut dead_letters).await.unwrap();
    let headers = letter.properties.headers().clone().unwrap();
    let why = DeadLetter::from_headers(&headers).unwrap();
    assert_eq!(why.reason, "delivery limit");
    assert_eq!(why.error_message, "delivered 3 times without finishing");
    assert_eq!(
        integer_header(Some(&headers), QUORUM_DELIVERIES_HEADER),
        Some(2),
        "the broker counted two earlier deliveries, once each"
    );
    assert!(starts.try_recv().is_err(), "it ran twice, not a third time");
    third.stop().await.unwrap();
}

#[tokio::test]
async fn a_quorum_queue_with_priorities_is_refused_before_connecting() {
    let topology = Topology::new(vec![QueueDef::new("urgent").max_priority(5)])
        .default_queue_type(QueueType::Quorum);
    let config = WorkerConfig {
        queues: vec!["urgent".into()],
        topology,
        ..WorkerConfig::default()
    };
    let err = Worker::new(config)
        .run(std::future::pending())
        .await
        .unwrap_err();
    let chain = celeriac_shared::ErrorChain(&err).to_string();
    assert!(
        chain.contains("queue `urgent`") && chain.contains("`max_priority` needs a classic queue"),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_own_limit_the_broker_dead_letters_into_the_dead_letter_queue() {
    let vhost = Vhost::create().unwrap();
    let file = Config::from_toml(QUORUM, "quorum.toml").unwrap();
    let producer = Producer::connect(ProducerConfig::from_config(&file, vhost.url()))
        .await
        .unwrap();
    producer.declare_queue("celery").await.unwrap();
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    let retention = celeriac_shared::DeadLetterRetention::UNLIMITED;
    DeadLetterTopology::declare_with(&channel, "celery", &retention, QueueType::Quorum)
        .await
        .unwrap();
    let properties = lapin::BasicProperties::default().with_delivery_mode(2);
    publish_raw(&channel, "celery", b"poison", properties)
        .await
        .unwrap();
    // A worker dead-letters at the third delivery (count 2); the broker
    // only when that one is returned too, as by a worker killed then.
    for count in 0..=2 {
        let got = get(&channel, "celery").await;
        let seen = integer_header(got.properties.headers().as_ref(), QUORUM_DELIVERIES_HEADER);
        assert_eq!(seen.unwrap_or(0), count);
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        got.acker.nack(requeue).await.unwrap();
    }
    let letter = get(&channel, "celery.dead").await;
    assert_eq!(letter.data, b"poison");
    let headers = letter.properties.headers().clone().unwrap();
    let reason = field_table_to_json(&headers)["x-first-death-reason"].clone();
    assert_eq!(reason, "delivery_limit");
    assert_eq!(message_count(&channel, "celery").await.unwrap(), 0);
}

/// The next message of `queue`, unacknowledged, waiting up to [`GUARD`].
async fn get(channel: &lapin::Channel, queue: &str) -> lapin::message::BasicGetMessage {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let options = BasicGetOptions { no_ack: false };
        if let Some(got) = channel.basic_get(queue.into(), options).await.unwrap() {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing in {queue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
