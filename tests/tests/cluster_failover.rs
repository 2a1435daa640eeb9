//! A cluster node killed under a worker and a producer: on the 3-node
//! cluster of `scripts/cluster`, with quorum queues and all three
//! addresses, SIGKILLing the node both are connected to, while tasks run,
//! loses no confirmed task. The worker reconnects to another node and
//! runs every task sent before the kill (those it was running again); a
//! send after the kill is confirmed once the producer reconnected and
//! runs, and a call after that gets its result back.
//!
//! And results on a named quorum reply queue: SIGKILLing the node that
//! leads it, and with it the service replica connected there, while the
//! replica's tasks run, loses none of their results; a replica on another
//! node receives every one.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use std::collections::HashSet;
use std::time::Duration;

use celeriac_producer::{Producer, ProducerConfig, ResultListener};
use celeriac_shared::{
    BrokerUrl, QueueType, ResultMessage, Router, SendOptions, Task, TaskState, Topology,
};
use celeriac_tests::{
    Cluster, GUARD, TestWorker, init_logging_with, record_results, unique, within,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use tokio::sync::{mpsc, watch};

/// Tasks sent before the kill, after the first call: [`QUICK`] that run
/// at once, the rest held until after the kill.
const BEFORE: u32 = 20;

/// Tasks of [`BEFORE`] that run at once. The others (5) are fewer than the
/// worker's concurrency, so they cannot keep the quick ones waiting.
const QUICK: u32 = 15;

/// The worker's concurrency.
const CONCURRENCY: usize = 8;

/// How long the worker may take to run again after its node was killed.
/// Every quorum queue the node led (here all of them: every client
/// connected to node 1 first and declared them there) elects a new
/// leader, and the worker declares its topology again (the 28 queues of
/// the delay ladder among them) before it consumes; with three nodes
/// and the tests on two cores, that once took more than [`GUARD`].
const FAILOVER_GUARD: Duration = Duration::from_secs(90);

/// The tests' log filter: the worker's and the producer's own lines
/// (reconnections, refused publishes) show when a test fails.
const LOG: &str =
    "error,lapin::channel=off,celeriac_worker=info,celeriac_producer=info,celeriac_shared=info";

/// Returns its number; `(number, hold)`: a held run waits for the gate.
struct Step;

impl Task for Step {
    const NAME: &'static str = "test.failover.step";
    type Args = (u32, bool);
    type Output = u32;
}

/// What the worker's handler reports.
enum Event {
    /// A held task started and waits for the gate.
    Held,
    /// The task with this id ran to its end.
    Ran(String),
}

/// `test.failover.step`, reporting to `events`; held runs wait until
/// `gate` is open.
fn stepping(events: mpsc::UnboundedSender<Event>, gate: watch::Receiver<bool>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Step, _, _>(move |(number, hold), ctx| {
        let events = events.clone();
        let mut gate = gate.clone();
        async move {
            if hold {
                let _ = events.send(Event::Held);
                let _ = gate.wait_for(|open| *open).await;
            }
            let _ = events.send(Event::Ran(ctx.id().to_owned()));
            Ok::<u32, TaskError>(number)
        }
    });
    registry
}

/// Runs per task id, counted from the events.
#[derive(Default)]
struct Ledger {
    runs: HashMap<String, usize>,
    held: usize,
}

impl Ledger {
    /// Counts `events` until `done` holds, failing after [`GUARD`].
    async fn until(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        self.until_within(GUARD, events, what, done).await;
    }

    /// As [`Ledger::until`], failing after `guard` with what was counted.
    async fn until_within(
        &mut self,
        guard: Duration,
        events: &mut mpsc::UnboundedReceiver<Event>,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        let counted = tokio::time::timeout(guard, async {
            while !done(self) {
                match events.recv().await.unwrap() {
                    Event::Held => self.held += 1,
                    Event::Ran(id) => *self.runs.entry(id).or_default() += 1,
                }
            }
        })
        .await;
        if counted.is_err() {
            panic!(
                "{what}: not within {guard:?}; {} held runs started, runs per task: {:?}",
                self.held, self.runs
            );
        }
    }

    fn ran_all(&self, ids: &[String]) -> bool {
        ids.iter().all(|id| self.runs.contains_key(id))
    }
}

fn quorum() -> Topology {
    Topology::new(vec![]).default_queue_type(QueueType::Quorum)
}

fn config(url: BrokerUrl, queue: &str, name: &str) -> ProducerConfig {
    ProducerConfig {
        broker_url: url,
        router: Router::new(vec![], queue),
        topology: quorum(),
        send_timeout: GUARD,
        connection_name: name.to_owned(),
        ..ProducerConfig::default()
    }
}

async fn producer(cluster: &Cluster, queue: &str, name: &str) -> Producer {
    Producer::connect(config(cluster.url(), queue, name))
        .await
        .unwrap()
}

/// A service replica at `url`: its results go to the named quorum reply
/// queue `replies`, where its listener hands them to the returned channel.
async fn replica(
    url: BrokerUrl,
    (queue, replies): (&str, &str),
    name: &str,
) -> (
    Producer,
    ResultListener,
    mpsc::UnboundedReceiver<ResultMessage>,
) {
    let config = ProducerConfig {
        reply_queue_type: QueueType::Quorum,
        ..config(url, queue, name)
    }
    .reply_queue(replies);
    let producer = Producer::connect(config).await.unwrap();
    let (listener, results) = record_results(&producer).await.unwrap();
    (producer, listener, results)
}

/// A worker at `url` consuming `queue` with [`stepping`] handlers, its
/// connection named `name`; its events, and the gate its held tasks
/// wait for.
async fn stepping_worker(
    url: BrokerUrl,
    queue: &str,
    name: &str,
    concurrency: usize,
) -> (
    TestWorker,
    mpsc::UnboundedReceiver<Event>,
    watch::Sender<bool>,
) {
    let (events, received) = mpsc::unbounded_channel();
    let (gate, closed) = watch::channel(false);
    let config = WorkerConfig {
        broker_url: url,
        queues: vec![queue.to_owned()],
        concurrency,
        topology: quorum(),
        connection_name: name.to_owned(),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, stepping(events, closed))
        .await
        .unwrap();
    (worker, received, gate)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_node_a_worker_and_a_producer_use_loses_no_confirmed_task() {
    init_logging_with(LOG);
    let mut cluster = Cluster::start().await.unwrap();
    let queue = unique("failover");
    let worker_name = unique("failover-worker");
    let producer_name = unique("failover-producer");
    let (worker, mut received, gate) =
        stepping_worker(cluster.url(), &queue, &worker_name, CONCURRENCY).await;
    let producer = producer(&cluster, &queue, &producer_name).await;

    let first = producer.send::<Step>(&(1, false)).await.unwrap();
    let mut sent = vec![first.id().to_owned()];
    assert_eq!(first.wait(GUARD).await.unwrap(), 1);
    for number in 0..BEFORE {
        let args = (number, number >= QUICK);
        let handle = producer.send_with::<Step>(&args, SendOptions::ignore_result());
        sent.push(handle.await.unwrap().id().to_owned());
    }
    let mut ledger = Ledger::default();
    let held = (BEFORE - QUICK) as usize;
    let quick = 1 + QUICK as usize;
    ledger
        .until(
            &mut received,
            "the quick tasks, and the held ones running",
            |l| l.runs.len() == quick && l.held == held,
        )
        .await;

    // Both lists start at node 1, so both connected there.
    let nodes = cluster.nodes_of(&worker_name).unwrap();
    assert_eq!(nodes.len(), 1, "the worker's connections: {nodes:?}");
    let node = nodes[0];
    assert_eq!(cluster.nodes_of(&producer_name).unwrap(), vec![node]);
    cluster.kill(node).await.unwrap();
    gate.send(true).unwrap();

    // Confirmed once the producer reconnected to another node (and the
    // queue, if it was led from the killed node, elected a new leader:
    // until then it nacks, and the producer sends again), and run by the
    // worker, which reconnected too. Its result is not waited for: a send
    // racing the loss of the connection may still name the reply queue
    // that died with it (docs/reliability.md, "What does not survive").
    let after = producer.send_with::<Step>(&(100, false), SendOptions::ignore_result());
    sent.push(after.await.unwrap().id().to_owned());

    // The tasks running at the kill finish on a dead channel, so their
    // acks are lost and the queue delivers them again.
    ledger
        .until_within(
            FAILOVER_GUARD,
            &mut received,
            "every task sent, and the tasks running at the kill again",
            |l| l.ran_all(&sent) && l.held >= 2 * held,
        )
        .await;
    let moved = cluster.nodes_of(&worker_name).unwrap();
    assert!(
        moved.len() == 1 && moved[0] != node,
        "the worker's connections after node {node} was killed: {moved:?}"
    );
    // Results flow again, over a reply queue on the producer's new node.
    let call = producer.call::<Step>(&(101, false), GUARD).await;
    assert_eq!(call.unwrap(), 101);
    let runs: usize = sent.iter().map(|id| ledger.runs[id]).sum();
    eprintln!(
        "node {node} killed: {} tasks confirmed, all ran; {} extra runs",
        sent.len(),
        runs - sent.len()
    );
    let stopped = worker.stop().await;
    assert!(stopped.is_ok(), "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_of_a_named_reply_queue_and_a_replica_on_it_loses_no_result() {
    init_logging_with(LOG);
    let mut cluster = Cluster::start().await.unwrap();
    let queue = unique("failover-replies");
    let replies = unique("failover.service.replies");
    let worker_name = unique("failover-replies-worker");
    // On node 2, which survives; concurrency above BEFORE, so that every
    // task is running when the node goes.
    let concurrency = 2 * BEFORE as usize;
    let (worker, mut received, gate) =
        stepping_worker(cluster.url_from(2), &queue, &worker_name, concurrency).await;

    // Replica A knows node 1 only, so it dies with it; it declares the
    // reply queue first, so node 1 leads it. Replica B is on node 3.
    let (a, a_listener, mut a_results) = replica(
        cluster.node_url(1),
        (&queue, &replies),
        &unique("replica-a"),
    )
    .await;
    assert_eq!(cluster.leader_of(&replies).unwrap(), 1);
    let (_b, b_listener, mut b_results) = replica(
        cluster.url_from(3),
        (&queue, &replies),
        &unique("replica-b"),
    )
    .await;
    let mut sent = HashSet::new();
    for number in 0..BEFORE {
        let handle = a.send::<Step>(&(number, true)).await.unwrap();
        sent.insert(handle.id().to_owned());
    }
    let mut ledger = Ledger::default();
    let every = BEFORE as usize;
    ledger
        .until(&mut received, "every task running", |l| l.held == every)
        .await;
    assert_eq!(cluster.nodes_of(&worker_name).unwrap(), vec![2]);

    cluster.kill(1).await.unwrap();
    drop((a_listener, a));
    gate.send(true).unwrap();

    // Each result once at least: a result published while the reply
    // queue elects its new leader may be refused, and its task requeued
    // and run again.
    let mut results = HashSet::new();
    while results.len() < sent.len() {
        let result = within("B receiving every result", b_results.recv()).await;
        let result = result.unwrap();
        assert_eq!(result.status, TaskState::Success, "{result:?}");
        assert!(sent.contains(&result.task_id), "{result:?}");
        results.insert(result.task_id);
    }
    let moved = cluster.leader_of(&replies).unwrap();
    assert_ne!(moved, 1, "the reply queue's leader after node 1 was killed");
    assert!(
        a_results.try_recv().is_err(),
        "A got a result before it died"
    );
    b_listener.stop().await;
    let stopped = worker.stop().await;
    assert!(stopped.is_ok(), "{stopped:?}");
}
