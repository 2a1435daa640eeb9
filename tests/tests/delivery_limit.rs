//! A message that stalls or crashes every worker that takes it does not
//! loop forever: once delivered `delivery_limit` times it is dead-lettered
//! with reason "delivery limit" instead of running again.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_shared::{DeadLetter, DeadLetterTopology, SendOptions, Task};
use celeriac_tests::{
    GUARD, TestWorker, broker_url, channel, consume, delete_queues, next_delivery, producer_for,
    unique, within,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use tokio::sync::mpsc;

struct Stalls;

impl Task for Stalls {
    const NAME: &'static str = "test.stalls";
    type Args = ();
    type Output = ();
}

fn stalling(started: mpsc::UnboundedSender<()>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Stalls, _, _>(move |(), _ctx| {
        started.send(()).unwrap();
        std::future::pending::<Result<(), TaskError>>()
    });
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_that_never_finishes_is_dead_lettered_at_the_delivery_limit() {
    let queue = unique("poison");
    let config = WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.clone()],
        grace_period: Duration::from_millis(100),
        delivery_limit: 2,
        ..WorkerConfig::default()
    };
    let (started, mut starts) = mpsc::unbounded_channel();
    let (_connection, channel) = channel().await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let first = TestWorker::start_with(config.clone(), stalling(started.clone()))
        .await
        .unwrap();
    let dead = DeadLetterTopology::queue_name(&queue);
    let mut dead_letters = consume(&channel, &dead).await.unwrap();
    let _sent = producer
        .send_with::<Stalls>(&(), SendOptions::ignore_result())
        .await
        .unwrap();
    within("the task to start", starts.recv()).await.unwrap();
    first.stop().await.unwrap();

    let second = TestWorker::start_with(config.clone(), stalling(started.clone()))
        .await
        .unwrap();
    tokio::time::timeout(GUARD, starts.recv())
        .await
        .unwrap()
        .unwrap();
    second.stop().await.unwrap();

    let third = TestWorker::start_with(config, stalling(started))
        .await
        .unwrap();
    let letter = next_delivery(&mut dead_letters).await.unwrap();
    let why = DeadLetter::from_headers(letter.properties.headers().as_ref().unwrap()).unwrap();
    assert_eq!(why.reason, "delivery limit");
    assert!(starts.try_recv().is_err(), "it ran twice, not a third time");
    third.stop().await.unwrap();
    delete_queues(&[&queue, &dead]).await;
}
