//! The producer's error type.

use std::time::Duration;

/// Why a send failed. Whenever `send` returns an error, the broker did not
/// confirm the message: it may or may not have been delivered, and the
/// caller decides whether to send again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection to the broker could be had from the pool.
    #[error("cannot connect to the broker at {url}")]
    Connect {
        /// The broker URL, password redacted.
        url: String,
        /// The pool's error.
        #[source]
        source: deadpool_lapin::PoolError,
    },
    /// The connection pool could not be built from the configuration.
    #[error("invalid connection pool configuration")]
    Pool(#[source] deadpool_lapin::CreatePoolError),
    /// An AMQP operation failed (channel or connection closed, ...).
    #[error("AMQP {operation} failed")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// Encoding the message failed, the message is too large, or a name is
    /// invalid.
    #[error(transparent)]
    Codec(#[from] celeriac_shared::Error),
    /// The broker could not route the message to any queue (`mandatory`).
    #[error(
        "message for task {task_id} is unroutable via exchange `{exchange}` with routing key `{routing_key}`: {reply_text}"
    )]
    Unroutable {
        /// The task id.
        task_id: String,
        /// The exchange it was published to.
        exchange: String,
        /// Its routing key.
        routing_key: String,
        /// The broker's reason.
        reply_text: String,
    },
    /// The broker refused the message (negative confirm).
    #[error("the broker refused task {task_id} (negative publisher confirm)")]
    Nacked {
        /// The task id.
        task_id: String,
    },
    /// A task with this id is already waiting for its result on this
    /// producer (an explicit `task_id` was reused).
    #[error("task id {task_id} is already waiting for a result on this producer")]
    DuplicateTaskId {
        /// The task id.
        task_id: String,
    },
    /// The operation did not complete in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The configured timeout.
        after: Duration,
    },
}

impl Error {
    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { operation, source }
    }
}
