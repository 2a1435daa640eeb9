//! Dead-letter queues: where messages go that will never succeed, with the
//! reason written into their headers.
//!
//! Every task queue `Q` has a durable queue `Q.dead`, bound with key `Q` to
//! the durable direct exchange `celeriac.dead`. The worker publishes the
//! dead letter itself (the original properties and body byte for byte,
//! plus `x-celeriac-*` headers saying why), waits for the broker's confirm
//! and only then acknowledges the original. No argument of `Q` is involved,
//! so a Python Celery app declaring `Q` with its defaults still agrees with
//! celeriac's declaration. `Q.dead` itself carries arguments only when a
//! [`DeadLetterRetention`] is configured, or when `Q` is a quorum queue:
//! then `Q.dead` is one too, and `Q` (only then) names `celeriac.dead` as
//! its dead-letter exchange, for the messages the broker gives up on at
//! its delivery limit (see [`QueueType`]).

use chrono::{DateTime, SecondsFormat, Utc};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

use crate::message::short_string;
use crate::{DeadLetterRetention, Error, QueueType};

/// The dead-letter exchange: direct, durable, routing key = the queue.
pub const DEAD_LETTER_EXCHANGE: &str = "celeriac.dead";

/// The dead-letter exchange and queues.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadLetterTopology;

impl DeadLetterTopology {
    /// The dead-letter exchange's name.
    pub const EXCHANGE: &'static str = DEAD_LETTER_EXCHANGE;

    /// The dead-letter queue of `queue`: `<queue>.dead`.
    pub fn queue_name(queue: &str) -> String {
        format!("{queue}.dead")
    }

    /// Declares the exchange, `<queue>.dead` (a classic queue without
    /// retention limits) and its binding. Idempotent.
    pub async fn declare(channel: &Channel, queue: &str) -> Result<(), Error> {
        let unlimited = &DeadLetterRetention::UNLIMITED;
        Self::declare_with(channel, queue, unlimited, QueueType::Classic).await
    }

    /// Declares the exchange, `<queue>.dead` of `queue_type` (its queue's
    /// type, see [`Topology::queue_type`](crate::Topology::queue_type))
    /// with the arguments of `retention`, and its binding. Idempotent as
    /// long as every declarer passes the same retention and type (the
    /// broker refuses a redeclaration with other arguments with
    /// `PRECONDITION_FAILED`).
    pub async fn declare_with(
        channel: &Channel,
        queue: &str,
        retention: &DeadLetterRetention,
        queue_type: QueueType,
    ) -> Result<(), Error> {
        let dead = Self::queue_name(queue);
        let fail = |what: String| move |source| Error::Declare { what, source };
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                DEAD_LETTER_EXCHANGE.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(fail(format!("exchange `{DEAD_LETTER_EXCHANGE}`")))?;
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let mut arguments = retention.arguments();
        queue_type.insert_dead_letter_arguments(&mut arguments);
        channel
            .queue_declare(short_string("queue", &dead)?, options, arguments)
            .await
            .map_err(fail(format!("queue `{dead}`")))?;
        channel
            .queue_bind(
                short_string("queue", &dead)?,
                DEAD_LETTER_EXCHANGE.into(),
                short_string("routing key", queue)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail(format!("binding of `{dead}`")))?;
        Ok(())
    }
}

/// Why a message was dead-lettered, written into its headers.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// A short reason: `rejected`, `max retries exceeded`, `undecodable`,
    /// `unknown task`, `bad arguments`, `delivery limit`.
    pub reason: String,
    /// The error's type (`TaskError`, `Panic`, `DecodeError`, ...).
    pub error_type: String,
    /// The error's message.
    pub error_message: String,
    /// The error chain or traceback text.
    pub traceback: Option<String>,
    /// How many retries were done.
    pub retries: u32,
    /// When the message was dead-lettered.
    pub failed_at: DateTime<Utc>,
    /// The worker that dead-lettered it (`<name>@<host>`).
    pub worker: String,
    /// The queue it was consumed from.
    pub original_queue: String,
    /// The exchange it was originally published to.
    pub original_exchange: String,
    /// The routing key it was originally published with.
    pub original_routing_key: String,
}

/// The names of the headers a dead letter carries.
pub mod headers {
    /// [`DeadLetter::reason`](super::DeadLetter::reason).
    pub const REASON: &str = "x-celeriac-reason";
    /// [`DeadLetter::error_type`](super::DeadLetter::error_type).
    pub const ERROR_TYPE: &str = "x-celeriac-error-type";
    /// [`DeadLetter::error_message`](super::DeadLetter::error_message).
    pub const ERROR_MESSAGE: &str = "x-celeriac-error-message";
    /// [`DeadLetter::traceback`](super::DeadLetter::traceback).
    pub const TRACEBACK: &str = "x-celeriac-traceback";
    /// [`DeadLetter::retries`](super::DeadLetter::retries).
    pub const RETRIES: &str = "x-celeriac-retries";
    /// [`DeadLetter::failed_at`](super::DeadLetter::failed_at), ISO-8601.
    pub const FAILED_AT: &str = "x-celeriac-failed-at";
    /// [`DeadLetter::worker`](super::DeadLetter::worker).
    pub const WORKER: &str = "x-celeriac-worker";
    /// [`DeadLetter::original_queue`](super::DeadLetter::original_queue).
    pub const ORIGINAL_QUEUE: &str = "x-celeriac-original-queue";
    /// [`DeadLetter::original_exchange`](super::DeadLetter::original_exchange).
    pub const ORIGINAL_EXCHANGE: &str = "x-celeriac-original-exchange";
    /// [`DeadLetter::original_routing_key`](super::DeadLetter::original_routing_key).
    pub const ORIGINAL_ROUTING_KEY: &str = "x-celeriac-original-routing-key";
    /// Set on a replayed copy: when it was last replayed from a
    /// dead-letter queue, ISO-8601.
    pub const REPLAYED_AT: &str = "x-celeriac-replayed-at";
    /// Set on a replayed copy: how many times it was replayed.
    pub const REPLAY_COUNT: &str = "x-celeriac-replay-count";

    /// The headers a worker writes when it dead-letters a message, which a
    /// replay removes again.
    pub const ALL: [&str; 10] = [
        REASON,
        ERROR_TYPE,
        ERROR_MESSAGE,
        TRACEBACK,
        RETRIES,
        FAILED_AT,
        WORKER,
        ORIGINAL_QUEUE,
        ORIGINAL_EXCHANGE,
        ORIGINAL_ROUTING_KEY,
    ];
}

impl DeadLetter {
    /// The original properties with this dead letter's headers added (the
    /// original headers kept as they were).
    pub fn annotate(&self, properties: &BasicProperties) -> BasicProperties {
        let mut table = properties.headers().clone().unwrap_or_default();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes()));
        table.insert(headers::REASON.into(), text(&self.reason));
        table.insert(headers::ERROR_TYPE.into(), text(&self.error_type));
        table.insert(headers::ERROR_MESSAGE.into(), text(&self.error_message));
        if let Some(traceback) = &self.traceback {
            table.insert(headers::TRACEBACK.into(), text(traceback));
        }
        table.insert(
            headers::RETRIES.into(),
            AMQPValue::LongLongInt(i64::from(self.retries)),
        );
        let failed_at = self.failed_at.to_rfc3339_opts(SecondsFormat::Micros, false);
        table.insert(headers::FAILED_AT.into(), text(&failed_at));
        table.insert(headers::WORKER.into(), text(&self.worker));
        table.insert(headers::ORIGINAL_QUEUE.into(), text(&self.original_queue));
        table.insert(
            headers::ORIGINAL_EXCHANGE.into(),
            text(&self.original_exchange),
        );
        table.insert(
            headers::ORIGINAL_ROUTING_KEY.into(),
            text(&self.original_routing_key),
        );
        properties.clone().with_headers(table)
    }

    /// Reads a dead letter's headers back; `None` if the message was not
    /// dead-lettered by celeriac.
    pub fn from_headers(table: &FieldTable) -> Option<Self> {
        let json = crate::field_table_to_json(table);
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        Some(Self {
            reason: text(headers::REASON)?,
            error_type: text(headers::ERROR_TYPE).unwrap_or_default(),
            error_message: text(headers::ERROR_MESSAGE).unwrap_or_default(),
            traceback: text(headers::TRACEBACK),
            retries: json
                .get(headers::RETRIES)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_default(),
            failed_at: text(headers::FAILED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
            worker: text(headers::WORKER).unwrap_or_default(),
            original_queue: text(headers::ORIGINAL_QUEUE).unwrap_or_default(),
            original_exchange: text(headers::ORIGINAL_EXCHANGE).unwrap_or_default(),
            original_routing_key: text(headers::ORIGINAL_ROUTING_KEY).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_round_trips_through_headers_and_keeps_the_originals() {
        let mut original = FieldTable::default();
        original.insert("task".into(), AMQPValue::LongString("demo.fail".into()));
        let properties = BasicProperties::default().with_headers(original);
        let letter = DeadLetter {
            reason: "rejected".into(),
            error_type: "Reject".into(),
            error_message: "bad input".into(),
            traceback: Some("Reject: bad input\n".into()),
            retries: 2,
            failed_at: DateTime::parse_from_rfc3339("2026-11-23T10:00:00+00:00")
                .unwrap()
                .with_timezone(&Utc),
            worker: "w@host".into(),
            original_queue: "q".into(),
            original_exchange: "".into(),
            original_routing_key: "q".into(),
        };
        let annotated = letter.annotate(&properties);
        let table = annotated.headers().clone().unwrap();
        assert!(table.contains_key("task"));
        assert_eq!(DeadLetter::from_headers(&table), Some(letter));
        assert_eq!(DeadLetter::from_headers(&FieldTable::default()), None);
    }
}
