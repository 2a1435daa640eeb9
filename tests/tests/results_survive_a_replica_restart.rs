//! Results over a named reply queue, shared by a service's replicas: a
//! replica that dies with tasks in flight loses none of their results
//! (another replica's handler receives every one), a result is acked only
//! after the handler returned (a handler that fails gets it again), and a
//! handle waiting on the replica that receives its result still gets it.
//! A replica killed while its handler holds results hands them, and those
//! it prefetched, to the next replica.
//!
//! Each test runs in a vhost of its own. Needs RabbitMQ and `rabbitmqctl`;
//! run with
//! `cargo test -p celeriac-tests --test results_survive_a_replica_restart`.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, QueueType, ResultMessage, Router, Task, TaskState};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, channel_on, close_connections_named, init_logging, message_count,
    record_results, result_ids, unique, within,
};
use celeriac_worker::{Registry, TaskContext, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// A task that waits for the test to open its gate, then returns its
/// number: its results come back exactly when the test wants them to.
struct Gated;

/// Which task of a batch.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
}

impl Task for Gated {
    const NAME: &'static str = "named_replies.gated";
    type Args = Job;
    type Output = u32;
}

/// A worker on `queue` whose [`Gated`] tasks finish once `gate` is true.
async fn gated_worker(url: &BrokerUrl, queue: &str, gate: watch::Receiver<bool>) -> TestWorker {
    let mut registry = Registry::new();
    registry.register::<Gated, _, _>(move |job: Job, _ctx: TaskContext| {
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            Ok(job.n)
        }
    });
    let config = WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency: 32,
        ..WorkerConfig::default()
    };
    TestWorker::start_with(config, registry).await.unwrap()
}

/// A replica: a producer sending to `queue`, its results to the named
/// reply queue `replies`, its connection named `connection` (so a test
/// can close it as if the process died).
async fn replica(url: &BrokerUrl, queue: &str, replies: &str, connection: &str) -> Producer {
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(vec![], queue),
        connection_name: connection.to_owned(),
        ..ProducerConfig::default()
    }
    .reply_queue(replies);
    Producer::connect(config).await.unwrap()
}

/// Sends `count` gated tasks; returns their ids.
async fn send_batch(producer: &Producer, count: u32) -> HashSet<String> {
    let mut ids = HashSet::new();
    for n in 0..count {
        let handle = producer.send::<Gated>(&Job { n }).await.unwrap();
        ids.insert(handle.id().to_owned());
    }
    ids
}

/// Waits (polling the broker, up to [`GUARD`]) until `queue` holds
/// `count` ready messages.
async fn wait_for_ready(url: &BrokerUrl, queue: &str, count: u32) {
    let (connection, channel) = channel_on(url).await.unwrap();
    within("results waiting in the named reply queue", async {
        while message_count(&channel, queue).await.unwrap() < count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    celeriac_tests::close(&connection).await;
}

async fn ready_count(url: &BrokerUrl, queue: &str) -> u32 {
    let (connection, channel) = channel_on(url).await.unwrap();
    let count = message_count(&channel, queue).await.unwrap();
    celeriac_tests::close(&connection).await;
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_dies_with_tasks_in_flight_loses_none_of_their_results() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let (queue, replies) = (unique("named-replies"), unique("service.replies"));
    let (open, gate) = watch::channel(false);
    let worker = gated_worker(&url, &queue, gate).await;

    // Replica A sends, listens, and dies before any result is back.
    let a_name = unique("replica-a");
    let a = replica(&url, &queue, &replies, &a_name).await;
    let (a_listener, mut a_results) = record_results(&a).await.unwrap();
    let sent = send_batch(&a, 20).await;
    drop(a_listener);
    drop(a);
    close_connections_named(&a_name).unwrap();
    assert!(
        a_results.try_recv().is_err(),
        "A got a result before it died"
    );

    // The tasks finish while no replica is up: their results wait.
    open.send(true).unwrap();
    wait_for_ready(&url, &replies, 20).await;

    // Replica B, a new process on the same named queue, gets every one.
    let b = replica(&url, &queue, &replies, &unique("replica-b")).await;
    let (b_listener, mut b_results) = record_results(&b).await.unwrap();
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let result = within("B's handler receiving results", b_results.recv()).await;
        let result = result.unwrap();
        assert_eq!(result.status, TaskState::Success);
        received.push(result.task_id);
    }
    b_listener.stop().await;
    let distinct: HashSet<String> = received.iter().cloned().collect();
    assert_eq!(distinct, sent, "exactly the tasks A sent");
    assert_eq!(received.len(), sent.len(), "each result once: {received:?}");
    assert!(b_results.try_recv().is_err(), "no result beyond those sent");
    assert_eq!(ready_count(&url, &replies).await, 0, "every result acked");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn results_held_by_a_replica_that_dies_mid_handler_go_to_another_replica() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let (queue, replies) = (unique("named-replies"), unique("service.replies"));
    let (_open, gate) = watch::channel(true);
    let worker = gated_worker(&url, &queue, gate).await;

    // A's handler never returns: A holds its results unacked when it dies.
    let a_name = unique("replica-a");
    let a = replica(&url, &queue, &replies, &a_name).await;
    let (entered, mut a_entered) = mpsc::unbounded_channel();
    let a_listener = a
        .on_result(move |result: ResultMessage| {
            let _ = entered.send(result.task_id);
            std::future::pending::<Result<(), std::io::Error>>()
        })
        .await
        .unwrap();
    let sent = send_batch(&a, 10).await;
    let stuck = within("A's handler entered", a_entered.recv())
        .await
        .unwrap();
    assert!(sent.contains(&stuck));
    drop(a_listener);
    drop(a);
    close_connections_named(&a_name).unwrap();

    let b = replica(&url, &queue, &replies, &unique("replica-b")).await;
    let (b_listener, mut b_results) = record_results(&b).await.unwrap();
    let received = result_ids(&mut b_results, sent.len(), "B's handler receiving results").await;
    b_listener.stop().await;
    assert_eq!(received, sent, "every result, the one A was handling too");
    assert_eq!(ready_count(&url, &replies).await, 0, "every result acked");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_named_reply_queue_carries_results_too() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let (queue, replies) = (unique("named-replies"), unique("service.replies"));
    let (_open, gate) = watch::channel(true);
    let worker = gated_worker(&url, &queue, gate).await;
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(vec![], &queue),
        reply_queue_type: QueueType::Quorum,
        ..ProducerConfig::default()
    }
    .reply_queue(&replies);
    let producer = Producer::connect(config).await.unwrap();
    let (listener, mut results) = record_results(&producer).await.unwrap();
    let sent = send_batch(&producer, 3).await;
    let received = result_ids(&mut results, sent.len(), "results").await;
    listener.stop().await;
    assert_eq!(received, sent);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_whose_handler_failed_comes_back_and_is_acked_only_once_handled() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let (queue, replies) = (unique("named-replies"), unique("service.replies"));
    let (_open, gate) = watch::channel(true);
    let worker = gated_worker(&url, &queue, gate).await;
    let producer = replica(&url, &queue, &replies, &unique("replica")).await;

    // The handler fails the first time it sees each task.
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (handled, mut handled_ids) = mpsc::unbounded_channel();
    let counted = Arc::clone(&calls);
    let listener = producer
        .on_result(move |result: ResultMessage| {
            let (calls, handled) = (Arc::clone(&counted), handled.clone());
            async move {
                let call = {
                    let mut calls = calls.lock().unwrap();
                    let call = calls.entry(result.task_id.clone()).or_default();
                    *call += 1;
                    *call
                };
                if call == 1 {
                    return Err(std::io::Error::other("the database is away"));
                }
                let _ = handled.send(result.task_id);
                Ok(())
            }
        })
        .await
        .unwrap();
    let sent = send_batch(&producer, 5).await;
    let mut received = HashSet::new();
    while received.len() < sent.len() {
        let id = within("results handled", handled_ids.recv()).await.unwrap();
        assert!(received.insert(id), "a handled result came again");
    }
    listener.stop().await;
    assert_eq!(received, sent);
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.values().all(|n| *n == 2),
        "failed once, then handled: {calls:?}"
    );
    assert_eq!(ready_count(&url, &replies).await, 0, "every result acked");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handle_waiting_on_the_replica_that_receives_the_result_gets_it_too() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let (queue, replies) = (unique("named-replies"), unique("service.replies"));
    let (_open, gate) = watch::channel(true);
    let worker = gated_worker(&url, &queue, gate).await;
    let producer = replica(&url, &queue, &replies, &unique("replica")).await;
    let (listener, mut results) = record_results(&producer).await.unwrap();

    let handle = producer.send::<Gated>(&Job { n: 7 }).await.unwrap();
    let id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 7);
    let result = within("the handler's copy", results.recv()).await.unwrap();
    assert_eq!(result.task_id, id);
    listener.stop().await;
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn listening_needs_a_named_reply_queue() {
    let producer = celeriac_tests::producer().await.unwrap();
    let listening = producer
        .on_result(|_result: ResultMessage| async { Ok::<_, std::io::Error>(()) })
        .await;
    assert!(matches!(
        listening,
        Err(celeriac_producer::Error::NoNamedReplyQueue)
    ));
}
