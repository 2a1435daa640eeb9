//! The AMQP side of kombu's pidbox, Celery's remote control, which celeriac
//! workers answer and celeriac's control client speaks: the two exchanges
//! and the arguments of the per-worker and per-client queues.

use std::time::Duration;

use lapin::options::ExchangeDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::{Error, expire_unused};

/// The fanout exchange commands are broadcast on.
pub const PIDBOX_EXCHANGE: &str = "celery.pidbox";

/// The direct exchange workers send their replies to.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";

/// Declares both exchanges as kombu declares them: non-durable, not
/// auto-deleted (another shape would be refused with 406).
pub async fn declare_pidbox_exchanges(channel: &Channel) -> Result<(), Error> {
    for (name, kind) in [
        (PIDBOX_EXCHANGE, ExchangeKind::Fanout),
        (REPLY_EXCHANGE, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| Error::Declare {
                what: format!("exchange `{name}`"),
                source,
            })?;
    }
    Ok(())
}

/// The arguments of a pidbox queue, a worker's or a client's reply queue:
/// Celery's `control_queue_ttl` (300 s) and `control_queue_expires` (10 s).
pub fn pidbox_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(300_000));
    expire_unused(&mut arguments, Duration::from_secs(10));
    arguments
}
