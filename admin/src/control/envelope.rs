//! A control command as kombu's `Mailbox._publish` sends it.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value, json};

use super::REPLY_EXCHANGE;
use crate::Error;

/// One command, ready to publish.
pub(super) struct Envelope<'a> {
    /// The command's name (`ping`, `revoke`, ...).
    pub(super) method: &'a str,
    /// Its keyword arguments.
    pub(super) arguments: Map<String, Value>,
    /// The workers that should act; `None`: every worker.
    pub(super) destination: Option<Vec<String>>,
    /// `(ticket, oid)` when replies are wanted: the ticket workers echo in
    /// their replies' `ticket` header, and the routing key of this
    /// client's reply queue.
    pub(super) reply: Option<(&'a str, &'a str)>,
}

impl Envelope<'_> {
    /// The JSON body, `{"method", "arguments", "destination", "pattern",
    /// "matcher"}` plus `"ticket"` and `"reply_to"` when replies are
    /// wanted, and the properties: JSON, transient, with the `clock` and
    /// `expires` (epoch seconds) headers.
    pub(super) fn encode(
        &self,
        clock: u64,
        expires: f64,
    ) -> Result<(Vec<u8>, BasicProperties), Error> {
        let mut body = json!({
            "method": self.method,
            "arguments": self.arguments,
            "destination": self.destination,
            "pattern": null,
            "matcher": null,
        });
        if let (Some((ticket, oid)), Some(fields)) = (self.reply, body.as_object_mut()) {
            fields.insert("ticket".into(), json!(ticket));
            fields.insert(
                "reply_to".into(),
                json!({"exchange": REPLY_EXCHANGE, "routing_key": oid}),
            );
        }
        let body = serde_json::to_vec(&body).map_err(|source| {
            Error::Codec(celeriac_shared::Error::Encode {
                what: "control command",
                source,
            })
        })?;
        let mut headers = FieldTable::default();
        headers.insert(
            "clock".into(),
            AMQPValue::LongLongInt(i64::try_from(clock).unwrap_or(i64::MAX)),
        );
        headers.insert("expires".into(), AMQPValue::Double(expires));
        let properties = BasicProperties::default()
            .with_content_type(celeriac_shared::CONTENT_TYPE.into())
            .with_content_encoding(celeriac_shared::CONTENT_ENCODING.into())
            .with_delivery_mode(1)
            .with_priority(0)
            .with_headers(headers);
        Ok((body, properties))
    }
}

/// Now, in seconds since the epoch (Python's `time.time()`).
pub(super) fn epoch_seconds() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_has_kombus_shape() {
        let mut arguments = Map::new();
        arguments.insert("task_id".into(), json!(["a"]));
        let envelope = Envelope {
            method: "revoke",
            arguments,
            destination: Some(vec!["w1@host".into()]),
            reply: Some(("ticket-1", "oid-1")),
        };
        let (body, properties) = envelope.encode(7, 1234.5).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({
                "method": "revoke",
                "arguments": {"task_id": ["a"]},
                "destination": ["w1@host"],
                "pattern": null,
                "matcher": null,
                "ticket": "ticket-1",
                "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid-1"},
            })
        );
        let headers = properties.headers().clone().unwrap();
        assert_eq!(
            headers.inner().get("clock"),
            Some(&AMQPValue::LongLongInt(7))
        );
        assert_eq!(
            headers.inner().get("expires"),
            Some(&AMQPValue::Double(1234.5))
        );
        assert_eq!(
            properties.content_type().as_ref().map(|c| c.as_str()),
            Some("application/json")
        );
    }

    #[test]
    fn a_command_without_reply_has_no_ticket() {
        let envelope = Envelope {
            method: "shutdown",
            arguments: Map::new(),
            destination: None,
            reply: None,
        };
        let body: Value = serde_json::from_slice(&envelope.encode(1, 0.0).unwrap().0).unwrap();
        assert_eq!(body["destination"], Value::Null);
        assert!(body.get("ticket").is_none() && body.get("reply_to").is_none());
    }
}
