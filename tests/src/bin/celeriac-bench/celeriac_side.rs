//! celeriac through its public API: a `Producer` and a `Worker`.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, SendOptions};
use celeriac_worker::{Registry, TaskContext, TaskError, Worker, WorkerConfig};
use futures::{StreamExt, TryStreamExt};

use crate::fixture::{GUARD, Noop, NoopArgs, noop_args};

/// A producer with default settings, but `channels` confirm-mode channels
/// if given.
pub(crate) async fn producer(url: &BrokerUrl, channels: Option<usize>) -> anyhow::Result<Producer> {
    let defaults = ProducerConfig::default();
    let config = ProducerConfig {
        broker_url: url.clone(),
        channels: channels.unwrap_or(defaults.channels),
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

/// Runs a worker with a `bench.noop` handler on `queue` until `shutdown`.
pub(crate) async fn run_worker(
    url: &BrokerUrl,
    queue: &str,
    concurrency: usize,
    prefetch: u16,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut registry = Registry::new();
    registry.register::<Noop, _, _>(noop);
    let config = WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency,
        prefetch: Some(prefetch),
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
