//! celeriac through its public API: a `Producer` and a `Worker`.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, QueueType, SendOptions, Signature, Task, Topology};
use celeriac_worker::{Registry, TaskContext, TaskError, Worker, WorkerConfig};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, json};

use crate::fixture::{GUARD, Incr, Noop, NoopArgs, Total, TotalArgs, chord_total, noop_args};

/// A producer with default settings, but `channels` confirm-mode channels
/// if given, declaring queues of `queue_type`.
pub(crate) async fn producer(
    url: &BrokerUrl,
    channels: Option<usize>,
    queue_type: QueueType,
) -> anyhow::Result<Producer> {
    let defaults = ProducerConfig::default();
    let config = ProducerConfig {
        broker_url: url.clone(),
        channels: channels.unwrap_or(defaults.channels),
        topology: Topology::new(vec![]).default_queue_type(queue_type),
        ..defaults
    };
    Producer::connect(config)
        .await
        .context("connecting the producer")
}

/// Sends `n` fire-and-forget `bench.noop` tasks to `queue`, `in_flight` at
/// a time, each due after `countdown` if given; returns once every one was
/// confirmed.
///
/// The first sends to a queue the producer has not used yet also declare
/// it; see [`warm_up`].
pub(crate) async fn publish(
    producer: &Producer,
    queue: &str,
    (n, in_flight): (u64, usize),
    countdown: Option<Duration>,
) -> anyhow::Result<()> {
    let args = noop_args();
    let options = SendOptions {
        queue: Some(queue.to_owned()),
        countdown,
        ..SendOptions::ignore_result()
    };
    futures::stream::iter(0..n)
        .map(|_| producer.send_with::<Noop>(&args, options.clone()))
        .buffer_unordered(in_flight.max(1))
        .try_for_each(|_handle| async { Ok(()) })
        .await
        .context("send failed")
}

/// Sends one task to `queue`, so that the producer has declared it
/// before a timed run (`--warm-producer`).
pub(crate) async fn warm_up(producer: &Producer, queue: &str) -> anyhow::Result<()> {
    let options = SendOptions {
        queue: Some(queue.to_owned()),
        ..SendOptions::ignore_result()
    };
    drop(producer.send_with::<Noop>(&noop_args(), options).await?);
    Ok(())
}

/// How the celeriac worker process runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerSettings {
    /// Tasks at once.
    pub(crate) concurrency: usize,
    /// Unacknowledged deliveries per consumer.
    pub(crate) prefetch: u16,
    /// Whether it sends Celery task events from the start.
    pub(crate) task_events: bool,
    /// The type of the queues it declares.
    pub(crate) queue_type: QueueType,
}

/// Runs a worker with `bench.noop`, `bench.incr` and `bench.total`
/// handlers on `queue` until `shutdown`. Like every worker by default
/// (`join_chords`), it also consumes the chord queue and joins chords.
pub(crate) async fn run_worker(
    url: &BrokerUrl,
    queue: &str,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut registry = Registry::new();
    registry.register::<Noop, _, _>(noop);
    registry.register::<Incr, _, _>(incr);
    registry.register::<Total, _, _>(total);
    let config = WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency: settings.concurrency,
        prefetch: Some(settings.prefetch),
        task_events: settings.task_events,
        topology: Topology::new(vec![]).default_queue_type(settings.queue_type),
        ..WorkerConfig::default()
    };
    Worker::with_registry(config, registry)
        .run(shutdown)
        .await
        .context("worker failed")
}

async fn noop(_args: NoopArgs, _ctx: TaskContext) -> Result<(), TaskError> {
    Ok(())
}

async fn incr(n: i64, _ctx: TaskContext) -> Result<i64, TaskError> {
    n.checked_add(1)
        .ok_or_else(|| TaskError::reject("the increment overflows"))
}

async fn total(args: TotalArgs, _ctx: TaskContext) -> Result<i64, TaskError> {
    args.values
        .into_iter()
        .try_fold(0i64, i64::checked_add)
        .ok_or_else(|| TaskError::reject("the total overflows"))
}

/// Makes `warmup + calls` sequential calls of `bench.noop` on `queue`
/// (send, confirmed, then wait for the result) and returns the latencies
/// of the last `calls`.
pub(crate) async fn round_trips(
    producer: &Producer,
    queue: &str,
    (warmup, calls): (usize, usize),
) -> anyhow::Result<Vec<Duration>> {
    let args = noop_args();
    let mut latencies = Vec::with_capacity(calls);
    for call in 0..warmup + calls {
        let start = Instant::now();
        producer
            .send_with::<Noop>(&args, SendOptions::queue(queue))
            .await?
            .wait(GUARD)
            .await?;
        if call >= warmup {
            latencies.push(start.elapsed());
        }
    }
    Ok(latencies)
}

/// A `bench.incr` call on `queue`: `bench.incr(first)` if given, else a
/// chain step that gets its parent's result.
fn incr_on(queue: &str, first: Option<i64>) -> Signature {
    let args = first.map(|n| vec![json!(n)]).unwrap_or_default();
    Signature::named(Incr::NAME, args, Map::new()).option("queue", queue)
}

/// Sends `warmup + chains` chains of `steps` `bench.incr` calls on
/// `queue`, one after another, each waited for; returns the latencies of
/// the last `chains` whole chains.
pub(crate) async fn chains(
    producer: &Producer,
    queue: &str,
    (warmup, chains): (usize, usize),
    steps: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(chains);
    for chain in 0..warmup + chains {
        let signatures = std::iter::once(incr_on(queue, Some(0)))
            .chain((1..steps).map(|_| incr_on(queue, None)))
            .collect();
        let start = Instant::now();
        let result = producer.chain::<i64>(signatures).await?.wait(GUARD).await?;
        let elapsed = start.elapsed();
        ensure!(
            result == steps as i64,
            "a chain of {steps} returned {result}"
        );
        if chain >= warmup {
            latencies.push(elapsed);
        }
    }
    Ok(latencies)
}

/// Sends one chord of `size` `bench.incr(i)` tasks with `bench.total` as
/// its body, all on `queue`, after one untimed call (the worker is up and
/// the producer knows the queue); returns the time from the first send to
/// the body's result.
pub(crate) async fn chord(
    producer: &Producer,
    queue: &str,
    size: usize,
) -> anyhow::Result<Duration> {
    producer
        .send_with::<Incr>(&0, SendOptions::queue(queue))
        .await?
        .wait(GUARD)
        .await?;
    let header = (0..size).map(|i| incr_on(queue, Some(i as i64))).collect();
    let body = Signature::named(Total::NAME, Vec::new(), Map::new()).option("queue", queue);
    let start = Instant::now();
    let result = producer
        .chord::<i64>(header, body)
        .await?
        .wait(GUARD)
        .await?;
    let elapsed = start.elapsed();
    let expected = chord_total(size);
    ensure!(
        result == expected,
        "a chord of {size} summed to {result}, not {expected}"
    );
    Ok(elapsed)
}
