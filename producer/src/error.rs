//! The producer's error type.

use std::time::Duration;

use celeriac_shared::{is_not_found, is_transient};
use deadpool::managed::PoolError;

/// Why a send failed. Whenever `send` returns an error, the broker did not
/// confirm the message: it may or may not have been delivered, and the
/// caller decides whether to send again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection to the broker could be had from the pool: none of its
    /// addresses answered.
    #[error("cannot connect to the broker at {url}")]
    Connect {
        /// The broker's addresses, passwords redacted.
        url: String,
        /// The pool's error (with the last address's error when none
        /// answered).
        #[source]
        source: PoolError<lapin::Error>,
    },
    /// The connection pool could not be built from the configuration.
    #[error("invalid connection pool configuration")]
    Pool(#[source] deadpool::managed::BuildError),
    /// An AMQP operation failed (channel or connection closed, ...).
    #[error("AMQP {operation} failed")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// Encoding the message failed, the message is too large, a name is
    /// invalid, or the broker URL cannot be parsed.
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
    /// The broker refused the message (negative confirm), for now: a
    /// quorum queue nacks while it has no leader (a node was lost and the
    /// others are electing one), a queue with `x-overflow =
    /// reject-publish` while it is full. The channel it came on is closed
    /// (a fresh one takes its place), and the send tries again until its
    /// timeout, then fails with [`Error::Unconfirmed`] carrying this.
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
    /// The broker stayed away (unreachable, restarting, connection lost)
    /// for the whole send timeout; the last error says why. The message
    /// may or may not have reached the broker.
    #[error("task {task_id} was not confirmed by the broker within {after:?}")]
    Unconfirmed {
        /// The task id.
        task_id: String,
        /// The send timeout.
        after: Duration,
        /// The last failure.
        #[source]
        source: Box<Error>,
    },
    /// The broker accepted the connection but did not answer an operation
    /// in time (booting, overloaded, a half-dead connection); it is tried
    /// again.
    #[error("the broker did not answer {operation} within {after:?}")]
    Stalled {
        /// What was being done.
        operation: &'static str,
        /// The configured limit.
        after: Duration,
    },
    /// A chain, group or chord signature cannot be sent (malformed
    /// option, nested canvas, too many steps).
    #[error(transparent)]
    Workflow(#[from] celeriac_shared::SignatureError),
    /// A chain with no steps.
    #[error("a {what} needs at least one task")]
    EmptyWorkflow {
        /// Which canvas.
        what: &'static str,
    },
    /// The send's uniqueness key stayed held for the whole send timeout,
    /// but the task that holds it could not be read (its sender died
    /// between winning the key and recording itself, say). Nothing was
    /// published; the key is free again at the latest when its TTL runs
    /// out.
    #[error("uniqueness key `{key}` is held, but its holder was not readable within {after:?}")]
    HolderUnknown {
        /// The key.
        key: String,
        /// The send timeout.
        after: Duration,
    },
    /// [`Producer::on_result`](crate::Producer::on_result) was called on
    /// a producer without a named reply queue
    /// ([`ProducerConfig::reply_queue`](crate::ProducerConfig::reply_queue())):
    /// its results go to an exclusive queue that only `TaskHandle::wait`
    /// reads.
    #[error("the producer has no named reply queue to listen on")]
    NoNamedReplyQueue,
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
    /// Whether waiting can mend this error: the broker is restarting or out
    /// of reach, the connection broke, or the broker refused the message
    /// for now ([`Error::Nacked`]). A send retries these until its
    /// timeout; everything else fails the send at once.
    pub fn can_be_recovered(&self) -> bool {
        match self {
            Error::Connect { source, .. } => match source {
                PoolError::Backend(err) => is_transient(err),
                PoolError::Timeout(_) => true,
                PoolError::Closed
                | PoolError::NoRuntimeSpecified
                | PoolError::PostCreateHook(_) => false,
            },
            Error::Amqp { source, .. } => is_transient(source),
            Error::Codec(err) => err.is_transient(),
            Error::Stalled { .. } | Error::Nacked { .. } => true,
            Error::Pool(_)
            | Error::Unroutable { .. }
            | Error::DuplicateTaskId { .. }
            | Error::Unconfirmed { .. }
            | Error::Workflow(_)
            | Error::EmptyWorkflow { .. }
            | Error::HolderUnknown { .. }
            | Error::NoNamedReplyQueue
            | Error::Timeout { .. } => false,
        }
    }

    /// Whether the broker refused the message because an exchange, queue
    /// or binding it needs is missing: declaring again may mend it.
    pub(crate) fn needs_declaration(&self) -> bool {
        match self {
            Error::Unroutable { .. } => true,
            Error::Amqp { source, .. } => is_not_found(source),
            _ => false,
        }
    }

    /// Wraps lapin's error with what was being done.
    pub fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> Error {
        move |source| Error::Amqp { operation, source }
    }
}
