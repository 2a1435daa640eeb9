//! Task results in Celery's `rpc://` format, sent to the caller's reply
//! queue.

use chrono::{SecondsFormat, Utc};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::Error;
use crate::message::{CONTENT_ENCODING, CONTENT_TYPE, short_string};

/// A task state as Celery names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Not known yet.
    Pending,
    /// Received by a worker (Celery's `track_started`).
    Started,
    /// Being retried.
    Retry,
    /// Finished with a result.
    Success,
    /// Finished with an error.
    Failure,
    /// Revoked before it ran.
    Revoked,
}

/// One message on a reply queue.
///
/// `result` is kept as raw JSON text, so large integers (a Python `int`, an
/// `i128`) reach the typed output without passing through `f64`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultMessage {
    /// The task id, also the message's `correlation_id`.
    pub task_id: String,
    /// The state this message reports.
    pub status: TaskState,
    /// The return value on success, the exception object on failure.
    pub result: Box<RawValue>,
    /// The traceback text on failure.
    #[serde(default)]
    pub traceback: Option<String>,
    /// Child task ids (always empty from celeriac).
    #[serde(default)]
    pub children: Vec<Value>,
    /// When the task finished, ISO-8601.
    #[serde(default)]
    pub date_done: Option<String>,
}

/// A task's failure as it crossed the wire, from a Rust or Python worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{exc_type}: {message}")]
pub struct TaskFailure {
    /// The exception type, e.g. `ZeroDivisionError` or `TaskError`.
    pub exc_type: String,
    /// The exception message (Celery's `exc_message` arguments joined).
    pub message: String,
    /// The exception's module, e.g. `builtins`; `celeriac` for Rust errors.
    pub exc_module: Option<String>,
    /// The traceback (Python) or error chain (Rust) text.
    pub traceback: Option<String>,
}

/// Celery's serialized exception.
#[derive(Debug, Serialize, Deserialize)]
struct ExceptionInfo {
    exc_type: String,
    #[serde(default)]
    exc_message: Value,
    #[serde(default)]
    exc_module: Option<String>,
}

impl ResultMessage {
    /// A `SUCCESS` message carrying `result` (JSON text).
    pub fn success(task_id: impl Into<String>, result: Box<RawValue>) -> Self {
        Self::new(task_id.into(), TaskState::Success, result, None)
    }

    /// A `FAILURE` message in the shape Python's `AsyncResult.get` turns
    /// back into an exception.
    pub fn failure(task_id: impl Into<String>, failure: &TaskFailure) -> Self {
        let info = json!({
            "exc_type": failure.exc_type,
            "exc_message": [failure.message],
            "exc_module": failure.exc_module,
        });
        let raw = RawValue::from_string(info.to_string()).expect("a JSON value is valid JSON");
        Self::new(
            task_id.into(),
            TaskState::Failure,
            raw,
            failure.traceback.clone(),
        )
    }

    /// A `REVOKED` message (the task expired or was revoked), with the
    /// exception Python's `AsyncResult.get` raises for it.
    pub fn revoked(task_id: impl Into<String>, failure: &TaskFailure) -> Self {
        let mut message = Self::failure(task_id, failure);
        message.status = TaskState::Revoked;
        message
    }

    /// A `STARTED` message.
    pub fn started(task_id: impl Into<String>) -> Self {
        let raw = RawValue::from_string("null".into()).expect("null is valid JSON");
        let mut message = Self::new(task_id.into(), TaskState::Started, raw, None);
        message.date_done = None;
        message
    }

    fn new(
        task_id: String,
        status: TaskState,
        result: Box<RawValue>,
        traceback: Option<String>,
    ) -> Self {
        Self {
            task_id,
            status,
            result,
            traceback,
            children: Vec::new(),
            date_done: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false)),
        }
    }

    /// Encodes the message body and properties (`correlation_id` = task
    /// id, JSON, persistent).
    ///
    /// Celery sends results transient (`result_persistent = False`); these
    /// are persistent so that a durable reply queue keeps them across a
    /// broker restart: a chord's results queue, where they wait for the
    /// join, and a named reply queue (`ProducerConfig::reply_queue`). A
    /// restart discards transient messages, even in a durable queue. The
    /// exclusive reply queues of call-and-wait are not durable, and
    /// RabbitMQ writes nothing of theirs to disk either way.
    pub fn encode(&self) -> Result<(Vec<u8>, BasicProperties), Error> {
        let body = serde_json::to_vec(self).map_err(|source| Error::Encode {
            what: "result",
            source,
        })?;
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_content_encoding(CONTENT_ENCODING.into())
            .with_delivery_mode(2)
            .with_correlation_id(short_string("task id", &self.task_id)?);
        Ok((body, properties))
    }

    /// Decodes a result message body; unknown fields are ignored.
    pub fn decode(body: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(body).map_err(|err| Error::InvalidResult(err.to_string()))
    }

    /// Whether this is a final state (success or failure), as opposed to
    /// an intermediate one such as `STARTED` or `RETRY`.
    pub fn is_ready(&self) -> bool {
        matches!(
            self.status,
            TaskState::Success | TaskState::Failure | TaskState::Revoked
        )
    }

    /// The outcome of a final message: the result's JSON text, or the
    /// failure. `None` for intermediate states.
    pub fn outcome(&self) -> Option<Result<&RawValue, TaskFailure>> {
        match self.status {
            TaskState::Success => Some(Ok(&self.result)),
            TaskState::Failure | TaskState::Revoked => Some(Err(self.to_failure())),
            TaskState::Pending | TaskState::Started | TaskState::Retry => None,
        }
    }

    fn to_failure(&self) -> TaskFailure {
        let (exc_type, message, exc_module) =
            match serde_json::from_str::<ExceptionInfo>(self.result.get()) {
                Ok(info) => (
                    info.exc_type,
                    exception_message(&info.exc_message),
                    info.exc_module,
                ),
                Err(_) => (
                    format!("{:?}", self.status),
                    self.result.get().to_owned(),
                    None,
                ),
            };
        TaskFailure {
            exc_type,
            message,
            exc_module,
            traceback: self.traceback.clone(),
        }
    }
}

/// Celery sends the exception's arguments as a list; one string argument
/// is the message.
fn exception_message(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() == 1 => match &items[0] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_round_trips_with_celerys_exception_shape() {
        let failure = TaskFailure {
            exc_type: "TaskError".into(),
            message: "boom".into(),
            exc_module: Some("celeriac".into()),
            traceback: Some("TaskError: boom".into()),
        };
        let (body, _) = ResultMessage::failure("id-1", &failure).encode().unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["result"]["exc_message"], json!(["boom"]));
        assert_eq!(json["status"], "FAILURE");
        let decoded = ResultMessage::decode(&body).unwrap();
        assert_eq!(decoded.outcome().unwrap().unwrap_err(), failure);
    }

    #[test]
    fn a_large_integer_result_keeps_every_digit() {
        let raw = RawValue::from_string("50000000005000000000".into()).unwrap();
        let (body, _) = ResultMessage::success("id", raw).encode().unwrap();
        let decoded = ResultMessage::decode(&body).unwrap();
        let value: i128 = serde_json::from_str(decoded.outcome().unwrap().unwrap().get()).unwrap();
        assert_eq!(value, 50_000_000_005_000_000_000);
    }
}
