//! What a finished task sends on for its workflow, from its message's
//! `embed`, as Celery's `app/trace.py` and `backends/base.py` do. Pure: the
//! dispatcher publishes what these functions return.
//!
//! - After success: every `link` callback (the result prepended unless
//!   immutable), then the chain's next step (the last element of the
//!   reversed `chain`), with the rest of the chain, `parent_id` = this
//!   task and the same `root_id`.
//! - After a final failure: every errback with `(task_id,)`, and a
//!   `FAILURE` result to the `reply_to` of every remaining chain step, so
//!   a caller waiting on the chain gets the error.

use celeriac_shared::{ResultMessage, Signature, SignatureError, TaskFailure, TaskMessage};
use chrono::{DateTime, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::plan::Reply;
use crate::publish_error::PublishError;

/// A task a workflow sends on, and where to.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The message.
    pub(crate) message: TaskMessage,
    /// Where its signature says it goes; `None`: route it by task name.
    pub(crate) route: Option<Route>,
}

/// Where a signature's options send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// To a named queue (through its exchange and binding).
    Queue(String),
    /// To an exchange with a routing key.
    Exchange {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
}

/// Why a message's workflow cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkflowError {
    /// A signature in `embed` is malformed, nested, or the chain too deep.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The message is part of a Celery chord, which needs Celery's result
    /// backend to join: celeriac cannot complete it.
    #[error(
        "the task is part of a Celery chord (group {group}), which needs a Celery result backend to join; run the chord's header on Celery workers, or build the chord with celeriac's Producer::chord"
    )]
    CeleryChord {
        /// The chord's group id.
        group: String,
    },
    /// A step could not be sent: unroutable, refused, or not encodable.
    #[error("step {task} could not be sent: {source}")]
    Step {
        /// The step's task name.
        task: String,
        /// Why.
        #[source]
        source: Box<PublishError>,
    },
}

/// What to send after `message` succeeded with `result`.
pub(crate) fn after_success(
    message: &TaskMessage,
    result: &RawValue,
    now: DateTime<Utc>,
) -> Result<Vec<Outgoing>, WorkflowError> {
    let embed = &message.embed;
    if embed.chord.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(WorkflowError::CeleryChord {
            group: message.headers.group.clone().unwrap_or_default(),
        });
    }
    let callbacks = Signature::list_from_value(embed.callbacks.as_ref())?;
    let mut chain = Signature::list_from_value(embed.chain.as_ref())?;
    if callbacks.is_empty() && chain.is_empty() {
        return Ok(Vec::new());
    }
    let result: Value = serde_json::from_str(result.get())
        .map_err(|err| SignatureError::Malformed(format!("the result is not JSON: {err}")))?;
    let mut outgoing = Vec::with_capacity(callbacks.len() + 1);
    for callback in &callbacks {
        let sent = callback.to_message(Some(&result), Some(message), Vec::new(), now)?;
        outgoing.push(Outgoing::of(callback, sent));
    }
    if let Some(next) = chain.pop() {
        let sent = next.to_message(Some(&result), Some(message), chain, now)?;
        outgoing.push(Outgoing::of(&next, sent));
    }
    Ok(outgoing)
}

/// What to send after `message` failed for good with `failure`: the
/// errbacks, and the failure for every remaining chain step's caller.
pub(crate) fn after_failure(
    message: &TaskMessage,
    failure: &TaskFailure,
    now: DateTime<Utc>,
) -> Result<(Vec<Outgoing>, Vec<Reply>), WorkflowError> {
    let embed = &message.embed;
    let errbacks = Signature::list_from_value(embed.errbacks.as_ref())?;
    let chain = Signature::list_from_value(embed.chain.as_ref())?;
    let task_id = Value::String(message.id().to_owned());
    let mut outgoing = Vec::with_capacity(errbacks.len());
    for errback in &errbacks {
        let sent = errback.to_message(Some(&task_id), Some(message), Vec::new(), now)?;
        outgoing.push(Outgoing::of(errback, sent));
    }
    let replies = chain
        .iter()
        .filter_map(|step| {
            let (reply_to, id) = (step.reply_to()?, step.task_id()?);
            Some(Reply {
                reply_to: reply_to.to_owned(),
                result: ResultMessage::failure(id, failure),
            })
        })
        .collect();
    Ok((outgoing, replies))
}

impl Outgoing {
    fn of(signature: &Signature, message: TaskMessage) -> Self {
        let route = match (signature.queue(), signature.exchange_and_key()) {
            (Some(queue), _) => Some(Route::Queue(queue.to_owned())),
            (None, Some((exchange, key))) => Some(Route::Exchange {
                exchange: exchange.to_owned(),
                routing_key: key.to_owned(),
            }),
            (None, None) => None,
        };
        Self { message, route }
    }
}

/// Whether `message` has anything for [`after_success`] or
/// [`after_failure`] to do: the common case is a plain task, which costs
/// nothing more.
pub(crate) fn has_workflow(message: &TaskMessage) -> bool {
    let set = |value: &Option<Value>| value.as_ref().is_some_and(|v| !v.is_null());
    let embed = &message.embed;
    set(&embed.callbacks) || set(&embed.errbacks) || set(&embed.chain) || set(&embed.chord)
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    fn step(task: &str, id: &str) -> Value {
        json!({"task": task, "args": [1], "kwargs": {}, "options": {"task_id": id,
            "reply_to": "caller"}, "subtask_type": null, "immutable": false})
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn the_next_step_is_the_last_of_the_reversed_chain_and_carries_the_rest() {
        let mut message = TaskMessage::new("a", vec![], Map::new());
        message.embed.chain = Some(json!([step("c", "id-c"), step("b", "id-b")]));
        message.embed.callbacks = Some(json!([step("log", "id-log")]));
        let out = after_success(&message, &raw("5"), Utc::now()).unwrap();
        assert_eq!(out.len(), 2, "the callback, then the next step");
        assert_eq!(out[0].message.task(), "log");
        let next = &out[1].message;
        assert_eq!((next.task(), next.id()), ("b", "id-b"));
        assert_eq!(next.args, vec![json!(5), json!(1)]);
        assert_eq!(next.headers.parent_id.as_deref(), Some(message.id()));
        let rest = next.embed.chain.as_ref().unwrap().as_array().unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["task"], "c");
    }

    #[test]
    fn a_failure_reaches_errbacks_and_every_remaining_step() {
        let mut message = TaskMessage::new("a", vec![], Map::new());
        message.embed.chain = Some(json!([step("c", "id-c"), step("b", "id-b")]));
        message.embed.errbacks = Some(json!([step("on_error", "id-e")]));
        let failure = TaskFailure {
            exc_type: "ValueError".into(),
            message: "x".into(),
            exc_module: Some("builtins".into()),
            traceback: None,
        };
        let (out, replies) = after_failure(&message, &failure, Utc::now()).unwrap();
        assert_eq!(out[0].message.args, vec![json!(message.id()), json!(1)]);
        let ids: Vec<&str> = replies.iter().map(|r| r.result.task_id.as_str()).collect();
        assert_eq!(ids, ["id-c", "id-b"]);
    }

    #[test]
    fn a_celery_chord_part_is_refused_with_a_reason() {
        let mut message = TaskMessage::new("a", vec![], Map::new());
        message.embed.chord = Some(step("body", "id-body"));
        let err = after_success(&message, &raw("1"), Utc::now()).unwrap_err();
        assert!(err.to_string().contains("chord"), "{err}");
    }
}
