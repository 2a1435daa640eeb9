//! Connections lost without a clean AMQP close, through a TCP [`Proxy`]
//! between the clients and the broker: reset (`RST`, as when a peer
//! crashes or a firewall rejects the flow), or blackholed (nothing flows
//! any more but the sockets stay open, as when a cable is pulled), which
//! only AMQP heartbeats detect: the URL asks for one every 2 s
//! (`?heartbeat=2`), and the broker's default of 60 s would not be noticed
//! within the test's guards.
//!
//! Either way, the tasks a worker was running are redelivered and run
//! again, a task sent after the fault is confirmed and its result comes
//! back, and nothing is lost: docs/reliability.md, "network drop between
//! client and broker" and "When a task runs twice".
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, Router, SendOptions};
use celeriac_tests::{
    GUARD, Proxy, TestWorker, channel, delete_queues, init_logging, message_count, unique, within,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use tokio::sync::mpsc;

/// The heartbeat asked for in the URL, in seconds: a blackholed
/// connection is noticed by both sides within about twice that.
const HEARTBEAT: u16 = 2;

/// `demo.add` with this `x` holds its first delivery forever: it is in
/// flight when the connection goes.
const HOLD: i64 = 1_000;

/// One run of `demo.add`.
#[derive(Debug)]
struct Run {
    id: String,
    redelivered: bool,
}

/// `demo.add`, reporting every run; a first delivery with `x` = [`HOLD`]
/// never finishes (until the worker abandons it).
fn registry(runs: mpsc::UnboundedSender<Run>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, ctx| {
        let redelivered = ctx.redelivered();
        runs.send(Run {
            id: ctx.id().to_owned(),
            redelivered,
        })
        .unwrap();
        async move {
            if args.x == HOLD && !redelivered {
                std::future::pending::<()>().await;
            }
            Ok::<i64, TaskError>(args.x + args.y)
        }
    });
    registry
}

/// Receives runs until each of `ids` ran with `redelivered` as given;
/// ignores the others.
async fn wait_for_runs(
    runs: &mut mpsc::UnboundedReceiver<Run>,
    ids: &HashSet<String>,
    redelivered: bool,
) {
    let mut missing = ids.clone();
    let what = format!("{} runs with redelivered = {redelivered}", ids.len());
    within(&what, async {
        while !missing.is_empty() {
            let run = runs.recv().await.unwrap();
            if run.redelivered == redelivered {
                missing.remove(&run.id);
            }
        }
    })
    .await;
}

/// A worker and a producer connected through the proxy, `in_flight`
/// tasks held by the worker, then `fault`: the held tasks run again, a
/// call made right after the fault returns its result, and the queue ends
/// empty.
async fn in_flight_tasks_survive(name: &str, fault: impl FnOnce(&Proxy) -> usize) {
    init_logging();
    let proxy = Proxy::start().await.unwrap();
    let url = proxy.url_with_heartbeat(HEARTBEAT);
    let queue = unique(name);
    let (runs_tx, mut runs) = mpsc::unbounded_channel();
    let config = WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.clone()],
        concurrency: 8,
        grace_period: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, registry(runs_tx))
        .await
        .unwrap();
    let producer = producer(&url, &queue).await;

    let mut in_flight = HashSet::new();
    for y in 0..3 {
        let handle = producer
            .send_with::<Add>(&AddArgs { x: HOLD, y }, SendOptions::ignore_result())
            .await
            .unwrap();
        in_flight.insert(handle.id().to_owned());
    }
    wait_for_runs(&mut runs, &in_flight, false).await;

    let faulty = fault(&proxy);
    assert!(
        faulty >= 2,
        "the worker's and the producer's connections: {faulty}"
    );
    let started = tokio::time::Instant::now();
    let call = tokio::spawn({
        let producer = producer.clone();
        async move { producer.call::<Add>(&AddArgs { x: 20, y: 22 }, GUARD).await }
    });
    wait_for_runs(&mut runs, &in_flight, true).await;
    let sum = within("the call made after the fault", call).await.unwrap();
    assert_eq!(sum.unwrap(), 42, "confirmed, run, and its result back");
    let recovered = started.elapsed();
    assert!(
        recovered < Duration::from_secs(20),
        "recovered in {recovered:?}"
    );

    worker.stop().await.unwrap();
    let (connection, raw) = channel().await.unwrap();
    assert_eq!(message_count(&raw, &queue).await.unwrap(), 0, "all acked");
    let dead = format!("{queue}.dead");
    assert_eq!(message_count(&raw, &dead).await.unwrap(), 0, "none failed");
    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
}

async fn producer(url: &BrokerUrl, queue: &str) -> Producer {
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(vec![], queue),
        send_timeout: GUARD,
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_in_flight_run_again_after_the_connections_are_reset() {
    in_flight_tasks_survive("severed", Proxy::sever).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_in_flight_run_again_after_the_connections_go_silent() {
    in_flight_tasks_survive("blackholed", Proxy::blackhole).await;
}
