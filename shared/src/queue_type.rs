//! Classic or quorum: the RabbitMQ queue type of the queues celeriac
//! declares, and the arguments and limits that come with quorum queues.
//!
//! A quorum queue is replicated over the cluster's nodes (RabbitMQ 4 has
//! no mirrored classic queues any more) and counts the deliveries of each
//! message itself, in the `x-delivery-count` header. celeriac declares a
//! quorum task queue with an explicit `x-delivery-limit` equal to its own
//! delivery limit and with `celeriac.dead` as its dead-letter exchange:
//! the worker dead-letters a message at its limit itself, with its
//! reasons in the headers, and the broker's own limit only acts if that
//! delivery fails too. Without an explicit limit, RabbitMQ 4 would apply
//! its default of 20 and drop such a message; RabbitMQ 3.x would never
//! stop.

use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::{Deserialize, Serialize};

use crate::DEAD_LETTER_EXCHANGE;

/// The RabbitMQ queue type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// A classic queue, declared without `x-queue-type` exactly as Celery
    /// declares its queues by default. The default.
    #[default]
    Classic,
    /// A replicated quorum queue (`x-queue-type = quorum`).
    Quorum,
}

/// The `x-delivery-limit` of a quorum dead-letter queue (`<queue>.dead`):
/// as good as none. Nothing crashes on dead letters, but inspecting them
/// returns each one to its queue (a `basic.nack` with requeue), which
/// counts as a delivery: under RabbitMQ 4's default limit of 20 the
/// twenty-first inspection would drop them.
pub const DEAD_LETTER_QUEUE_DELIVERY_LIMIT: i64 = 2_147_483_647;

/// Why a queue definition cannot be a quorum queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumConflict {
    /// `max_priority` is set: RabbitMQ 3.x refuses `x-max-priority` on a
    /// quorum queue, and RabbitMQ 4's quorum queues have two fixed
    /// priorities instead.
    #[error(
        "`max_priority` needs a classic queue: quorum queues do not support \
         `x-max-priority` (set `queue_type = \"classic\"` on this queue, or drop \
         `max_priority`)"
    )]
    MaxPriority,
    /// `durable = false`: quorum queues are always durable.
    #[error("`durable = false` needs a classic queue: quorum queues are always durable")]
    NotDurable,
}

/// A queue type other than `classic` or `quorum` was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown queue type `{0}`: expected `classic` or `quorum`")]
pub struct UnknownQueueType(pub String);

impl std::str::FromStr for QueueType {
    type Err = UnknownQueueType;

    /// `classic` or `quorum`, as in `celeriac.toml`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "classic" => Ok(QueueType::Classic),
            "quorum" => Ok(QueueType::Quorum),
            other => Err(UnknownQueueType(other.to_owned())),
        }
    }
}

impl std::fmt::Display for QueueType {
    /// `classic` or `quorum`, as in `celeriac.toml`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        })
    }
}

impl QueueType {
    /// The `x-queue-type` argument of a queue of this type: none for a
    /// classic queue, as Celery declares it.
    pub(crate) fn insert_argument(self, table: &mut FieldTable) {
        match self {
            QueueType::Classic => {}
            QueueType::Quorum => {
                table.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString(LongString::from("quorum")),
                );
            }
        }
    }

    /// The arguments a quorum task queue `queue` gets besides its type,
    /// unless its definition sets them itself: `x-delivery-limit` (the
    /// workers' `delivery_limit`), and `celeriac.dead` with routing key
    /// `queue` as its dead-letter exchange, so that a message the broker
    /// gives up on lands in `<queue>.dead`. None for a classic queue.
    pub(crate) fn task_queue_arguments(
        self,
        queue: &str,
        delivery_limit: u32,
    ) -> Vec<(&'static str, serde_json::Value)> {
        match self {
            QueueType::Classic => Vec::new(),
            QueueType::Quorum => vec![
                ("x-delivery-limit", delivery_limit.into()),
                ("x-dead-letter-exchange", DEAD_LETTER_EXCHANGE.into()),
                ("x-dead-letter-routing-key", queue.into()),
            ],
        }
    }

    /// The arguments of a dead-letter queue of this type besides its
    /// retention: for a quorum queue its type and
    /// [`DEAD_LETTER_QUEUE_DELIVERY_LIMIT`].
    pub(crate) fn insert_dead_letter_arguments(self, table: &mut FieldTable) {
        self.insert_argument(table);
        match self {
            QueueType::Classic => {}
            QueueType::Quorum => {
                table.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongLongInt(DEAD_LETTER_QUEUE_DELIVERY_LIMIT),
                );
            }
        }
    }

    /// Refuses what a queue of this type cannot be: for a quorum queue,
    /// one with priorities or not durable.
    pub fn check(self, durable: bool, max_priority: Option<u8>) -> Result<(), QuorumConflict> {
        match self {
            QueueType::Classic => Ok(()),
            QueueType::Quorum if max_priority.is_some() => Err(QuorumConflict::MaxPriority),
            QueueType::Quorum if !durable => Err(QuorumConflict::NotDurable),
            QueueType::Quorum => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_classic_queue_gets_no_argument_at_all() {
        let mut table = FieldTable::default();
        QueueType::Classic.insert_argument(&mut table);
        QueueType::Classic.insert_dead_letter_arguments(&mut table);
        assert!(table.inner().is_empty());
        assert!(QueueType::Classic.task_queue_arguments("q", 5).is_empty());
    }

    #[test]
    fn a_quorum_task_queue_is_limited_as_the_workers_and_dead_letters_to_its_dead_queue() {
        let arguments = QueueType::Quorum.task_queue_arguments("q", 7);
        assert_eq!(
            arguments,
            vec![
                ("x-delivery-limit", 7.into()),
                ("x-dead-letter-exchange", "celeriac.dead".into()),
                ("x-dead-letter-routing-key", "q".into()),
            ]
        );
    }

    #[test]
    fn a_quorum_dead_letter_queue_is_practically_unlimited() {
        let mut table = FieldTable::default();
        QueueType::Quorum.insert_dead_letter_arguments(&mut table);
        assert_eq!(
            table.inner().get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(i64::from(i32::MAX)))
        );
    }

    #[test]
    fn a_queue_type_is_read_by_its_name() {
        assert_eq!("quorum".parse(), Ok(QueueType::Quorum));
        assert_eq!("classic".parse(), Ok(QueueType::Classic));
        let err = "mirrored".parse::<QueueType>().unwrap_err().to_string();
        assert!(err.contains("`mirrored`"), "{err}");
    }

    #[test]
    fn a_quorum_queue_refuses_priorities_and_transience() {
        assert_eq!(
            QueueType::Quorum.check(true, Some(10)),
            Err(QuorumConflict::MaxPriority)
        );
        assert_eq!(
            QueueType::Quorum.check(false, None),
            Err(QuorumConflict::NotDurable)
        );
        assert_eq!(QueueType::Quorum.check(true, None), Ok(()));
        assert_eq!(QueueType::Classic.check(false, Some(10)), Ok(()));
    }
}
