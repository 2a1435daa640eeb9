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
    /// The worker was configured to consume no queue.
    #[error("no queue to consume")]
    NoQueues,
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
            Error::ConsumerClosed { .. } => true,
            Error::InvalidBrokerUrl(_) | Error::NoQueues => false,
        }
    }

    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { operation, source }
    }
}
