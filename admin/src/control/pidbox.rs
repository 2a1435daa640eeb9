//! The pidbox's AMQP side: the exchanges, the reply queue, and which
//! replies belong to a command.

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use serde_json::Value;
use tracing::warn;

use celeriac_shared::{REPLY_EXCHANGE, pidbox_queue_arguments};

use super::Replies;
use crate::Error;

/// Declares kombu's reply queue `<oid>.reply.celery.pidbox` (exclusive,
/// auto-deleted, with Celery's `control_queue_ttl` of 300 s and
/// `control_queue_expires` of 10 s), binds it to [`REPLY_EXCHANGE`] with
/// `oid` and consumes it without acks.
pub(super) async fn reply_consumer(channel: &Channel, oid: &str) -> Result<Consumer, Error> {
    let queue = format!("{oid}.{REPLY_EXCHANGE}");
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, pidbox_queue_arguments())
        .await
        .map_err(Error::amqp("queue.declare"))?;
    channel
        .queue_bind(
            queue.as_str().into(),
            REPLY_EXCHANGE.into(),
            oid.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("queue.bind"))?;
    let options = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..BasicConsumeOptions::default()
    };
    channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("basic.consume"))
}

/// A reply's `clock` header.
pub(super) fn clock(headers: Option<&FieldTable>) -> Option<u64> {
    let value = headers?.inner().get("clock")?;
    celeriac_shared::amqp_integer(value).and_then(|clock| u64::try_from(clock).ok())
}

/// A reply's `(hostname, reply)` entries, or `None` for a reply to another
/// command (another `ticket`), one whose `expires` passed before `now`
/// (epoch seconds), or a malformed one. A reply without a ticket counts,
/// as kombu counts it.
pub(super) fn read_reply(
    headers: Option<&FieldTable>,
    body: &[u8],
    ticket: &str,
    now: f64,
) -> Option<Replies> {
    let header = |name: &str| headers.and_then(|h| h.inner().get(name));
    if header("expires")
        .and_then(as_seconds)
        .is_some_and(|at| at > 0.0 && at < now)
    {
        return None;
    }
    if let Some(theirs) = header("ticket").and_then(celeriac_shared::amqp_str)
        && theirs != ticket
    {
        warn!(
            ticket = theirs,
            "a control reply for an unknown ticket; ignored"
        );
        return None;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(entries)) => Some(entries.into_iter().collect()),
        Ok(other) => {
            warn!(reply = %other, "a control reply is not {{hostname: reply}}; ignored");
            None
        }
        Err(err) => {
            warn!(error = %err, "a control reply is not JSON; ignored");
            None
        }
    }
}

/// A number header as seconds.
fn as_seconds(value: &AMQPValue) -> Option<f64> {
    match value {
        AMQPValue::Double(seconds) => Some(*seconds),
        AMQPValue::Float(seconds) => Some(f64::from(*seconds)),
        other => celeriac_shared::amqp_integer(other).map(|s| s as f64),
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::LongString;
    use serde_json::json;

    use super::*;

    fn headers(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut headers = FieldTable::default();
        for (name, value) in entries {
            headers.insert((*name).into(), value.clone());
        }
        headers
    }

    fn ticket(value: &str) -> (&'static str, AMQPValue) {
        ("ticket", AMQPValue::LongString(LongString::from(value)))
    }

    #[test]
    fn only_replies_to_this_command_count() {
        let body = br#"{"w1@host": {"ok": "pong"}}"#;
        let ours = headers(&[ticket("t1"), ("clock", AMQPValue::LongLongInt(4))]);
        assert_eq!(
            read_reply(Some(&ours), body, "t1", 0.0),
            Some(vec![("w1@host".to_owned(), json!({"ok": "pong"}))])
        );
        assert_eq!(clock(Some(&ours)), Some(4));
        let theirs = headers(&[ticket("t2")]);
        assert_eq!(read_reply(Some(&theirs), body, "t1", 0.0), None);
        assert!(
            read_reply(None, body, "t1", 0.0).is_some(),
            "no ticket counts"
        );
    }

    #[test]
    fn expired_and_malformed_replies_are_ignored() {
        let body = br#"{"w1@host": {"ok": "pong"}}"#;
        let expired = headers(&[ticket("t1"), ("expires", AMQPValue::Double(10.0))]);
        assert_eq!(read_reply(Some(&expired), body, "t1", 11.0), None);
        assert!(read_reply(Some(&expired), body, "t1", 9.0).is_some());
        assert_eq!(read_reply(None, b"[1, 2]", "t1", 0.0), None);
        assert_eq!(read_reply(None, b"not json", "t1", 0.0), None);
    }
}
