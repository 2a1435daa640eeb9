//! The worker: consume queues, run tasks concurrently, shut down
//! gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use celeriac_shared::{
    BrokerUrl, Config, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_QUEUE, DeadLetterTopology, DelayTopology,
    Task, Topology,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::dispatch::Dispatcher;
use crate::health::Health;
use crate::metrics_server::MetricsServer;
use crate::publisher::Publisher;
use crate::{Error, ProducerSpan, Registry, RetryPolicy, TaskContext, TaskError, TaskOptions};

/// How a [`Worker`] connects and consumes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The broker. Defaults to `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub broker_url: BrokerUrl,
    /// The queues to consume. Defaults to `["celery"]`.
    pub queues: Vec<String>,
    /// At most this many tasks run at once. Defaults to 16.
    pub concurrency: usize,
    /// Unacknowledged deliveries per queue consumer (`basic.qos`, per
    /// consumer, never global). Defaults to `concurrency`.
    pub prefetch: Option<u16>,
    /// On shutdown, how long in-flight tasks may take to finish before
    /// their messages are requeued. Defaults to 30 s.
    pub grace_period: Duration,
    /// Queue definitions; unlisted queues get Celery's default shape.
    /// Defaults to none.
    pub topology: Topology,
    /// Bodies larger than this are rejected unparsed. Defaults to 1 MiB.
    pub max_message_size: usize,
    /// Send a `STARTED` state to callers when a task starts. Defaults to
    /// false, as Celery's `task_track_started`.
    pub track_started: bool,
    /// The connection name shown in RabbitMQ's management UI and
    /// `rabbitmqctl list_connections`. Defaults to `celeriac-worker`.
    pub connection_name: String,
    /// The retry policy of tasks registered without one. Defaults to 3
    /// retries with exponential backoff from 1 s to 10 minutes.
    pub retry: RetryPolicy,
    /// A message delivered this many times without being settled (it
    /// crashed or stalled the workers that took it) is dead-lettered with
    /// reason `delivery limit` instead of running again. Defaults to 5.
    pub delivery_limit: u32,
    /// The shape of the shared delay topology. Defaults to quorum delay
    /// queues, as Celery's `broker_native_delayed_delivery_queue_type`.
    pub delay: DelayTopology,
    /// Where to serve `/metrics` (Prometheus), `/healthz` and `/readyz`
    /// while the worker runs; port 0 picks a free one (see
    /// [`Worker::bind_metrics`]). Defaults to none: no server, and no
    /// metrics are counted.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether each task's `process` span is a child of the producer's
    /// `publish` span or starts its own trace with a link to it. Defaults
    /// to [`ProducerSpan::Parent`].
    pub producer_span: ProducerSpan,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            broker_url: BrokerUrl::default(),
            queues: vec![DEFAULT_QUEUE.to_owned()],
            concurrency: 16,
            prefetch: None,
            grace_period: Duration::from_secs(30),
            topology: Topology::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            track_started: false,
            connection_name: "celeriac-worker".into(),
            retry: RetryPolicy::default(),
            delivery_limit: 5,
            delay: DelayTopology::default(),
            metrics_addr: None,
            producer_span: ProducerSpan::default(),
        }
    }
}

impl WorkerConfig {
    /// Topology and size limit from a loaded [`Config`]; queues default to
    /// its default queue.
    pub fn from_config(config: &Config, broker_url: BrokerUrl) -> Self {
        Self {
            broker_url,
            queues: vec![config.default_queue.clone()],
            topology: config.topology(),
            max_message_size: config.max_message_size,
            ..Self::default()
        }
    }
}

/// Runs registered task handlers for messages from its queues.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    registry: Registry,
    /// The metrics listener, bound early by [`Worker::bind_metrics`].
    metrics_listener: Option<TcpListener>,
}

/// Deliveries from all consumed queues, each with its queue's name.
type Deliveries = futures::stream::SelectAll<
    BoxStream<'static, (Arc<str>, Result<lapin::message::Delivery, lapin::Error>)>,
>;

/// `celeriac-worker-<pid>@<host>`, the name written into dead letters.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("celeriac-worker-{}@{}", std::process::id(), host.trim())
}

/// One queue's consumer, kept to cancel it on shutdown.
struct QueueConsumer {
    channel: Channel,
    tag: ShortString,
}

impl Worker {
    /// A worker with no handlers yet.
    pub fn new(config: WorkerConfig) -> Self {
        Self::with_registry(config, Registry::new())
    }

    /// A worker running the handlers of `registry`.
    pub fn with_registry(config: WorkerConfig, registry: Registry) -> Self {
        Self {
            config,
            registry,
            metrics_listener: None,
        }
    }

    /// Binds [`WorkerConfig::metrics_addr`] now rather than in
    /// [`Worker::run`], and returns the address bound (the port chosen
    /// when it was 0), or `None` when no metrics address is configured.
    pub async fn bind_metrics(&mut self) -> Result<Option<SocketAddr>, Error> {
        let Some(addr) = self.config.metrics_addr else {
            return Ok(None);
        };
        let (listener, bound) = MetricsServer::bind(addr).await?;
        self.metrics_listener = Some(listener);
        Ok(Some(bound))
    }

    /// Registers a handler for task `T` with its own options (see
    /// [`Registry::register_with`]).
    pub fn register_with<T, F, Fut>(mut self, options: TaskOptions, handler: F) -> Self
    where
        T: Task,
        F: Fn(T::Args, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        self.registry.register_with::<T, F, Fut>(options, handler);
        self
    }

    /// Registers a handler for task `T` (see [`Registry::register`]).
    pub fn register<T, F, Fut>(mut self, handler: F) -> Self
    where
        T: Task,
        F: Fn(T::Args, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        self.registry.register::<T, F, Fut>(handler);
        self
    }

    /// The registered handlers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Consumes until `shutdown` completes, then stops taking deliveries,
    /// lets in-flight tasks finish within the grace period, and closes the
    /// connection (the broker requeues whatever is still unacknowledged).
    ///
    /// With [`WorkerConfig::metrics_addr`] set, serves `/metrics`,
    /// `/healthz` and `/readyz` until it returns; `/readyz` answers 200
    /// only while the broker connection is open and every queue is
    /// consumed.
    ///
    /// Returns an error if the connection or a consumer is lost.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        if self.config.queues.is_empty() {
            return Err(Error::NoQueues);
        }
        let health = Arc::new(Health::default());
        let listener = self.metrics_listener.take();
        let (metrics, _server) =
            MetricsServer::serve(listener, self.config.metrics_addr, &health).await?;
        let config = &self.config;
        let connection = self.connect().await?;
        health.connected(connection.status().clone());
        let results = connection
            .create_channel()
            .await
            .map_err(Error::amqp("channel.open"))?;
        results
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("confirm.select"))?;
        let (consumers, deliveries) = self.consume(&connection).await?;
        health.consuming(
            consumers
                .iter()
                .map(|c| c.channel.status().clone())
                .collect(),
        );
        info!(
            queues = ?config.queues, concurrency = config.concurrency, tasks = ?self.registry.names(),
            "worker ready"
        );
        let dispatcher = Arc::new(Dispatcher {
            registry: self.registry.clone(),
            publisher: Publisher { channel: results },
            max_message_size: config.max_message_size,
            track_started: config.track_started,
            retry: config.retry.clone(),
            delivery_limit: config.delivery_limit.max(1),
            node: node_name(),
            metrics,
            producer_span: config.producer_span,
        });
        let mut in_flight = JoinSet::new();
        let outcome = self
            .pump(deliveries, dispatcher, &mut in_flight, shutdown)
            .await;
        health.stopped();
        for consumer in &consumers {
            let _ = consumer
                .channel
                .basic_cancel(consumer.tag.clone(), BasicCancelOptions::default())
                .await;
        }
        self.drain(&mut in_flight).await;
        let _ = connection.close(200, "worker shutdown".into()).await;
        info!("worker stopped");
        outcome
    }

    async fn connect(&self) -> Result<Connection, Error> {
        let url = &self.config.broker_url;
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.as_str().into());
        Connection::connect(url.expose(), properties)
            .await
            .map_err(|source| Error::Connect {
                url: url.to_string(),
                source,
            })
    }

    /// Declares the delay topology, then each queue with its dead-letter
    /// queue and delayed-delivery binding, and starts its consumer on its
    /// own channel with per-consumer prefetch.
    async fn consume(
        &self,
        connection: &Connection,
    ) -> Result<(Vec<QueueConsumer>, Deliveries), Error> {
        let config = &self.config;
        let prefetch = config
            .prefetch
            .unwrap_or_else(|| u16::try_from(config.concurrency).unwrap_or(u16::MAX));
        let mut consumers = Vec::new();
        let mut streams = Vec::new();
        let control = connection
            .create_channel()
            .await
            .map_err(Error::amqp("channel.open"))?;
        config.delay.declare(&control).await?;
        for queue in &config.queues {
            config.topology.queue_def(queue).declare(&control).await?;
            DelayTopology::bind_queue(&control, queue).await?;
            DeadLetterTopology::declare(&control, queue).await?;
        }
        let _ = control.close(200, "OK".into()).await;
        for queue in &config.queues {
            let channel = connection
                .create_channel()
                .await
                .map_err(Error::amqp("channel.open"))?;
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(Error::amqp("basic.qos"))?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(Error::amqp("basic.consume"))?;
            consumers.push(QueueConsumer {
                channel,
                tag: consumer.tag(),
            });
            let queue: Arc<str> = Arc::from(queue.as_str());
            streams.push(consumer.map(move |d| (Arc::clone(&queue), d)).boxed());
        }
        Ok((consumers, futures::stream::select_all(streams)))
    }

    /// Takes deliveries while a concurrency slot is free, until shutdown or
    /// until the consumers end.
    async fn pump(
        &self,
        mut deliveries: Deliveries,
        dispatcher: Arc<Dispatcher>,
        in_flight: &mut JoinSet<()>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            while in_flight.try_join_next().is_some() {}
            let permit = tokio::select! {
                () = &mut shutdown => return Ok(()),
                permit = Arc::clone(&slots).acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let delivery = tokio::select! {
                () = &mut shutdown => return Ok(()),
                delivery = deliveries.next() => delivery,
            };
            let (queue, delivery) = match delivery {
                Some((queue, Ok(delivery))) => (queue, delivery),
                Some((_, Err(err))) => return Err(Error::amqp("basic.consume")(err)),
                None => {
                    return Err(Error::ConsumerClosed {
                        queue: self.config.queues.join(","),
                    });
                }
            };
            let dispatcher = Arc::clone(&dispatcher);
            in_flight.spawn(async move {
                dispatcher.dispatch(&queue, delivery).await;
                drop(permit);
            });
        }
    }

    /// Waits up to the grace period for in-flight tasks, then abandons the
    /// rest: their messages stay unacknowledged and the broker requeues
    /// them when the connection closes.
    async fn drain(&self, in_flight: &mut JoinSet<()>) {
        while in_flight.try_join_next().is_some() {}
        let running = in_flight.len();
        if running > 0 {
            info!(running, grace = ?self.config.grace_period, "waiting for in-flight tasks");
        }
        let finished = tokio::time::timeout(self.config.grace_period, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            warn!(
                unfinished = in_flight.len(),
                "grace period over; requeueing unfinished tasks"
            );
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
    }
}
