//! What every system works on: the no-op task, its encoded message, the
//! two tasks of the workflow measurements, the broker-side view of the
//! queues a run uses, and a monitor of task events.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use celeriac_shared::{
    BrokerUrl, DeadLetterTopology, EVENT_EXCHANGE, QueueType, SendOptions, Task, TaskMessage,
    Topology, declare_event_exchange, encode_arguments,
};
use chrono::Utc;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};

/// The task every system runs: `bench.noop(payload)`, which does nothing.
pub(crate) struct Noop;

/// Arguments of [`Noop`]: a small payload, so messages have a realistic
/// size without measuring JSON throughput.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NoopArgs {
    /// [`PAYLOAD_BYTES`] ASCII characters.
    pub(crate) payload: String,
}

impl Task for Noop {
    const NAME: &'static str = "bench.noop";
    type Args = NoopArgs;
    type Output = ();
}

/// `bench.incr(n)`: `n + 1`, the step of a chain and a chord's header
/// task.
pub(crate) struct Incr;

impl Task for Incr {
    const NAME: &'static str = "bench.incr";
    type Args = i64;
    type Output = i64;
}

/// `bench.total(values)`: their sum, a chord's body.
pub(crate) struct Total;

/// Arguments of [`Total`]: the chord's header results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TotalArgs {
    /// The integers to add up.
    pub(crate) values: Vec<i64>,
}

impl Task for Total {
    const NAME: &'static str = "bench.total";
    type Args = TotalArgs;
    type Output = i64;
}

/// What a chord of `size` `bench.incr(i)` tasks, `i` in `0..size`, sums
/// to: `1 + 2 + ... + size`.
pub(crate) fn chord_total(size: usize) -> i64 {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    size * (size + 1) / 2
}

/// Length of the payload string.
pub(crate) const PAYLOAD_BYTES: usize = 64;

/// How often queue counts are polled while waiting for a queue to empty.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How often the consumer count is polled while waiting for a worker.
const START_POLL: Duration = Duration::from_millis(10);

/// How long a worker may take to start consuming, or a queue to make any
/// progress, before the run fails.
pub(crate) const GUARD: Duration = Duration::from_secs(120);

/// The arguments every system sends.
pub(crate) fn noop_args() -> NoopArgs {
    NoopArgs {
        payload: "x".repeat(PAYLOAD_BYTES),
    }
}

/// A task message as celeriac's producer publishes it (fire and forget),
/// encoded once; raw lapin publishes these exact bytes.
#[derive(Clone)]
pub(crate) struct EncodedTask {
    /// The JSON body `[args, kwargs, embed]`.
    pub(crate) body: Vec<u8>,
    /// Headers, `correlation_id`, persistent delivery, JSON content type.
    pub(crate) properties: BasicProperties,
}

impl EncodedTask {
    /// `bench.noop` with [`noop_args`], `ignore_result` set.
    pub(crate) fn noop() -> anyhow::Result<Self> {
        let (args, kwargs) = encode_arguments(&noop_args())?;
        let mut message = TaskMessage::new(Noop::NAME, args, kwargs);
        SendOptions::ignore_result().apply(&mut message, Utc::now());
        message.headers.origin = Some(format!("gen{}@bench", std::process::id()));
        let (body, properties) = message.encode(Utc::now())?;
        Ok(Self { body, properties })
    }
}

/// A connection for setting up queues and watching their counts, apart
/// from the connections being measured.
pub(crate) struct Broker {
    url: BrokerUrl,
    /// The type of the queues [`Broker::fresh_queue`] declares.
    queue_type: QueueType,
    connection: Connection,
    channel: Channel,
}

impl Broker {
    /// Connects to `url`, to declare queues of `queue_type`.
    pub(crate) async fn connect(url: BrokerUrl, queue_type: QueueType) -> anyhow::Result<Self> {
        let connection = Connection::connect(url.expose(), ConnectionProperties::default())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            url,
            queue_type,
            connection,
            channel,
        })
    }

    /// The broker's URL.
    pub(crate) fn url(&self) -> &BrokerUrl {
        &self.url
    }

    /// Declares a new, empty queue in Celery's default shape (durable,
    /// bound to a direct exchange of the same name), of the broker's queue
    /// type and with the arguments celeriac gives a queue of that type,
    /// and returns its name.
    pub(crate) async fn fresh_queue(&self, label: &str) -> anyhow::Result<String> {
        let name = celeriac_tests::unique(&format!("bench-{label}"));
        let topology = Topology::new(vec![]).default_queue_type(self.queue_type);
        topology.queue_def(&name).declare(&self.channel).await?;
        Ok(name)
    }

    /// Runs `measure` on a [`Broker::fresh_queue`] and deletes the queue
    /// afterwards, also when `measure` failed: a failed run must not leave
    /// its tasks on the broker, where they would slow every later run.
    pub(crate) async fn with_fresh_queue<T>(
        &self,
        label: &str,
        measure: impl AsyncFnOnce(&str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let queue = self.fresh_queue(label).await?;
        let measured = measure(&queue).await;
        self.delete_queue(&queue).await;
        measured
    }

    /// Deletes a queue, the dead-letter queue a celeriac worker declared
    /// for it, and its exchange (best effort).
    pub(crate) async fn delete_queue(&self, queue: &str) {
        for name in [queue, DeadLetterTopology::queue_name(queue).as_str()] {
            let _ = self
                .channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(queue.into(), Default::default())
            .await;
    }

    /// Ready messages and consumers of `queue`, from a passive declare.
    pub(crate) async fn counts(&self, queue: &str) -> anyhow::Result<(u32, u32)> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let q = self
            .channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .with_context(|| format!("queue {queue} is gone"))?;
        Ok((q.message_count(), q.consumer_count()))
    }

    /// Waits until `queue` has a consumer; returns when it was seen.
    pub(crate) async fn wait_for_consumer(&self, queue: &str) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + GUARD;
        loop {
            if self.counts(queue).await?.1 > 0 {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("no consumer on {queue} within {GUARD:?}");
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Polls every [`POLL`] until `queue` has no ready message; returns
    /// when it was seen empty. Fails if the count stops moving for
    /// [`GUARD`].
    pub(crate) async fn wait_until_empty(&self, queue: &str) -> anyhow::Result<Instant> {
        let mut last = (u32::MAX, Instant::now());
        loop {
            let (ready, _) = self.counts(queue).await?;
            let now = Instant::now();
            if ready == 0 {
                return Ok(now);
            }
            if ready != last.0 {
                last = (ready, now);
            } else if now - last.1 > GUARD {
                bail!("{queue} stuck at {ready} messages for {GUARD:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls every [`POLL`] until `queue` has no ready message or `limit`
    /// passed; returns the ready messages left.
    pub(crate) async fn wait_until_empty_within(
        &self,
        queue: &str,
        limit: Duration,
    ) -> anyhow::Result<u32> {
        let deadline = Instant::now() + limit;
        loop {
            let (ready, _) = self.counts(queue).await?;
            if ready == 0 || Instant::now() > deadline {
                return Ok(ready);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Closes the connection.
    pub(crate) async fn close(self) {
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

/// The binding key of every task event (`task.received`, `task.started`,
/// `task.succeeded`, ...).
const TASK_EVENTS_BINDING: &str = "task.#";

/// A monitor of task events, as Flower or `celery events` would run one:
/// a queue of its own bound to `celeryev` with `task.#`, consumed without
/// acks on a connection of its own, counting what arrives. The broker
/// routes every event to it for as long as it runs.
pub(crate) struct EventMonitor {
    connection: Connection,
    counted: Arc<AtomicU64>,
    consuming: tokio::task::JoinHandle<()>,
}

impl EventMonitor {
    /// Declares the exchange (as workers do) and an exclusive queue bound
    /// to it, and starts consuming.
    pub(crate) async fn start(url: &BrokerUrl) -> anyhow::Result<Self> {
        let connection = Connection::connect(url.expose(), ConnectionProperties::default())
            .await
            .with_context(|| format!("connecting the event monitor to {url}"))?;
        let channel = connection.create_channel().await?;
        declare_event_exchange(&channel).await?;
        let queue = celeriac_tests::unique("bench-celeryev");
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                EVENT_EXCHANGE.into(),
                TASK_EVENTS_BINDING.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let no_ack = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                no_ack,
                FieldTable::default(),
            )
            .await?;
        let counted = Arc::new(AtomicU64::new(0));
        let consuming = tokio::spawn({
            let counted = Arc::clone(&counted);
            async move {
                while let Some(Ok(_event)) = consumer.next().await {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            connection,
            counted,
            consuming,
        })
    }

    /// Waits up to `limit` for a first event if none came yet, then
    /// closes the connection (the broker deletes the queue); returns the
    /// events counted.
    pub(crate) async fn finish(self, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        while self.counted.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let _ = self.connection.close(200, "OK".into()).await;
        self.consuming.abort();
        self.counted.load(Ordering::Relaxed)
    }
}
