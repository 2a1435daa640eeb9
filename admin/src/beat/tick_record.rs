//! The last tick sent per schedule entry, kept on the broker.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};

use super::BeatError;

/// What the schedule has done so far: per entry, the last tick sent, or
/// the moment a beat first saw the entry (so that a tick falling due while
/// the beats fail over is still sent).
///
/// It lives as the one message of a durable last-value queue
/// (`x-max-length` 1, `drop-head`): each new record, published in the same
/// transaction as the tasks it accounts for, replaces the last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickRecord {
    /// Entry name → the last tick sent (or first seen).
    pub last: BTreeMap<String, DateTime<Utc>>,
}

impl TickRecord {
    /// The queue's arguments: one message, the newest.
    pub fn queue_arguments() -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString(LongString::from("drop-head")),
        );
        arguments
    }

    /// Declares the record's queue.
    pub async fn declare(channel: &Channel, queue: &str) -> Result<(), BeatError> {
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                Self::queue_arguments(),
            )
            .await
            .map_err(BeatError::amqp("queue.declare (tick record)"))?;
        Ok(())
    }

    /// Reads the record without taking it (the message goes straight back
    /// to the queue); an empty queue is an empty record. A record that is
    /// not ours to read is an error, not a reset: a reset would send ticks
    /// twice.
    pub async fn read(channel: &Channel, queue: &str) -> Result<Self, BeatError> {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(BeatError::amqp("basic.get (tick record)"))?;
        let Some(message) = got else {
            return Ok(Self::default());
        };
        let delivery = message.delivery;
        let parsed = serde_json::from_slice(&delivery.data);
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: true })
            .await
            .map_err(BeatError::amqp("basic.reject (tick record)"))?;
        parsed.map_err(|source| BeatError::BadRecord {
            queue: queue.to_owned(),
            source,
        })
    }

    /// The record as a persistent message body and properties.
    pub fn encode(&self) -> (Vec<u8>, BasicProperties) {
        // A map of strings to timestamps always serializes.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        (body, properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_json() {
        let mut record = TickRecord::default();
        let tick = DateTime::parse_from_rfc3339("2026-12-07T03:00:00Z")
            .map(|t| t.to_utc())
            .expect("valid");
        record.last.insert("nightly".into(), tick);
        let (body, _) = record.encode();
        let back: TickRecord = serde_json::from_slice(&body).expect("decodes");
        assert_eq!(back, record);
    }
}
