//! The worker's error type.

use celeriac_shared::is_transient;

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker could not be reached.
    #[error("cannot connect to the broker at {url}")]
    Connect {
        /// The broker URL, password redacted.
        url: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker URL cannot be parsed (the error hides the password).
    #[error(transparent)]
    InvalidBrokerUrl(celeriac_shared::Error),
    /// An AMQP operation failed.
    #[error("AMQP {operation} failed")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// Declaring a queue failed, or a name is invalid.
    #[error(transparent)]
    Topology(#[from] celeriac_shared::Error),
    /// The broker ended a consumer (queue deleted, channel closed).
    #[error("the consumer of queue `{queue}` was closed by the broker")]
    ConsumerClosed {
        /// The queue.
        queue: String,
    },
    /// Connecting and setting up the consumers took longer than
    /// [`WorkerConfig::connect_timeout`](crate::WorkerConfig::connect_timeout).
    #[error("the broker did not finish connecting and consuming within {after:?}")]
    Stalled {
        /// The configured limit.
        after: std::time::Duration,
    },
    /// The worker was configured to consume no queue.
    #[error("no queue to consume")]
    NoQueues,
    /// A queue to consume is defined as something its queue type cannot
    /// be (a quorum queue with priorities, say).
    #[error("queue `{queue}` cannot be declared")]
    QueueDefinition {
        /// The queue.
        queue: String,
        /// What its type refuses.
        #[source]
        source: celeriac_shared::QuorumConflict,
    },
    /// The metrics address could not be listened on (in use, say).
    #[error("cannot listen for metrics on {addr}")]
    MetricsListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The revocation stream could not be declared or read: a broker node
    /// still booting (the stream's home node "down or inaccessible"), or
    /// streams not available. Tried again, since a worker that cannot
    /// know the revocations must not run tasks.
    #[error("cannot read the revocation stream")]
    Revocations(#[source] Box<Error>),
}

impl Error {
    /// Whether waiting and reconnecting can mend this error: the broker is
    /// restarting or out of reach, or the connection broke. Wrong
    /// credentials, a missing vhost, an untrusted certificate or a queue
    /// declared with other arguments cannot be waited out.
    pub fn can_be_recovered(&self) -> bool {
        match self {
            Error::Connect { source, .. } | Error::Amqp { source, .. } => is_transient(source),
            Error::Topology(err) => err.is_transient(),
            Error::ConsumerClosed { .. } | Error::Stalled { .. } | Error::Revocations(_) => true,
            Error::InvalidBrokerUrl(_)
            | Error::NoQueues
            | Error::QueueDefinition { .. }
            | Error::MetricsListen { .. } => false,
        }
    }

    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { operation, source }
    }
}
