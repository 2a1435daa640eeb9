//! Producers and workers survive a RabbitMQ restart (the application
//! stopped and started, or the whole node killed and booted again): they
//! reconnect, declare again and carry on, and nothing the broker confirmed
//! is lost. Each test runs its own broker node ([`ScratchBroker`]).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use celeriac_demo::{Add, AddArgs, Sleep, SleepArgs, Total, TotalArgs};
use celeriac_producer::{Error as SendError, Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, CallError, Router, SendOptions, Signature};
use celeriac_tests::{
    GUARD, ScratchBroker, TestWorker, channel_on, close, init_logging, message_count,
    record_results, result_ids, unique, within,
};
use celeriac_worker::{Error as WorkerError, Registry, TaskError, Worker, WorkerConfig};
use serde_json::{Map, json};
use tokio::sync::mpsc;

fn worker_config(url: &BrokerUrl, queue: &str) -> WorkerConfig {
    WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency: 8,
        ..WorkerConfig::default()
    }
}

async fn producer(url: &BrokerUrl, queue: &str, send_timeout: Duration) -> Producer {
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(vec![], queue),
        send_timeout,
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// `demo.add`, reporting each task id it ran; `demo.sleep` sleeps.
fn reporting(ran: mpsc::UnboundedSender<String>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, ctx| {
        ran.send(ctx.id().to_owned()).unwrap();
        async move { Ok::<i64, TaskError>(args.x + args.y) }
    });
    registry.register::<Sleep, _, _>(|args: SleepArgs, _ctx| async move {
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        Ok::<f64, TaskError>(args.seconds)
    });
    registry
}

/// Sends `n` fire-and-forget `demo.add` tasks; returns their ids.
async fn send_many(producer: &Producer, n: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for y in 0..n {
        let handle = producer
            .send_with::<Add>(&AddArgs { x: 0, y }, SendOptions::ignore_result())
            .await
            .unwrap();
        ids.push(handle.id().to_owned());
    }
    ids
}

/// Receives task ids until every one of `ids` has run.
async fn wait_for_runs(ran: &mut mpsc::UnboundedReceiver<String>, ids: &[String]) {
    let mut missing: HashSet<&String> = ids.iter().collect();
    while !missing.is_empty() {
        let id = tokio::time::timeout(GUARD, ran.recv())
            .await
            .unwrap_or_else(|_| panic!("{} tasks never ran", missing.len()))
            .unwrap();
        missing.remove(&id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_sides_carry_on_after_the_broker_application_restarts() {
    init_logging();
    let broker = ScratchBroker::start().await.unwrap();
    let queue = unique("restart");
    let (ran, mut runs) = mpsc::unbounded_channel();
    let worker = TestWorker::start_with(worker_config(&broker.url(), &queue), reporting(ran))
        .await
        .unwrap();
    let producer = producer(&broker.url(), &queue, GUARD).await;
    let before = producer.call::<Add>(&AddArgs { x: 1, y: 2 }, GUARD).await;
    assert_eq!(before.unwrap(), 3);

    broker.stop_app().await.unwrap();
    // A send while the broker is away waits for it to come back.
    let sending = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send::<Add>(&AddArgs { x: 20, y: 22 }).await }
    });
    broker.start_app().await.unwrap();
    let handle = sending.await.unwrap().unwrap();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 42);

    let ids = send_many(&producer, 20).await;
    wait_for_runs(&mut runs, &ids).await;
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn no_confirmed_task_is_lost_when_the_broker_is_killed_and_booted_again() {
    init_logging();
    let broker = ScratchBroker::start().await.unwrap();
    let queue = unique("killed-broker");
    let producer = producer(&broker.url(), &queue, GUARD).await;
    // Confirmed while no worker runs: they must survive the crash on disk.
    let waiting = send_many(&producer, 100).await;
    broker.kill().await.unwrap();
    broker.boot().await.unwrap();

    let (ran, mut runs) = mpsc::unbounded_channel();
    let worker = TestWorker::start_with(worker_config(&broker.url(), &queue), reporting(ran))
        .await
        .unwrap();
    wait_for_runs(&mut runs, &waiting).await;
    // The worker and the producer both reconnect after a second crash.
    broker.kill().await.unwrap();
    broker.boot().await.unwrap();
    let after = send_many(&producer, 50).await;
    wait_for_runs(&mut runs, &after).await;
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_while_the_broker_stays_away_fails_clearly_after_its_timeout() {
    init_logging();
    let broker = ScratchBroker::start().await.unwrap();
    let queue = unique("away");
    let producer = producer(&broker.url(), &queue, Duration::from_secs(2)).await;
    broker.stop_app().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 1 }, SendOptions::ignore_result())
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, SendError::Unconfirmed { .. }), "{err:?}");
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(
        text.contains("not confirmed by the broker within 2s"),
        "{text}"
    );
    assert!(!text.contains("guest:guest"), "{text}");
    assert!(waited >= Duration::from_secs(1), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    broker.start_app().await.unwrap();
    let ok = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 1 }, SendOptions::ignore_result())
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_in_flight_fails_promptly_when_the_broker_goes_away() {
    init_logging();
    let broker = ScratchBroker::start().await.unwrap();
    let queue = unique("in-flight");
    let (ran, _runs) = mpsc::unbounded_channel();
    // The task outlasts any broker stop, however loaded the machine; at
    // the end the worker requeues it after a short grace period.
    let config = WorkerConfig {
        grace_period: Duration::from_secs(1),
        ..worker_config(&broker.url(), &queue)
    };
    let worker = TestWorker::start_with(config, reporting(ran))
        .await
        .unwrap();
    let producer = producer(&broker.url(), &queue, GUARD).await;
    let handle = producer
        .send::<Sleep>(&SleepArgs { seconds: 600.0 })
        .await
        .unwrap();
    broker.stop_app().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = handle.wait(GUARD).await.unwrap_err();
    assert!(matches!(err, CallError::ResultLost { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    broker.start_app().await.unwrap();
    // The redelivered task runs again, and new calls get their results on
    // a new reply queue.
    let sum = producer.call::<Add>(&AddArgs { x: 2, y: 2 }, GUARD).await;
    assert_eq!(sum.unwrap(), 4);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_wrong_credentials_stops_with_an_error_that_hides_the_password() {
    let broker = ScratchBroker::start().await.unwrap();
    let url = broker
        .url()
        .expose()
        .replace("guest:guest", "guest:s3cret-wrong");
    let config = worker_config(&BrokerUrl::new(url), &unique("denied"));
    let run = Worker::new(config).run(std::future::pending());
    let err = tokio::time::timeout(GUARD, run).await.unwrap().unwrap_err();
    assert!(!err.can_be_recovered());
    assert!(matches!(err, WorkerError::Connect { .. }), "{err:?}");
    let debug = format!("{err:?}");
    let text = format!("{:#} {debug}", anyhow::Error::from(err));
    assert!(!text.contains("s3cret-wrong"), "{text}");
}

/// A chord's header results wait in its results queue for the join, and a
/// broker crash in between must not drop them. Celery sends results
/// transient, which a restart discards, so a worker sends the ones for a
/// chord's results queue persistent. Here no worker takes the join until
/// the broker was killed and booted again.
#[tokio::test(flavor = "multi_thread")]
async fn a_chords_header_results_survive_a_broker_crash() {
    init_logging();
    let broker = ScratchBroker::start().await.unwrap();
    let header_queue = unique("chord-header");
    let body_queue = unique("chord-body");
    let producer = producer(&broker.url(), &header_queue, GUARD).await;
    let header: Vec<Signature> = (1..=10)
        .map(|i| Signature::named("demo.add", vec![json!(i), json!(0)], Map::new()))
        .collect();
    let body =
        Signature::named("demo.total", vec![], Map::new()).option("queue", body_queue.as_str());
    // The body's caller (this producer's reply queue) does not outlive the
    // crash; the body's run is watched instead.
    let _ = producer.chord::<i64>(header, body).await.unwrap();

    // The header runs on a worker that joins no chords. A handler reports
    // as it starts; stopping the worker waits for every task in flight,
    // so once it stopped every result is confirmed.
    let (ran, mut runs) = mpsc::unbounded_channel();
    let config = WorkerConfig {
        join_chords: false,
        ..worker_config(&broker.url(), &header_queue)
    };
    let worker = TestWorker::start_with(config, reporting(ran))
        .await
        .unwrap();
    for _ in 0..10 {
        within("a header task", runs.recv()).await.unwrap();
    }
    worker.stop().await.unwrap();

    broker.kill().await.unwrap();
    broker.boot().await.unwrap();

    let (totals, mut bodies) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Total, _, _>(move |args: TotalArgs, _ctx| {
        totals.send(args.values.clone()).unwrap();
        async move { Ok::<i64, TaskError>(args.values.iter().sum()) }
    });
    let worker = TestWorker::start_with(worker_config(&broker.url(), &body_queue), registry)
        .await
        .unwrap();
    let values = within("the chord's body", bodies.recv()).await.unwrap();
    assert_eq!(
        values,
        (1..=10).collect::<Vec<i64>>(),
        "every header result, in order"
    );
    worker.stop().await.unwrap();
}

/// Results waiting in a named reply queue (durable, classic) for a
/// replica of the service survive a broker crash: they are persistent.
#[tokio::test(flavor = "multi_thread")]
async fn results_waiting_in_a_named_reply_queue_survive_a_broker_crash() {
    init_logging();
    let broker = ScratchBroker::start().await.unwrap();
    let (queue, replies) = (unique("named-crash"), unique("service.replies"));
    let replica = || {
        let config = ProducerConfig {
            broker_url: broker.url(),
            router: Router::new(vec![], &queue),
            send_timeout: GUARD,
            ..ProducerConfig::default()
        }
        .reply_queue(&replies);
        Producer::connect(config)
    };
    // A replica sends and goes away; a worker runs the tasks. A handler
    // reports as it starts; stopping the worker waits for every task in
    // flight, so once it stopped every result is confirmed.
    let producer = replica().await.unwrap();
    let mut sent = Vec::new();
    for x in 0..10 {
        let handle = producer.send::<Add>(&AddArgs { x, y: 0 }).await.unwrap();
        sent.push(handle.id().to_owned());
    }
    drop(producer);
    let (ran, mut runs) = mpsc::unbounded_channel();
    let worker = TestWorker::start_with(worker_config(&broker.url(), &queue), reporting(ran))
        .await
        .unwrap();
    wait_for_runs(&mut runs, &sent).await;
    worker.stop().await.unwrap();
    let (connection, channel) = channel_on(&broker.url()).await.unwrap();
    assert_eq!(
        message_count(&channel, &replies).await.unwrap(),
        10,
        "the results wait"
    );
    close(&connection).await;

    broker.kill().await.unwrap();
    broker.boot().await.unwrap();

    let producer = replica().await.unwrap();
    let (listener, mut results) = record_results(&producer).await.unwrap();
    let received = result_ids(&mut results, sent.len(), "results after the crash").await;
    listener.stop().await;
    assert_eq!(received, sent.into_iter().collect::<HashSet<_>>());
}
