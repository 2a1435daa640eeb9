//! Celery's canvas signatures: a task call described as data, as it
//! travels in a message's `embed` (`callbacks`, `errbacks`, `chain`,
//! `chord`) and as Rust code builds chains and chords.
//!
//! The JSON form is Celery's own (`Signature.__json__`):
//!
//! ```json
//! {"task": "proj.add", "args": [2], "kwargs": {}, "options": {"task_id": "…",
//!  "reply_to": "…", "queue": "math"}, "subtask_type": null, "immutable": false,
//!  "chord_size": null}
//! ```

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Task, TaskMessage, encode_arguments};

/// How deep a chain may be: the steps still to run in one message. Deeper
/// chains are refused (their message would also exceed every sane size).
pub const MAX_CHAIN_STEPS: usize = 1000;

/// One task call as data: a step of a chain, a callback, an errback, a
/// chord's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// The task name.
    pub task: String,
    /// Positional arguments (the parent's result is prepended unless
    /// `immutable`).
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// Celery's `apply_async` options: `task_id`, `reply_to`, `queue`,
    /// `exchange`, `routing_key`, `priority`, `countdown`, `eta`,
    /// `expires`, `link`, `link_error`, ... Unknown ones are kept.
    #[serde(default)]
    pub options: Map<String, Value>,
    /// `null` for a task; `chain`, `group` or `chord` for nested canvases,
    /// which celeriac's worker does not expand.
    #[serde(default)]
    pub subtask_type: Option<String>,
    /// Whether the parent's result is left out of the arguments (`.si()`).
    #[serde(default)]
    pub immutable: bool,
    /// Celery's chord size hint, kept as is.
    #[serde(default)]
    pub chord_size: Option<Value>,
}

/// Why a signature cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The JSON is not a signature.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// A nested canvas (chain, group, chord) inside a signature, which
    /// celeriac's worker does not expand.
    #[error("signature of task `{task}` is a nested {kind}, which celeriac does not expand")]
    Nested {
        /// The task name it carries.
        task: String,
        /// Its `subtask_type`.
        kind: String,
    },
    /// More chain steps than [`MAX_CHAIN_STEPS`].
    #[error("a chain of {steps} steps is longer than the {MAX_CHAIN_STEPS} allowed")]
    TooDeep {
        /// How many steps.
        steps: usize,
    },
    /// An option has the wrong type.
    #[error("signature option `{name}` is invalid: {reason}")]
    BadOption {
        /// The option.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Signature {
    /// A call of typed task `T` with `args` (as Celery kwargs or args,
    /// the way `Producer::send` encodes them).
    pub fn of<T: Task>(args: &T::Args) -> Result<Self, Error> {
        let (args, kwargs) = encode_arguments(args)?;
        Ok(Self::named(T::NAME, args, kwargs))
    }

    /// A call of any task by name, with JSON arguments: the form for tasks
    /// defined in Python.
    pub fn named(task: impl Into<String>, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        Self {
            task: task.into(),
            args,
            kwargs,
            options: Map::new(),
            subtask_type: None,
            immutable: false,
            chord_size: None,
        }
    }

    /// The same call, without the parent's result prepended (`.si()`).
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }

    /// Sets an `apply_async` option (`queue`, `task_id`, `countdown`, ...).
    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.insert(name.to_owned(), value.into());
        self
    }

    /// Reads a signature from `embed` JSON, refusing nested canvases.
    pub fn from_value(value: &Value) -> Result<Self, SignatureError> {
        let signature: Signature = serde_json::from_value(value.clone())
            .map_err(|err| SignatureError::Malformed(err.to_string()))?;
        match signature.subtask_type.as_deref() {
            None | Some("") => Ok(signature),
            Some(kind) => Err(SignatureError::Nested {
                task: signature.task.clone(),
                kind: kind.to_owned(),
            }),
        }
    }

    /// Reads a list of signatures (`callbacks`, `errbacks`, `chain`), or
    /// one signature standing alone; `null` is none.
    pub fn list_from_value(value: Option<&Value>) -> Result<Vec<Self>, SignatureError> {
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                if items.len() > MAX_CHAIN_STEPS {
                    return Err(SignatureError::TooDeep { steps: items.len() });
                }
                items.iter().map(Self::from_value).collect()
            }
            Some(single @ Value::Object(_)) => Ok(vec![Self::from_value(single)?]),
            Some(other) => Err(SignatureError::Malformed(format!(
                "expected a list of signatures, got {other}"
            ))),
        }
    }

    /// The signature as `embed` JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The `task_id` option, if set (a frozen signature).
    pub fn task_id(&self) -> Option<&str> {
        self.options.get("task_id").and_then(Value::as_str)
    }

    /// The `reply_to` option: where its result goes.
    pub fn reply_to(&self) -> Option<&str> {
        self.options
            .get("reply_to")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
    }

    /// The queue named by the `queue` option (a name, or Celery's queue
    /// object with a `name`), if any.
    pub fn queue(&self) -> Option<&str> {
        match self.options.get("queue")? {
            Value::String(name) => Some(name),
            Value::Object(queue) => queue.get("name").and_then(Value::as_str),
            _ => None,
        }
    }

    /// The `exchange` and `routing_key` options, when both are set and no
    /// queue is named.
    pub fn exchange_and_key(&self) -> Option<(&str, &str)> {
        let exchange = match self.options.get("exchange")? {
            Value::String(name) => name.as_str(),
            Value::Object(exchange) => exchange.get("name").and_then(Value::as_str)?,
            _ => return None,
        };
        let key = self.options.get("routing_key").and_then(Value::as_str)?;
        Some((exchange, key))
    }

    /// Builds the message for this call: `result` (the parent's) is
    /// prepended to the arguments unless the signature is immutable;
    /// `parent` names the parent task (`parent_id`, and its `root_id`);
    /// `chain` becomes the message's remaining chain.
    pub fn to_message(
        &self,
        result: Option<&Value>,
        parent: Option<&TaskMessage>,
        chain: Vec<Signature>,
        now: DateTime<Utc>,
    ) -> Result<TaskMessage, SignatureError> {
        let mut args = Vec::with_capacity(self.args.len() + 1);
        if let (Some(result), false) = (result, self.immutable) {
            args.push(result.clone());
        }
        args.extend(self.args.iter().cloned());
        let mut message = TaskMessage::new(self.task.clone(), args, self.kwargs.clone());
        let headers = &mut message.headers;
        if let Some(id) = self.task_id() {
            headers.id = id.to_owned();
        }
        headers.root_id = parent
            .and_then(|p| {
                p.headers
                    .root_id
                    .clone()
                    .or_else(|| Some(p.id().to_owned()))
            })
            .or_else(|| Some(headers.id.clone()));
        headers.parent_id = parent.map(|p| p.id().to_owned());
        if let Some(group) = self.options.get("group_id").and_then(Value::as_str) {
            headers.group = Some(group.to_owned());
        }
        headers.group_index = self.options.get("group_index").and_then(Value::as_u64);
        headers.eta = self.eta(now)?;
        headers.expires = self.instant("expires", now)?;
        message.reply_to = self.reply_to().map(str::to_owned);
        message.priority = match self.options.get("priority") {
            None | Some(Value::Null) => parent.and_then(|p| p.priority),
            Some(value) => Some(
                value
                    .as_u64()
                    .and_then(|p| u8::try_from(p).ok())
                    .ok_or_else(|| bad("priority", value))?,
            ),
        };
        message.embed.callbacks = self.options.get("link").filter(|v| !v.is_null()).cloned();
        message.embed.errbacks = self
            .options
            .get("link_error")
            .filter(|v| !v.is_null())
            .cloned();
        if !chain.is_empty() {
            message.embed.chain = Some(Value::Array(chain.iter().map(Self::to_value).collect()));
        }
        Ok(message)
    }

    /// `eta` (a timestamp) or `countdown` (seconds from now).
    fn eta(&self, now: DateTime<Utc>) -> Result<Option<DateTime<FixedOffset>>, SignatureError> {
        if let Some(eta) = self.instant("eta", now)? {
            return Ok(Some(eta));
        }
        match self.options.get("countdown") {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                let seconds = value
                    .as_f64()
                    .filter(|s| s.is_finite())
                    .ok_or_else(|| bad("countdown", value))?;
                Ok(Some(after(now, seconds)))
            }
        }
    }

    /// A timestamp option: ISO-8601 text, or (for `expires`) seconds from
    /// now.
    fn instant(
        &self,
        name: &'static str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<FixedOffset>>, SignatureError> {
        match self.options.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                DateTime::parse_from_rfc3339(text).map(Some).map_err(|err| {
                    SignatureError::BadOption {
                        name,
                        reason: format!("`{text}`: {err}"),
                    }
                })
            }
            Some(value) => {
                let seconds = value
                    .as_f64()
                    .filter(|s| s.is_finite())
                    .ok_or_else(|| bad(name, value))?;
                Ok(Some(after(now, seconds)))
            }
        }
    }
}

fn after(now: DateTime<Utc>, seconds: f64) -> DateTime<FixedOffset> {
    let millis = (seconds * 1000.0).clamp(-1e15, 1e15) as i64;
    (now + chrono::Duration::milliseconds(millis)).fixed_offset()
}

fn bad(name: &'static str, value: &Value) -> SignatureError {
    SignatureError::BadOption {
        name,
        reason: format!("unexpected value {value}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn celerys_json_form_round_trips() {
        let value = json!({"task": "proj.add", "args": [4], "kwargs": {}, "options": {
            "task_id": "t2", "reply_to": "r", "queue": "math"}, "subtask_type": null,
            "immutable": false, "chord_size": null});
        let signature = Signature::from_value(&value).unwrap();
        assert_eq!(signature.task_id(), Some("t2"));
        assert_eq!(signature.queue(), Some("math"));
        assert_eq!(signature.to_value(), value);
    }

    #[test]
    fn the_parent_result_is_prepended_unless_immutable() {
        let parent = TaskMessage::new("a", vec![], Map::new());
        let step = Signature::named("b", vec![json!(4)], Map::new()).option("task_id", "t2");
        let message = step
            .to_message(Some(&json!(4)), Some(&parent), vec![], Utc::now())
            .unwrap();
        assert_eq!(message.args, vec![json!(4), json!(4)]);
        assert_eq!(message.id(), "t2");
        assert_eq!(message.headers.parent_id.as_deref(), Some(parent.id()));
        assert_eq!(message.headers.root_id.as_deref(), Some(parent.id()));
        let fixed = step.immutable();
        let message = fixed
            .to_message(Some(&json!(4)), None, vec![], Utc::now())
            .unwrap();
        assert_eq!(message.args, vec![json!(4)]);
    }

    #[test]
    fn nested_canvases_malformed_and_deep_chains_are_refused() {
        let nested = json!({"task": "celery.group", "subtask_type": "group"});
        assert!(matches!(
            Signature::from_value(&nested),
            Err(SignatureError::Nested { .. })
        ));
        assert!(matches!(
            Signature::from_value(&json!({"args": []})),
            Err(SignatureError::Malformed(_))
        ));
        let step = json!({"task": "x"});
        let deep = Value::Array(vec![step; MAX_CHAIN_STEPS + 1]);
        assert!(matches!(
            Signature::list_from_value(Some(&deep)),
            Err(SignatureError::TooDeep { .. })
        ));
        let countdown = Signature::named("x", vec![], Map::new()).option("countdown", "soon");
        assert!(
            countdown
                .to_message(None, None, vec![], Utc::now())
                .is_err()
        );
    }
}
