//! The producer's error type.

use std::time::Duration;

/// Why a send or an inspection failed. Whenever `send` returns an error,
/// the broker did not confirm the message: it may or may not have been
/// delivered, and the caller decides whether to send again. Whenever an
/// inspection ([`DeadLetters`](crate::DeadLetters),
/// [`DelayedTasks`](crate::DelayedTasks)) returns an error, every message
/// it had read but not settled goes back to its queue.
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
