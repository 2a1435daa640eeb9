//! The worker's error type.

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
    /// The broker closed the consumer (connection lost, queue deleted).
    #[error("the consumer of queue `{queue}` was closed by the broker")]
    ConsumerClosed {
        /// The queue.
        queue: String,
    },
    /// The worker was configured to consume no queue.
    #[error("no queue to consume")]
    NoQueues,
    /// The metrics address could not be listened on (in use, say).
    #[error("cannot listen for metrics on {addr}")]
    MetricsListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { operation, source }
    }
}
