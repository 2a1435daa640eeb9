//! Why a producer can no longer receive a result it waits for.

use std::sync::Arc;

/// Why the result of a call was lost before it arrived: the reply queue
/// it was to come back on went away (with the connection), or the
/// producer was dropped.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResultLost {
    /// The reply queue's consumer failed (the connection or channel
    /// closed); the queue, exclusive to that connection, went with it.
    #[error("reply consumer failed: {0}")]
    ConsumerFailed(Arc<lapin::Error>),
    /// The broker cancelled the reply queue's consumer.
    #[error("reply consumer stopped")]
    ConsumerStopped,
    /// The producer that sent the task was dropped.
    #[error("the producer was dropped")]
    ProducerDropped,
}
