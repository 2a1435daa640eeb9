//! Revocations that stick: kept on a RabbitMQ stream, so every worker,
//! including one started after the revoke, skips a revoked task until the
//! revocation expires. Celery keeps revoked ids only in the memory of the
//! workers running at the moment of the revoke.
//!
//! `celeriac revoke`, the admin library's control client and a worker that
//! receives Celery's `revoke` control command append a [`Revocation`] to
//! the stream [`REVOCATION_STREAM`]. Every worker reads the stream from its
//! start (RabbitMQ keeps [`REVOCATION_TTL`] of it) and then follows it;
//! before it consumes any task queue it has read up to a marker it
//! published itself, so no revocation older than the worker is missed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The stream revocations are appended to.
pub const REVOCATION_STREAM: &str = "celeriac.revocations";

/// How long a revocation holds: the stream keeps this much (`x-max-age`),
/// and a worker forgets a revocation older than this. Celery's default
/// (`REVOKE_EXPIRES`) is 3 hours.
pub const REVOCATION_TTL: Duration = Duration::from_secs(3 * 3600);

/// The most revoked ids a worker keeps; the oldest go first. Celery's
/// default (`REVOKES_MAX`) is 50,000.
pub const MAX_REVOKED: usize = 50_000;

/// The stream's size bound (`x-max-length-bytes`): about 50,000
/// revocations of one id.
pub const REVOCATION_STREAM_BYTES: i64 = 20 * 1024 * 1024;

/// One revocation (or a worker's catch-up marker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked task ids; empty for a marker.
    #[serde(default)]
    pub task_ids: Vec<String>,
    /// Whether running tasks with these ids are cancelled too.
    #[serde(default)]
    pub terminate: bool,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// A worker's catch-up marker: its own id, which no task carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

impl Revocation {
    /// A revocation of `task_ids` made now.
    pub fn new(task_ids: Vec<String>, terminate: bool) -> Self {
        Self {
            task_ids,
            terminate,
            at: Utc::now(),
            marker: None,
        }
    }

    /// A catch-up marker named `id`.
    pub fn marker(id: impl Into<String>) -> Self {
        Self {
            task_ids: Vec::new(),
            terminate: false,
            at: Utc::now(),
            marker: Some(id.into()),
        }
    }

    /// Whether it still holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        let ttl = chrono::Duration::from_std(REVOCATION_TTL).unwrap_or(chrono::Duration::MAX);
        self.at + ttl > now
    }

    /// The message body and properties (JSON, persistent).
    pub fn encode(&self) -> Result<(Vec<u8>, BasicProperties), Error> {
        let body = serde_json::to_vec(self).map_err(|source| Error::Encode {
            what: "revocation",
            source,
        })?;
        let properties = BasicProperties::default()
            .with_content_type(crate::CONTENT_TYPE.into())
            .with_delivery_mode(2);
        Ok((body, properties))
    }

    /// Decodes a stream message.
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(Error::NotJson)
    }
}

/// Declares the revocation stream (idempotent; every declaration uses the
/// same arguments).
pub async fn declare_revocation_stream(channel: &Channel) -> Result<(), Error> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("stream")),
    );
    let max_age = format!("{}s", REVOCATION_TTL.as_secs());
    arguments.insert(
        "x-max-age".into(),
        AMQPValue::LongString(LongString::from(max_age.as_str())),
    );
    arguments.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(REVOCATION_STREAM_BYTES),
    );
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(REVOCATION_STREAM.into(), options, arguments)
        .await
        .map_err(|source| Error::Declare {
            what: format!("stream `{REVOCATION_STREAM}`"),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_expires_after_its_ttl() {
        let mut revocation = Revocation::new(vec!["id".into()], false);
        assert!(revocation.holds_at(Utc::now()));
        revocation.at -= chrono::Duration::from_std(REVOCATION_TTL).unwrap();
        assert!(!revocation.holds_at(Utc::now()));
        let body = revocation.encode().unwrap().0;
        assert_eq!(Revocation::decode(&body).unwrap(), revocation);
    }
}
