//! Task events in Celery's format (`celery/worker/request.py`,
//! `celery/events/state.py`): `task-received`, `task-started`,
//! `task-succeeded`, `task-failed`, `task-retried`, `task-rejected` and
//! `task-revoked`, published like the worker events to the `celeryev` topic
//! exchange with the type's dashes turned into dots as the routing key, so
//! Flower and `celery events` follow tasks run by celeriac workers.
//!
//! Every event carries `type`, `uuid`, `timestamp`, `hostname`,
//! `utcoffset`, `pid` and `clock`; the rest depends on the type. Arguments,
//! results and exceptions travel as Python-style `repr` strings, as Celery
//! sends them.

use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Error;
use crate::worker_event::event_properties;

/// The type of a task event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskEventKind {
    /// The worker received the task.
    #[serde(rename = "task-received")]
    Received,
    /// The handler started.
    #[serde(rename = "task-started")]
    Started,
    /// The handler returned a result.
    #[serde(rename = "task-succeeded")]
    Succeeded,
    /// The task failed for good.
    #[serde(rename = "task-failed")]
    Failed,
    /// The task failed and is retried.
    #[serde(rename = "task-retried")]
    Retried,
    /// The message was rejected (dead-lettered unrun).
    #[serde(rename = "task-rejected")]
    Rejected,
    /// The task was revoked (or expired) and did not run.
    #[serde(rename = "task-revoked")]
    Revoked,
}

impl TaskEventKind {
    /// The routing key on `celeryev`: the type with dashes as dots.
    pub fn routing_key(self) -> &'static str {
        match self {
            TaskEventKind::Received => "task.received",
            TaskEventKind::Started => "task.started",
            TaskEventKind::Succeeded => "task.succeeded",
            TaskEventKind::Failed => "task.failed",
            TaskEventKind::Retried => "task.retried",
            TaskEventKind::Rejected => "task.rejected",
            TaskEventKind::Revoked => "task.revoked",
        }
    }
}

/// One task event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: TaskEventKind,
    /// The task id.
    pub uuid: String,
    /// The worker's name (`name@host`).
    pub hostname: String,
    /// When it happened, seconds since the epoch.
    pub timestamp: f64,
    /// The worker's offset from UTC in hours west, as Celery's
    /// `utcoffset()`.
    #[serde(default)]
    pub utcoffset: i64,
    /// The worker's process id.
    #[serde(default)]
    pub pid: u32,
    /// The worker's Lamport clock.
    #[serde(default)]
    pub clock: u64,
    /// The fields of this type: `name`, `args`, `kwargs`, `retries`,
    /// `root_id`, `parent_id`, `eta`, `expires` (received); `result`,
    /// `runtime` (succeeded); `exception`, `traceback` (failed, retried);
    /// `requeue` (rejected); `terminated`, `signum`, `expired` (revoked).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl TaskEvent {
    /// Encodes the event as Celery does: JSON, transient, with a
    /// `hostname` application header.
    pub fn encode(&self) -> Result<(Vec<u8>, BasicProperties), Error> {
        let body = serde_json::to_vec(self).map_err(|source| Error::Encode {
            what: "task event",
            source,
        })?;
        Ok((body, event_properties(&self.hostname)))
    }

    /// Decodes an event body.
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(Error::NotJson)
    }

    /// Decodes a body holding one event, or a batch of them (Celery's
    /// buffered `task.multi` form, a JSON list).
    pub fn decode_many(body: &[u8]) -> Result<Vec<Self>, Error> {
        match serde_json::from_slice::<serde_json::Value>(body).map_err(Error::NotJson)? {
            serde_json::Value::Array(events) => Ok(events
                .into_iter()
                .filter_map(|event| serde_json::from_value(event).ok())
                .collect()),
            event => Ok(vec![serde_json::from_value(event).map_err(Error::NotJson)?]),
        }
    }

    /// Encodes several events as one message, as Celery's buffered
    /// dispatcher does: a JSON list, sent with routing key
    /// [`TASK_EVENTS_BATCH_KEY`]; Celery's event receiver (and so Flower
    /// and `celery events`) takes each event of the list.
    pub fn encode_batch(events: &[TaskEvent]) -> Result<(Vec<u8>, BasicProperties), Error> {
        let body = serde_json::to_vec(events).map_err(|source| Error::Encode {
            what: "task events",
            source,
        })?;
        let hostname = events
            .first()
            .map(|e| e.hostname.as_str())
            .unwrap_or_default();
        Ok((body, event_properties(hostname)))
    }
}

/// The routing key of a batch of task events (Celery's `task.multi`).
pub const TASK_EVENTS_BATCH_KEY: &str = "task.multi";

/// Python's `repr` of a JSON value, as Celery writes arguments and
/// results into events (`argsrepr`, `result`): strings in single quotes,
/// `None`, `True`, `False`, lists and dicts.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("'{}': {}", k.replace('\'', "\\'"), python_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_is_flat_json_with_the_type_and_common_fields() {
        let mut fields = Map::new();
        fields.insert("runtime".into(), json!(0.5));
        let event = TaskEvent {
            kind: TaskEventKind::Succeeded,
            uuid: "id".into(),
            hostname: "w@h".into(),
            timestamp: 1.0,
            utcoffset: 0,
            pid: 7,
            clock: 3,
            fields,
        };
        let (body, _) = event.encode().unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["type"], "task-succeeded");
        assert_eq!(value["runtime"], 0.5);
        assert_eq!(TaskEvent::decode(&body).unwrap(), event);
    }

    #[test]
    fn python_repr_quotes_like_python() {
        assert_eq!(
            python_repr(&json!([1, "a", null, true])),
            "[1, 'a', None, True]"
        );
        assert_eq!(python_repr(&json!({"x": "it's"})), "{'x': 'it\\'s'}");
    }
}
