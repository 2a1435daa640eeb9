//! A queue deleted under celeriac (by an operator, or with a broker that
//! lost its definitions) is declared again by whoever needs it next:
//!
//! - a worker whose consumed queue is deleted gets its consumer cancelled,
//!   reconnects, declares the queue again and consumes it: a task sent
//!   afterwards runs and its result comes back;
//! - a producer whose target queue, or the queue and its exchange, were
//!   deleted declares them again once and sends: the send is confirmed and
//!   the message waits in the queue declared anew.
//!
//! The claims of docs/reliability.md ("Reconnection" and the last row of
//! "What survives which fault").
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{Router, SendOptions, Topology, string_header};
use celeriac_tests::{
    GUARD, TestWorker, broker_url, channel, delete_queues, get_one, init_logging, message_count,
    producer_for, unique, wait_for_consumers, within,
};
use celeriac_worker::{Registry, TaskError};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tokio::sync::mpsc;

/// `demo.add`, reporting the id of every task it runs.
fn reporting(ran: mpsc::UnboundedSender<String>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, ctx| {
        ran.send(ctx.id().to_owned()).unwrap();
        async move { Ok::<i64, TaskError>(args.x + args.y) }
    });
    registry
}

/// Deletes `queue` as an operator would, on a connection of its own.
async fn delete_queue(queue: &str) {
    let (connection, raw) = channel().await.unwrap();
    raw.queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    celeriac_tests::close(&connection).await;
}

/// Whether `queue` exists, by a passive declare on a channel of its own
/// (a missing queue closes the channel).
async fn queue_exists(connection: &lapin::Connection, queue: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await;
    if declared.is_ok() {
        let _ = channel.close(200, "OK".into()).await;
    }
    declared.is_ok()
}

/// Sends a fire-and-forget `demo.add`, within a short send timeout so
/// that a send that cannot mend itself fails the test quickly; returns
/// the task id.
async fn send(producer: &Producer, y: i64) -> String {
    let sent = producer
        .send_with::<Add>(&AddArgs { x: 0, y }, SendOptions::ignore_result())
        .await;
    match sent {
        Ok(handle) => handle.id().to_owned(),
        Err(err) => panic!("send failed: {:#}", anyhow::Error::from(err)),
    }
}

/// A producer routing everything to `queue`, giving up on a send after
/// `SEND_TIMEOUT` instead of [`GUARD`].
async fn impatient_producer(queue: &str) -> Producer {
    let config = ProducerConfig {
        broker_url: broker_url(),
        router: Router::new(vec![], queue),
        send_timeout: SEND_TIMEOUT,
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// Long enough for a redeclaration and a retry on a loaded machine, far
/// shorter than [`GUARD`].
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes the one message in `queue` and returns its task id; fails if
/// there is another.
async fn the_only_task_in(raw: &lapin::Channel, queue: &str) -> String {
    assert_eq!(message_count(raw, queue).await.unwrap(), 1, "in {queue}");
    let message = get_one(raw, queue).await.unwrap().unwrap();
    let headers = message.delivery.properties.headers().as_ref();
    string_header(headers, "id").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_declares_its_deleted_queue_again_and_consumes_it() {
    init_logging();
    let queue = unique("deleted-under-worker");
    let (ran, mut runs) = mpsc::unbounded_channel();
    let worker = TestWorker::start(&[&queue], reporting(ran)).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let before = producer.call::<Add>(&AddArgs { x: 1, y: 2 }, GUARD).await;
    assert_eq!(before.unwrap(), 3);
    within("the first run reported", runs.recv()).await.unwrap();

    delete_queue(&queue).await;
    // Only the worker can bring the queue back: the producer sends
    // nothing until it is there again, with a consumer.
    wait_for_consumers(&broker_url(), std::slice::from_ref(&queue))
        .await
        .unwrap();

    let handle = producer
        .send::<Add>(&AddArgs { x: 20, y: 22 })
        .await
        .unwrap();
    let id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 42);
    assert_eq!(within("the run reported", runs.recv()).await.unwrap(), id);
    // The dead-letter queue was declared again too.
    let (connection, raw) = channel().await.unwrap();
    assert_eq!(
        message_count(&raw, &format!("{queue}.dead")).await.unwrap(),
        0
    );
    celeriac_tests::close(&connection).await;
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_declares_its_deleted_queue_again_and_the_send_lands_there() {
    init_logging();
    let queue = unique("deleted-under-producer");
    let producer = impatient_producer(&queue).await;
    let (connection, raw) = channel().await.unwrap();
    let first = send(&producer, 1).await;
    assert_eq!(the_only_task_in(&raw, &queue).await, first);

    delete_queue(&queue).await;
    assert!(!queue_exists(&connection, &queue).await);
    let second = within("the send after the deletion", send(&producer, 2)).await;
    assert_eq!(
        the_only_task_in(&raw, &queue).await,
        second,
        "the send landed in the queue declared again"
    );

    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
}

/// Sends through a producer, deletes the exchange it routes through (and
/// the queue too, with `with_queue`), sends again: the second send lands
/// in the queue, bound again to its exchange.
async fn exchange_deleted_under_a_producer(label: &str, with_queue: bool) {
    init_logging();
    let queue = unique(label);
    let exchange = Topology::default().queue_def(&queue).destination().exchange;
    assert!(!exchange.is_empty(), "the producer routes via an exchange");
    let producer = impatient_producer(&queue).await;
    let (connection, raw) = channel().await.unwrap();
    let first = send(&producer, 1).await;
    assert_eq!(the_only_task_in(&raw, &queue).await, first);

    if with_queue {
        delete_queue(&queue).await;
    }
    // Without the queue deleted, its binding goes with the exchange.
    raw.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let second = within("the send after the deletions", send(&producer, 2)).await;
    assert_eq!(
        the_only_task_in(&raw, &queue).await,
        second,
        "the send landed in the queue, bound again to its exchange"
    );

    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
    let (connection, raw) = channel().await.unwrap();
    let _ = raw
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
    celeriac_tests::close(&connection).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_declares_its_deleted_exchange_and_queue_again_and_the_send_lands() {
    exchange_deleted_under_a_producer("exchange-deleted-under-producer", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_declares_its_deleted_exchange_again_and_the_send_lands() {
    exchange_deleted_under_a_producer("only-exchange-deleted-under-producer", false).await;
}
