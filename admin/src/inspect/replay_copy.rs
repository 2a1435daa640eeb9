//! The copy of a dead letter that a replay publishes.

use celeriac_shared::{
    DEAD_LETTERING_HEADERS, DELIVERIES_HEADER, QUORUM_DELIVERIES_HEADER, dead_letter_headers,
};
use chrono::{DateTime, SecondsFormat, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

/// Delivery counters a replay removes besides the dead-letter headers and
/// RabbitMQ's dead-lettering history, so the replayed task gets a fresh
/// delivery limit.
const COUNTERS: [&str; 2] = [QUORUM_DELIVERIES_HEADER, DELIVERIES_HEADER];

/// The properties of the replayed copy of a dead letter: the original
/// properties with the dead-letter headers and delivery history removed,
/// `retries` reset to 0, and `x-celeriac-replayed-at` (`now`) and
/// `x-celeriac-replay-count` (`count`) set. The body is not touched.
pub(crate) fn replay_properties(
    original: &BasicProperties,
    count: u32,
    now: DateTime<Utc>,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in original.headers().clone().unwrap_or_default().inner() {
        let name = key.as_str();
        let history = DEAD_LETTERING_HEADERS.contains(&name) || COUNTERS.contains(&name);
        if !dead_letter_headers::ALL.contains(&name) && !history {
            headers.insert(key.clone(), value.clone());
        }
    }
    headers.insert("retries".into(), AMQPValue::LongLongInt(0));
    let at = now.to_rfc3339_opts(SecondsFormat::Micros, false);
    headers.insert(
        dead_letter_headers::REPLAYED_AT.into(),
        AMQPValue::LongString(LongString::from(at.as_bytes())),
    );
    headers.insert(
        dead_letter_headers::REPLAY_COUNT.into(),
        AMQPValue::LongLongInt(i64::from(count)),
    );
    original.clone().with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use celeriac_shared::{DeadLetter, TaskMessage, field_table_to_json};
    use serde_json::{Map, Value};

    #[test]
    fn a_replayed_copy_has_fresh_retries_and_no_dead_letter_headers() {
        let mut message = TaskMessage::new("t.x", vec![], Map::new());
        message.headers.retries = 3;
        let (_, properties) = message.encode(Utc::now()).unwrap();
        let dead = DeadLetter {
            reason: "max retries exceeded".into(),
            error_type: "Retry".into(),
            error_message: "down".into(),
            traceback: None,
            retries: 3,
            failed_at: Utc::now(),
            worker: "w@h".into(),
            original_queue: "q".into(),
            original_exchange: "q".into(),
            original_routing_key: "q".into(),
        }
        .annotate(&properties);
        let copy = replay_properties(&dead, 2, Utc::now());
        let headers = field_table_to_json(copy.headers().as_ref().unwrap());
        assert_eq!(headers["retries"], Value::from(0));
        assert_eq!(headers["x-celeriac-replay-count"], Value::from(2));
        assert!(headers.contains_key("x-celeriac-replayed-at"));
        assert!(!headers.keys().any(|k| k.starts_with("x-celeriac-error")));
        assert!(!headers.contains_key("x-celeriac-reason"));
        assert_eq!(headers["task"], Value::from("t.x"), "task headers kept");
        assert_eq!(copy.correlation_id(), properties.correlation_id());
    }
}
