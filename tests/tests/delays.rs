//! Countdown and eta wait in the broker (Celery 5.5's delay topology), never
//! in worker memory: a countdown runs on time, past etas run at once, and
//! thousands of delayed tasks do not hold up a task due now.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_shared::{BrokerUrl, Router, SendOptions, TaskMessage};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, channel, channel_on, delete_queues, message_count, producer_for,
    publish_raw, unique,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use chrono::Utc;
use futures::StreamExt;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A registry whose `demo.add` reports when it runs.
fn timed_add() -> (Registry, mpsc::UnboundedReceiver<Instant>) {
    let (seen, runs) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, _ctx| {
        seen.send(Instant::now()).unwrap();
        async move { Ok::<i64, TaskError>(args.x + args.y) }
    });
    (registry, runs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_countdown_of_three_seconds_runs_after_three_seconds_and_not_much_later() {
    let queue = unique("countdown");
    let (registry, mut runs) = timed_add();
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let options = SendOptions {
        countdown: Some(Duration::from_secs(3)),
        ..SendOptions::default()
    };

    let sent = Instant::now();
    let handle = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 2 }, options)
        .await
        .unwrap();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 3);
    let waited = runs.recv().await.unwrap() - sent;
    assert!(waited >= Duration::from_secs(3), "ran early: {waited:?}");
    assert!(
        waited <= Duration::from_millis(4500),
        "ran late: {waited:?}"
    );
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eta_in_the_past_runs_at_once() {
    let queue = unique("past-eta");
    let (registry, mut runs) = timed_add();
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let eta = (Utc::now() - chrono::Duration::seconds(30)).fixed_offset();
    let options = SendOptions {
        eta: Some(eta),
        ..SendOptions::default()
    };

    let sent = Instant::now();
    let handle = producer
        .send_with::<Add>(&AddArgs { x: 2, y: 2 }, options)
        .await
        .unwrap();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 4);
    assert!(runs.recv().await.unwrap() - sent < Duration::from_secs(1));
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delay_beyond_the_ladder_is_refused_at_send_time() {
    let queue = unique("too-long");
    let producer = producer_for(&queue).await.unwrap();
    let options = SendOptions {
        countdown: Some(Duration::from_secs(1 << 28)),
        ..SendOptions::default()
    };
    let err = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 1 }, options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("268435455"), "{err}");
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_arriving_with_a_future_eta_waits_in_the_broker_not_the_worker() {
    let queue = unique("python-style-eta");
    let (registry, mut runs) = timed_add();
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    // Python Celery publishes countdown tasks straight to classic queues.
    let mut message = TaskMessage::new("demo.add", vec![json!(1), json!(1)], Default::default());
    message.headers.eta = Some((Utc::now() + chrono::Duration::seconds(2)).fixed_offset());
    let (body, properties) = message.encode(Utc::now()).unwrap();
    let sent = Instant::now();
    publish_raw(&channel, &queue, &body, properties)
        .await
        .unwrap();
    let ran = tokio::time::timeout(GUARD, runs.recv())
        .await
        .unwrap()
        .unwrap();
    let waited = ran - sent;
    assert!(
        waited >= Duration::from_millis(1900),
        "ran early: {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(3500),
        "ran late: {waited:?}"
    );
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

/// Ready messages in every level of the delay ladder of a vhost.
async fn waiting_in_ladder(url: &BrokerUrl) -> u32 {
    let (_connection, channel) = channel_on(url).await.unwrap();
    let mut total = 0;
    for level in 0..28 {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let name = format!("celery_delayed_{level}");
        let q = channel
            .queue_declare(name.as_str().into(), options, FieldTable::default())
            .await
            .unwrap();
        total += q.message_count();
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_tasks_delayed_an_hour_do_not_hold_up_a_task_due_now() {
    let vhost = Vhost::create().unwrap();
    let queue = unique("busy");
    let (registry, mut runs) = timed_add();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![queue.clone()],
        concurrency: 4,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, registry).await.unwrap();
    let producer = celeriac_producer::Producer::connect(celeriac_producer::ProducerConfig {
        broker_url: vhost.url(),
        router: Router::new(vec![], &queue),
        ..Default::default()
    })
    .await
    .unwrap();

    let later = SendOptions {
        countdown: Some(Duration::from_secs(3600)),
        ignore_result: true,
        ..SendOptions::default()
    };
    let sent = futures::stream::iter(0..10_000)
        .map(|i| {
            let (producer, options) = (producer.clone(), later.clone());
            async move {
                producer
                    .send_with::<Add>(&AddArgs { x: i, y: 0 }, options)
                    .await
            }
        })
        .buffer_unordered(500)
        .filter(|r| futures::future::ready(r.is_ok()))
        .count()
        .await;
    assert_eq!(sent, 10_000, "every delayed send was confirmed");

    let started = Instant::now();
    assert_eq!(
        producer
            .call::<Add>(&AddArgs { x: 20, y: 22 }, GUARD)
            .await
            .unwrap(),
        42
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(runs.len(), 1, "only the task due now ran");
    runs.recv().await.unwrap();
    assert_eq!(
        waiting_in_ladder(&vhost.url()).await,
        10_000,
        "the delayed tasks wait in the broker"
    );
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    assert_eq!(
        message_count(&channel, &queue).await.unwrap(),
        0,
        "the worker's queue is empty"
    );
    worker.stop().await.unwrap();
}
