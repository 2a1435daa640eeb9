//! How long, and how many, dead letters a `.dead` queue keeps.

use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The retention of a dead-letter queue, sent as queue arguments when the
/// queue is declared.
///
/// Both limits default to none: a dead letter stays until an operator
/// replays or purges it. RabbitMQ refuses to redeclare an existing queue
/// with different arguments (`PRECONDITION_FAILED`), so set these before
/// the `.dead` queue is first declared, or use a RabbitMQ policy for
/// existing queues (see `docs/dead-letters.md`).
///
/// ```toml
/// [dead_letters]
/// max_age = "180days"   # x-message-ttl; default: none
/// max_length = 10000    # x-max-length (oldest dropped first); default: none
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterRetention {
    /// Dead letters older than this (since they were dead-lettered) are
    /// dropped by the broker: `x-message-ttl`. Defaults to none.
    #[serde(
        default,
        serialize_with = "serialize_duration",
        deserialize_with = "deserialize_duration"
    )]
    pub max_age: Option<Duration>,
    /// At most this many dead letters are kept; the oldest are dropped
    /// first (`x-max-length` with RabbitMQ's default `drop-head`).
    /// Defaults to none.
    #[serde(default)]
    pub max_length: Option<u64>,
}

impl DeadLetterRetention {
    /// No limit: dead letters are kept until replayed or purged.
    pub const UNLIMITED: Self = Self {
        max_age: None,
        max_length: None,
    };

    /// The queue arguments: `x-message-ttl` in milliseconds and
    /// `x-max-length`, each only when set, so the unlimited retention
    /// declares no argument at all (as queues declared before retention
    /// existed).
    pub fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if let Some(age) = self.max_age {
            let millis = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis));
        }
        if let Some(length) = self.max_length {
            let length = i64::try_from(length).unwrap_or(i64::MAX);
            args.insert("x-max-length".into(), AMQPValue::LongLongInt(length));
        }
        args
    }

    /// Refuses a limit of zero, which would drop every dead letter at
    /// once.
    pub fn validate(&self) -> Result<(), InvalidRetention> {
        if self.max_age.is_some_and(|age| age.as_millis() == 0) {
            return Err(InvalidRetention::MaxAge);
        }
        if self.max_length == Some(0) {
            return Err(InvalidRetention::MaxLength);
        }
        Ok(())
    }
}

/// Why a dead-letter retention is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRetention {
    /// `max_age` is zero.
    #[error("dead_letters.max_age must be at least 1ms")]
    MaxAge,
    /// `max_length` is zero.
    #[error("dead_letters.max_length must be positive")]
    MaxLength,
}

fn serialize_duration<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_str(&humantime::format_duration(*d).to_string()),
        None => serializer.serialize_none(),
    }
}

fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map(Some)
        .map_err(|err| serde::de::Error::custom(format!("invalid duration `{text}`: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_retention_declares_no_arguments() {
        assert!(
            DeadLetterRetention::UNLIMITED
                .arguments()
                .inner()
                .is_empty()
        );
        assert_eq!(
            DeadLetterRetention::default(),
            DeadLetterRetention::UNLIMITED
        );
    }

    #[test]
    fn limits_become_ttl_and_max_length() {
        let retention = DeadLetterRetention {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_length: Some(10_000),
        };
        let args = retention.arguments();
        assert_eq!(
            args.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(604_800_000))
        );
        assert_eq!(
            args.inner().get("x-max-length"),
            Some(&AMQPValue::LongLongInt(10_000))
        );
    }

    #[test]
    fn zero_limits_are_refused() {
        let zero_age = DeadLetterRetention {
            max_age: Some(Duration::ZERO),
            max_length: None,
        };
        assert!(zero_age.validate().is_err());
        let zero_length = DeadLetterRetention {
            max_age: None,
            max_length: Some(0),
        };
        assert!(zero_length.validate().is_err());
    }
}
