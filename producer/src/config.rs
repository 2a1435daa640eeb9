//! How a producer connects, routes and publishes.

use std::time::Duration;

use celeriac_shared::{
    BrokerUrl, Config, DEFAULT_MAX_MESSAGE_SIZE, DelayTopology, Router, Topology,
};

/// How a [`Producer`](crate::Producer) connects, routes and publishes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The broker. Defaults to `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub broker_url: BrokerUrl,
    /// Connections in the pool. Defaults to 1.
    pub connections: usize,
    /// Confirm-mode channels that concurrent sends share. Defaults to 4.
    pub channels: usize,
    /// Task name to queue rules. Defaults to everything to `celery`.
    pub router: Router,
    /// Queue definitions; unlisted queues get Celery's default shape.
    /// Defaults to none.
    pub topology: Topology,
    /// Largest message body accepted, in bytes. Defaults to 1 MiB.
    pub max_message_size: usize,
    /// How long a send may take, connecting and confirming included
    /// (while the broker is away, the send is tried again until then).
    /// Defaults to 30 s.
    pub send_timeout: Duration,
    /// How long connecting to the broker, or opening a channel on the
    /// connection, may take before that attempt is abandoned and tried
    /// again: a broker that accepts the connection but never answers
    /// (booting, overloaded) must not hold a send for its whole timeout.
    /// Defaults to 10 s.
    pub connect_timeout: Duration,
    /// The connection name shown in RabbitMQ's management UI and
    /// `rabbitmqctl list_connections`. Defaults to `celeriac-producer`.
    pub connection_name: String,
    /// The shape of the shared delay topology used for countdown and eta.
    /// Defaults to quorum delay queues, as Celery's
    /// `broker_native_delayed_delivery_queue_type`.
    pub delay: DelayTopology,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            broker_url: BrokerUrl::default(),
            connections: 1,
            channels: 4,
            router: Router::default(),
            topology: Topology::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            send_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            connection_name: "celeriac-producer".into(),
            delay: DelayTopology::default(),
        }
    }
}

impl ProducerConfig {
    /// Routing, topology and size limit from a loaded [`Config`].
    pub fn from_config(config: &Config, broker_url: BrokerUrl) -> Self {
        Self {
            broker_url,
            router: config.router(),
            topology: config.topology(),
            max_message_size: config.max_message_size,
            ..Self::default()
        }
    }
}
