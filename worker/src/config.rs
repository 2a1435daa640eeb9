//! How a worker connects, consumes and settles.

use std::net::SocketAddr;
use std::time::Duration;

use celeriac_shared::{
    BrokerUrl, CHORD_QUEUE, Config, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_QUEUE, DelayTopology,
    RateLimit, Router, Topology,
};

use crate::{Backoff, ProducerSpan, RetryPolicy};

/// How a [`Worker`](crate::Worker) connects and consumes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The broker: one address, or several (a cluster's nodes) tried in
    /// turn, round robin, when connecting and reconnecting. Defaults to
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
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
    /// reason `delivery limit` instead of running again. Quorum queues
    /// the worker declares get it as their `x-delivery-limit`, so a
    /// producer declaring them must use the same (`from_config`: the
    /// file's `delivery_limit`, which its topology carries). Defaults to 5.
    pub delivery_limit: u32,
    /// The shape of the shared delay topology. Defaults to quorum delay
    /// queues, as Celery's `broker_native_delayed_delivery_queue_type`.
    pub delay: DelayTopology,
    /// How long to wait before each attempt to reconnect after the broker
    /// went away (or could not be reached at start). Defaults to
    /// exponential backoff with full jitter between 100 ms and 30 s.
    pub reconnect: Backoff,
    /// How long connecting to the broker and setting up the consumers may
    /// take before the attempt is abandoned and tried again (a broker that
    /// accepts connections but does not answer, while it boots); the
    /// attempt's next address (with several) waits for the next attempt.
    /// Defaults to 30 s.
    pub connect_timeout: Duration,
    /// Where to serve `/metrics` (Prometheus), `/healthz` and `/readyz`
    /// while the worker runs; port 0 picks a free one (see
    /// [`Worker::bind_metrics`](crate::Worker::bind_metrics)). Defaults to
    /// none: no server, and no metrics are counted.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether each task's `process` span is a child of the producer's
    /// `publish` span or starts its own trace with a link to it. Defaults
    /// to [`ProducerSpan::Parent`].
    pub producer_span: ProducerSpan,
    /// How often the worker publishes a Celery `worker-heartbeat` event
    /// (with `worker-online` on connecting and `worker-offline` on
    /// shutdown) to the `celeryev` exchange, for the dashboard and
    /// Celery's monitors; `None` sends no events. Defaults to 2 s, the
    /// interval of Celery workers started with `-E`.
    pub heartbeat_interval: Option<Duration>,
    /// Routes the workflow steps this worker sends on (chain steps,
    /// callbacks, errbacks) whose signature names no queue, as a producer
    /// would route them. Defaults to everything to `celery`.
    pub router: Router,
    /// Whether the worker sends Celery's task events (`task-received`,
    /// `task-started`, `task-succeeded`, ...) to `celeryev` from the start;
    /// the `enable_events` and `disable_events` control commands turn them
    /// on and off while it runs. Defaults to false, as Celery without `-E`.
    pub task_events: bool,
    /// Whether this worker also consumes [`CHORD_QUEUE`] and joins
    /// celeriac chords (see `docs/architecture.md`). Defaults to true.
    pub join_chords: bool,
    /// Rate limits by task name or glob, the first match winning: a task
    /// over its limit is sent back through the delay topology, not run
    /// (see `docs/schedules-uniqueness-rate-limits.md`). A limit with
    /// scope `cluster` is shared with every worker that has it; all of
    /// them must configure it alike. Defaults to none (`from_config`: the
    /// file's `[[rate_limit]]` entries).
    pub rate_limits: Vec<RateLimit>,
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
            reconnect: Backoff::Exponential {
                min: Duration::from_millis(100),
                max: Duration::from_secs(30),
            },
            connect_timeout: Duration::from_secs(30),
            metrics_addr: None,
            producer_span: ProducerSpan::default(),
            heartbeat_interval: Some(celeriac_shared::DEFAULT_HEARTBEAT_INTERVAL),
            router: Router::new(Vec::new(), DEFAULT_QUEUE),
            join_chords: true,
            task_events: false,
            rate_limits: Vec::new(),
        }
    }
}

impl WorkerConfig {
    /// Topology (queue types included), size limit, routes, rate limits
    /// and delivery limit from a loaded [`Config`]; queues default to its
    /// default queue.
    pub fn from_config(config: &Config, broker_url: BrokerUrl) -> Self {
        Self {
            broker_url,
            queues: vec![config.default_queue.clone()],
            topology: config.topology(),
            max_message_size: config.max_message_size,
            router: config.router(),
            rate_limits: config.rate_limits.clone(),
            delivery_limit: config.delivery_limit,
            ..Self::default()
        }
    }

    /// The queues the worker consumes: its own, and [`CHORD_QUEUE`] when
    /// it joins chords.
    pub fn consumed_queues(&self) -> Vec<String> {
        let mut queues = self.queues.clone();
        if self.join_chords && !queues.iter().any(|q| q == CHORD_QUEUE) {
            queues.push(CHORD_QUEUE.to_owned());
        }
        queues
    }
}
