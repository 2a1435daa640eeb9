//! Why something the worker published was not confirmed.

use celeriac_shared::ConfirmError;

/// Why a result, a retry copy, a postponed copy or a dead letter was not
/// confirmed by the broker. The dispatcher then requeues the original
/// delivery (see `dispatch.rs`), so the task may run twice but is never
/// lost.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    /// The routing key does not fit AMQP's 255 bytes.
    #[error("routing key `{0}` is longer than 255 bytes")]
    RoutingKeyTooLong(String),
    /// The message could not be encoded, or its delay routing key built.
    #[error(transparent)]
    Encode(#[from] celeriac_shared::Error),
    /// The channel or connection failed.
    #[error("AMQP {operation} failed: {source}")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker did not take the message.
    #[error(transparent)]
    Refused(#[from] ConfirmError),
}

impl PublishError {
    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> PublishError {
        move |source| PublishError::Amqp { operation, source }
    }
}
