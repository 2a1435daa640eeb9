//! The operator tools' error type.

use celeriac_producer::Error as ProducerError;

/// Why an inspection or the dashboard failed. Whenever an inspection
/// ([`DeadLetters`](crate::DeadLetters),
/// [`DelayedTasks`](crate::DelayedTasks)) returns an error, every message
/// it had read but not settled goes back to its queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, declaring or publishing through the producer failed.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// Encoding or decoding a message failed.
    #[error(transparent)]
    Codec(#[from] celeriac_shared::Error),
    /// An AMQP operation failed (channel or connection closed, ...).
    #[error("AMQP {operation} failed")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// A queue that an inspection needs does not exist: for a dead-letter
    /// queue, no worker has consumed its queue yet (or it was deleted).
    #[error("queue `{queue}` does not exist")]
    UnknownQueue {
        /// The queue's name.
        queue: String,
    },
    /// Another consumer is attached to a queue that an inspection must
    /// read exclusively (another inspection, or an application consuming
    /// a dead-letter queue); nothing was read.
    #[error("queue `{queue}` has another consumer; inspect it when that consumer is gone")]
    QueueBusy {
        /// The queue's name.
        queue: String,
    },
    /// The broker ended an inspection's consumer (the queue was deleted or
    /// the channel closed) before it finished.
    #[error("the broker ended the consumer of queue `{queue}`")]
    ConsumerEnded {
        /// The queue's name.
        queue: String,
    },
    /// The broker refused a republished message (negative confirm, or
    /// returned as unroutable).
    #[error("the broker refused to republish: {0}")]
    Refused(#[from] celeriac_shared::ConfirmError),
    /// The broker refused a revocation (negative confirm, or returned as
    /// unroutable because the revocation stream is missing).
    #[error("the broker refused the revocation")]
    RevocationRefused(#[source] celeriac_shared::ConfirmError),
    /// The broker did not confirm a publish in time.
    #[error("the broker did not confirm the {what} within {timeout:?}")]
    Unconfirmed {
        /// What was published.
        what: &'static str,
        /// How long it was given.
        timeout: std::time::Duration,
    },
    /// The dashboard was asked to listen on an address other machines can
    /// reach without a token to protect it.
    #[error(
        "refusing to serve the dashboard on {addr} without a token: anyone who reaches it could replay and delete dead letters; set a token (--token or CELERIAC_DASHBOARD_TOKEN) or listen on 127.0.0.1"
    )]
    Unprotected {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// The dashboard could not listen on its address.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps lapin's error with what was being done.
    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { operation, source }
    }
}
