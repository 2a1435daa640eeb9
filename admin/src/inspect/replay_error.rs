//! Why one dead letter could not be replayed.

use std::time::Duration;

use celeriac_shared::{ConfirmError, ErrorChain};

use crate::Error;

/// Why a dead letter could not be published back; it stays in its
/// dead-letter queue, and the replay's summary lists it with this text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    /// Its headers do not say which exchange and routing key it came from.
    #[error("its headers do not say where it was published")]
    NoDestination,
    /// Its original routing key does not fit AMQP's 255 bytes.
    #[error("routing key `{0}` is too long")]
    RoutingKeyTooLong(String),
    /// The broker did not take the copy.
    #[error("refused via exchange `{exchange}` with routing key `{routing_key}`: {refusal}")]
    Refused {
        /// The exchange it was published to.
        exchange: String,
        /// Its routing key.
        routing_key: String,
        /// The broker's answer.
        refusal: ConfirmError,
    },
    /// The broker did not confirm within the producer's send timeout.
    #[error("not confirmed within {0:?}")]
    Unconfirmed(Duration),
    /// The channel or connection failed.
    #[error("{}", ErrorChain(.0.as_ref()))]
    Broker(Box<Error>),
}
