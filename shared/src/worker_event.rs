//! Worker events in Celery's format: `worker-online`, `worker-heartbeat`
//! and `worker-offline`, so Flower and `celery events` see celeriac
//! workers, and the celeriac dashboard sees Celery workers started with
//! `-E`.
//!
//! Celery (`celery/events/dispatcher.py`, `celery/worker/heartbeat.py`)
//! publishes each event as a JSON object to the topic exchange `celeryev`
//! (durable, not auto-delete) with the event type's dashes turned into
//! dots as the routing key (`worker.heartbeat`), `delivery_mode` 1
//! (transient) and a `hostname` application header. A worker sends
//! `worker-online` when it starts, `worker-heartbeat` every `freq` seconds
//! (2 s by default) and `worker-offline` when it stops; a monitor counts a
//! worker as gone once no heartbeat came for twice `freq`.
//!
//! celeriac's workers add keys of their own, prefixed `celeriac_`, which
//! Celery's monitors ignore: the queues consumed, the concurrency, the
//! failed count and the deliveries in flight.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::ExchangeDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde::{Deserialize, Serialize};

use crate::Error;

/// Celery's event exchange: a durable topic exchange.
pub const EVENT_EXCHANGE: &str = "celeryev";

/// The binding key of every worker event (`worker.online`,
/// `worker.heartbeat`, `worker.offline`).
pub const WORKER_EVENTS_BINDING: &str = "worker.#";

/// Celery's default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Declares Celery's event exchange on `channel` as Celery does: a
/// durable topic exchange named [`EVENT_EXCHANGE`]. Idempotent.
pub async fn declare_event_exchange(channel: &Channel) -> Result<(), Error> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            EVENT_EXCHANGE.into(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
        .map_err(|source| Error::Declare {
            what: format!("exchange `{EVENT_EXCHANGE}`"),
            source,
        })
}

/// The properties of an event message, worker or task event, as Celery's
/// dispatcher sends them: JSON, transient, with a `hostname` application
/// header.
pub(crate) fn event_properties(hostname: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "hostname".into(),
        AMQPValue::LongString(LongString::from(hostname.as_bytes())),
    );
    BasicProperties::default()
        .with_content_type(crate::CONTENT_TYPE.into())
        .with_content_encoding(crate::CONTENT_ENCODING.into())
        .with_delivery_mode(1)
        .with_headers(headers)
}

/// Which worker event it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerEventKind {
    /// The worker started (`worker-online`).
    #[serde(rename = "worker-online")]
    Online,
    /// The worker is alive (`worker-heartbeat`).
    #[serde(rename = "worker-heartbeat")]
    Heartbeat,
    /// The worker stopped gracefully (`worker-offline`).
    #[serde(rename = "worker-offline")]
    Offline,
}

impl WorkerEventKind {
    /// The routing key Celery publishes it with: its type with dots.
    pub fn routing_key(self) -> &'static str {
        match self {
            WorkerEventKind::Online => "worker.online",
            WorkerEventKind::Heartbeat => "worker.heartbeat",
            WorkerEventKind::Offline => "worker.offline",
        }
    }
}

/// One worker event, as Celery writes it, with celeriac's extra keys.
///
/// Decoding accepts what Celery sends (unknown keys are ignored, missing
/// counters are 0); encoding writes every key Celery writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEvent {
    /// The event type (`type`).
    #[serde(rename = "type")]
    pub kind: WorkerEventKind,
    /// The worker's node name, e.g. `celery@host` or
    /// `celeriac-worker-12@host`.
    pub hostname: String,
    /// When it was sent, in seconds since the Unix epoch.
    pub timestamp: f64,
    /// The sender's offset from UTC in hours.
    #[serde(default)]
    pub utcoffset: f64,
    /// The worker's process id.
    #[serde(default)]
    pub pid: u32,
    /// Celery's Lamport clock; celeriac counts its events.
    #[serde(default)]
    pub clock: u64,
    /// The heartbeat interval in seconds.
    #[serde(default)]
    pub freq: f64,
    /// Tasks running now.
    #[serde(default)]
    pub active: u64,
    /// Tasks handled since the worker started.
    #[serde(default)]
    pub processed: u64,
    /// The 1, 5 and 15 minute load averages of the worker's machine.
    #[serde(default)]
    pub loadavg: Vec<f64>,
    /// The software: `py-celery`, or `celeriac`.
    #[serde(default)]
    pub sw_ident: String,
    /// Its version.
    #[serde(default)]
    pub sw_ver: String,
    /// The operating system, e.g. `Linux`.
    #[serde(default)]
    pub sw_sys: String,
    /// celeriac: the queues the worker consumes (Celery workers do not
    /// say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub celeriac_queues: Vec<String>,
    /// celeriac: at most this many tasks at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celeriac_concurrency: Option<u64>,
    /// celeriac: task runs and messages that failed since the worker
    /// started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celeriac_failed: Option<u64>,
    /// celeriac: deliveries being handled now (running, settling, or
    /// waiting for their result to be confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celeriac_in_flight: Option<u64>,
}

impl WorkerEvent {
    /// The event as its JSON body and the AMQP properties Celery uses:
    /// `application/json`, `utf-8`, transient, a `hostname` header.
    pub fn encode(&self) -> Result<(Vec<u8>, BasicProperties), Error> {
        let body = serde_json::to_vec(self).map_err(|source| Error::Encode {
            what: "worker event",
            source,
        })?;
        Ok((body, event_properties(&self.hostname)))
    }

    /// Reads a worker event from a message body. Other events of the
    /// `celeryev` exchange (task events) are [`Error::NotJson`] too: they
    /// are not worker events.
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(Error::NotJson)
    }

    /// When it was sent.
    pub fn sent_at(&self) -> DateTime<Utc> {
        let micros = (self.timestamp * 1e6) as i64;
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }

    /// The heartbeat interval it announces, Celery's 2 s when it says
    /// none.
    pub fn interval(&self) -> Duration {
        match Duration::try_from_secs_f64(self.freq) {
            Ok(interval) if !interval.is_zero() => interval,
            _ => DEFAULT_HEARTBEAT_INTERVAL,
        }
    }

    /// When a monitor should count the worker as gone without another
    /// event: twice the interval after it was sent, as Celery's
    /// `heartbeat_expires` (an expire window of 200 %).
    pub fn expires_at(&self) -> DateTime<Utc> {
        let window = chrono::Duration::from_std(self.interval() * 2).unwrap_or_default();
        self.sent_at() + window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat with the keys and types Celery 5.7's worker sends
    /// (`celery -A app worker -E`; see `Heart._send` and
    /// `EventDispatcher._prepare_event`).
    const CELERY_HEARTBEAT: &str = r#"{"hostname": "celery@vm", "utcoffset": 0,
        "pid": 4242, "clock": 17, "freq": 2.0, "active": 1, "processed": 12,
        "loadavg": [0.5, 0.25, 0.1], "sw_ident": "py-celery", "sw_ver": "5.7.0",
        "sw_sys": "Linux", "timestamp": 1764585600.25, "type": "worker-heartbeat"}"#;

    #[test]
    fn a_celery_heartbeat_is_read() {
        let event = WorkerEvent::decode(CELERY_HEARTBEAT.as_bytes()).unwrap();
        assert_eq!(event.kind, WorkerEventKind::Heartbeat);
        assert_eq!(event.hostname, "celery@vm");
        assert_eq!((event.active, event.processed), (1, 12));
        assert!(event.celeriac_queues.is_empty() && event.celeriac_failed.is_none());
        assert_eq!(event.interval(), Duration::from_secs(2));
        let expires = event.expires_at() - event.sent_at();
        assert_eq!(expires, chrono::Duration::seconds(4));
    }

    #[test]
    fn an_encoded_event_carries_celerys_keys_and_headers() {
        let event = WorkerEvent {
            celeriac_queues: vec!["celery".into()],
            celeriac_failed: Some(3),
            kind: WorkerEventKind::Offline,
            ..WorkerEvent::decode(CELERY_HEARTBEAT.as_bytes()).unwrap()
        };
        let (body, properties) = event.encode().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for key in [
            "hostname",
            "utcoffset",
            "pid",
            "clock",
            "freq",
            "active",
            "processed",
            "loadavg",
            "sw_ident",
            "sw_ver",
            "sw_sys",
            "timestamp",
        ] {
            assert!(json.get(key).is_some(), "no `{key}` in {json}");
        }
        assert_eq!(json["type"], "worker-offline");
        assert_eq!(json["celeriac_failed"], 3);
        assert_eq!(properties.delivery_mode(), &Some(1));
        let headers = crate::field_table_to_json(properties.headers().as_ref().unwrap());
        assert_eq!(headers["hostname"], "celery@vm");
        assert_eq!(WorkerEvent::decode(&body).unwrap(), event);
    }

    #[test]
    fn a_task_event_is_not_a_worker_event() {
        let task = r#"{"type": "task-succeeded", "hostname": "w", "timestamp": 1.0}"#;
        assert!(WorkerEvent::decode(task.as_bytes()).is_err());
    }
}
