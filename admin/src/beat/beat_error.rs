//! Why a beat stopped leading, or could not start.

use celeriac_shared::is_transient;

/// Why a beat's term as leader (or its wait for one) ended with an error.
/// [`BeatError::is_transient`] tells the beat's loop whether to reconnect
/// and stand again, or to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BeatError {
    /// Connecting or opening a channel through the producer failed.
    #[error(transparent)]
    Producer(#[from] celeriac_producer::Error),
    /// The election failed, or encoding a task did.
    #[error(transparent)]
    Shared(#[from] celeriac_shared::Error),
    /// An AMQP operation failed.
    #[error("AMQP {operation} failed")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The tick record on the broker is not one a beat wrote.
    #[error(
        "the tick record in queue `{queue}` is not valid; delete the queue's message only if you accept that each entry's next tick may be sent twice or not at all"
    )]
    BadRecord {
        /// The record's queue.
        queue: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// An entry's destination queue could not be declared (its arguments
    /// differ from the existing queue's, say).
    #[error("schedule entry `{entry}`: cannot declare its queue `{queue}`")]
    Destination {
        /// The entry's name.
        entry: String,
        /// The queue it sends to.
        queue: String,
        /// The declaration's error.
        #[source]
        source: celeriac_shared::Error,
    },
}

impl BeatError {
    /// Whether reconnecting can mend this: the broker restarted or is out
    /// of reach, the connection broke, leadership was lost.
    pub fn is_transient(&self) -> bool {
        match self {
            BeatError::Producer(err) => err.can_be_recovered(),
            BeatError::Shared(err) => err.is_transient(),
            BeatError::Amqp { source, .. } => is_transient(source),
            BeatError::Destination { source, .. } => source.is_transient(),
            BeatError::BadRecord { .. } => false,
        }
    }

    pub(crate) fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> BeatError {
        move |source| BeatError::Amqp { operation, source }
    }
}
