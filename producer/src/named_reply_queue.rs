//! A reply queue shared by every replica of a service, by name: results
//! wait there for whichever replica is up, so a replica that restarts
//! while its tasks run loses none of their results.

use celeriac_shared::QueueType;
use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};

use crate::Error;

/// The `x-delivery-limit` of a quorum named reply queue: as good as none.
/// A result the handler failed on is requeued, which counts as a
/// delivery; under RabbitMQ 4's default limit of 20 a handler that failed
/// for a while would have its results dropped.
const QUORUM_DELIVERY_LIMIT: i64 = 2_147_483_647;

/// A named reply queue: durable, neither exclusive nor auto-delete, so it
/// outlives the connection (and the process) that declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedReplyQueue {
    /// The queue name, written into each message's `reply_to`.
    pub(crate) name: String,
    /// Classic or quorum: every replica must declare it alike, or the
    /// broker refuses the second shape with `PRECONDITION_FAILED`.
    pub(crate) queue_type: QueueType,
}

impl NamedReplyQueue {
    /// The named queue of `name` and `queue_type`.
    pub(crate) fn new(name: String, queue_type: QueueType) -> Self {
        Self { name, queue_type }
    }

    /// Declares the queue. Idempotent; results are published to it
    /// through the default exchange, so it needs no binding.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        let options = QueueDeclareOptions {
            durable: true,
            exclusive: false,
            auto_delete: false,
            ..QueueDeclareOptions::default()
        };
        let name = lapin::types::ShortString::try_new(self.name.as_str()).map_err(|_| {
            celeriac_shared::Error::InvalidName {
                kind: "queue",
                name: self.name.chars().take(64).collect(),
            }
        })?;
        channel
            .queue_declare(name, options, self.arguments())
            .await
            .map_err(Error::amqp("queue.declare (named reply queue)"))?;
        Ok(())
    }

    /// The queue arguments: none for a classic queue; for a quorum queue
    /// its type and a delivery limit that never drops a result.
    fn arguments(&self) -> FieldTable {
        let mut table = FieldTable::default();
        match self.queue_type {
            QueueType::Classic => {}
            QueueType::Quorum => {
                table.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
                let limit = AMQPValue::LongLongInt(QUORUM_DELIVERY_LIMIT);
                table.insert("x-delivery-limit".into(), limit);
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classic_named_reply_queue_has_no_arguments() {
        let queue = NamedReplyQueue::new("r".into(), QueueType::Classic);
        assert_eq!(queue.arguments(), FieldTable::default());
    }

    #[test]
    fn a_quorum_named_reply_queue_never_drops_a_requeued_result() {
        let queue = NamedReplyQueue::new("r".into(), QueueType::Quorum);
        let arguments = queue.arguments();
        let limit = arguments.inner().get("x-delivery-limit");
        assert_eq!(limit, Some(&AMQPValue::LongLongInt(QUORUM_DELIVERY_LIMIT)));
        let kind = arguments.inner().get("x-queue-type");
        assert_eq!(kind, Some(&AMQPValue::LongString("quorum".into())));
    }
}
