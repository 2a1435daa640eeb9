//! How a producer connects, routes and publishes.

use std::time::Duration;

use celeriac_shared::{
    BrokerUrl, Config, DEFAULT_MAX_MESSAGE_SIZE, DelayTopology, QueueType, Router, Topology,
};

/// How a [`Producer`](crate::Producer) connects, routes and publishes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The broker: one address, or several (a cluster's nodes) tried in
    /// turn, round robin, for each new connection. Defaults to
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
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
    /// With several broker addresses, each address gets this long before
    /// the next is tried. Defaults to 10 s.
    pub connect_timeout: Duration,
    /// The connection name shown in RabbitMQ's management UI and
    /// `rabbitmqctl list_connections`. Defaults to `celeriac-producer`.
    pub connection_name: String,
    /// The shape of the shared delay topology used for countdown and eta.
    /// Defaults to quorum delay queues, as Celery's
    /// `broker_native_delayed_delivery_queue_type`.
    pub delay: DelayTopology,
    /// A reply queue shared by every replica of a service, by name, so
    /// that results outlive the process that sent their tasks: durable,
    /// neither exclusive nor auto-delete, consumed by a
    /// [`ResultListener`](crate::ResultListener) started with
    /// [`Producer::on_result`](crate::Producer::on_result). Set it with
    /// [`ProducerConfig::reply_queue()`]. Defaults to none: results come back
    /// on an exclusive queue of this process (Celery's `rpc://`), which
    /// dies with it.
    pub reply_queue: Option<String>,
    /// The queue type of the named [`reply_queue`](Self#structfield.reply_queue):
    /// quorum to replicate it over a cluster's nodes. Every replica must
    /// agree, or the broker refuses the second declaration. Defaults to
    /// classic; [`ProducerConfig::from_config`] takes the configuration's
    /// top-level `queue_type`.
    pub reply_queue_type: QueueType,
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
            reply_queue: None,
            reply_queue_type: QueueType::Classic,
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
            reply_queue_type: config.queue_type,
            ..Self::default()
        }
    }

    /// Sends results to the reply queue `name`, shared by every replica of
    /// the service, instead of an exclusive queue of this process (see
    /// [`reply_queue`](Self#structfield.reply_queue)).
    ///
    /// ```
    /// use celeriac_producer::ProducerConfig;
    /// let config = ProducerConfig::default().reply_queue("stocks-service.replies");
    /// assert_eq!(config.reply_queue.as_deref(), Some("stocks-service.replies"));
    /// ```
    pub fn reply_queue(mut self, name: impl Into<String>) -> Self {
        self.reply_queue = Some(name.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_on_an_exclusive_queue_unless_one_is_named() {
        assert_eq!(ProducerConfig::default().reply_queue, None);
        let named = ProducerConfig::default().reply_queue("svc.replies");
        assert_eq!(named.reply_queue.as_deref(), Some("svc.replies"));
        assert_eq!(named.reply_queue_type, QueueType::Classic);
    }

    #[test]
    fn a_named_reply_queue_takes_the_configured_queue_type() {
        let config = Config::from_toml("queue_type = \"quorum\"\n", "celeriac.toml");
        let config = config.expect("a valid configuration");
        let producer = ProducerConfig::from_config(&config, BrokerUrl::default());
        assert_eq!(producer.reply_queue_type, QueueType::Quorum);
    }
}
