//! The sending interface shared by the AMQP producer and the worker's
//! eager runner, and the options of a send.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::{Error, ResultLost, Task, TaskFailure, TaskMessage, Uniqueness, encode_arguments};

/// Per-call options of a send. Every field defaults to "not set".
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Send to this queue, overriding the routing rules.
    pub queue: Option<String>,
    /// Use this task id instead of a fresh UUID.
    pub task_id: Option<String>,
    /// AMQP priority (needs a queue with `x-max-priority`).
    pub priority: Option<u8>,
    /// Discard the task if it has not started within this time: sets the
    /// `expires` header and the AMQP `expiration`.
    pub expires: Option<Duration>,
    /// Run the task no earlier than this long from now (the `eta` header).
    pub countdown: Option<Duration>,
    /// Run the task no earlier than this time (the `eta` header). Beats
    /// `countdown`.
    pub eta: Option<DateTime<FixedOffset>>,
    /// Cancel the task when it runs longer than this (the hard limit of
    /// the `timelimit` header).
    pub time_limit: Option<Duration>,
    /// Extra application headers.
    pub headers: Map<String, Value>,
    /// Do not send a result back; the caller cannot wait for one.
    pub ignore_result: bool,
    /// Send only if no other task holds this key: a send whose key is held
    /// publishes nothing and names the holder instead. The key travels in
    /// the `celeriac_unique_key` and `celeriac_unique_until` headers, so
    /// that the worker releases it. Defaults to none.
    pub unique: Option<Uniqueness>,
}

impl SendOptions {
    /// Options with `queue` set.
    pub fn queue(queue: impl Into<String>) -> Self {
        Self {
            queue: Some(queue.into()),
            ..Self::default()
        }
    }

    /// Options with `unique` set.
    pub fn unique(unique: Uniqueness) -> Self {
        Self {
            unique: Some(unique),
            ..Self::default()
        }
    }

    /// Fire-and-forget options: no result is sent back.
    pub fn ignore_result() -> Self {
        Self {
            ignore_result: true,
            ..Self::default()
        }
    }

    /// Writes the options into a message's headers and properties.
    pub fn apply(&self, message: &mut TaskMessage, now: DateTime<Utc>) {
        let headers = &mut message.headers;
        if let Some(id) = &self.task_id {
            headers.id = id.clone();
            headers.root_id = Some(id.clone());
        }
        let offset = |d: Duration| {
            let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
            now.checked_add_signed(d)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                .fixed_offset()
        };
        headers.eta = self.eta.or_else(|| self.countdown.map(offset));
        headers.expires = self.expires.map(offset);
        headers.ignore_result = self.ignore_result;
        if self.time_limit.is_some() {
            headers.timelimit.hard = self.time_limit;
        }
        for (key, value) in &self.headers {
            headers.extra.insert(key.clone(), value.clone());
        }
        if let Some(unique) = &self.unique {
            unique.write_headers(&mut headers.extra);
        }
        message.priority = self.priority;
    }
}

/// Why a call did not produce a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The task ran and failed; the failure came back from the worker.
    #[error("task {task_id} failed: {failure}")]
    Failed {
        /// The task id.
        task_id: String,
        /// The exception type, message and traceback.
        failure: TaskFailure,
    },
    /// No result arrived in time.
    #[error("task {task_id} timed out after {timeout:?} waiting for its result")]
    Timeout {
        /// The task id.
        task_id: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The result cannot be waited for: it was sent with `ignore_result`.
    #[error("task {task_id} was sent with ignore_result; there is no result to wait for")]
    ResultIgnored {
        /// The task id.
        task_id: String,
    },
    /// The result channel was lost (e.g. the broker connection dropped)
    /// before the result arrived.
    #[error("lost the result of task {task_id}: {reason}")]
    ResultLost {
        /// The task id.
        task_id: String,
        /// Why.
        reason: ResultLost,
    },
    /// The send carried a uniqueness key that task `task_id` held, so
    /// nothing was published; that task's result goes to the caller that
    /// sent it, not to this one.
    #[error(
        "the uniqueness key was held by task {task_id}; its result goes to the caller that sent it"
    )]
    Duplicate {
        /// The id of the task that holds the key.
        task_id: String,
    },
    /// Encoding or decoding failed (arguments or result do not fit).
    #[error(transparent)]
    Codec(#[from] Error),
    /// The task could not be sent.
    #[error("sending the task failed")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl CallError {
    /// The failure reported by the worker, if the task ran and failed.
    pub fn failure(&self) -> Option<&TaskFailure> {
        match self {
            CallError::Failed { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// Something that runs tasks: the AMQP `Producer`, or the worker crate's
/// `EagerSender` that runs handlers in-process.
///
/// Application code written against `Sender` is unit-tested with the eager
/// runner and deployed with the producer. Both encode and decode every
/// message and result exactly as on the wire.
pub trait Sender: Send + Sync {
    /// Sends a task by name with raw JSON arguments and returns its id once
    /// it was accepted, without waiting for a result.
    fn send_task_raw(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> impl Future<Output = Result<String, CallError>> + Send;

    /// Sends a task by name and waits up to `timeout` for its result, as
    /// JSON text.
    fn call_task_raw(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
        timeout: Duration,
    ) -> impl Future<Output = Result<Box<RawValue>, CallError>> + Send;

    /// Sends a typed task and returns its id, without waiting.
    fn send_task<T: Task>(
        &self,
        args: &T::Args,
        options: SendOptions,
    ) -> impl Future<Output = Result<String, CallError>> + Send
    where
        Self: Sized,
    {
        let encoded = encode_arguments(args);
        async move {
            let (args, kwargs) = encoded?;
            self.send_task_raw(T::NAME, args, kwargs, options).await
        }
    }

    /// Sends a typed task and waits up to `timeout` for its typed output.
    fn call_task<T: Task>(
        &self,
        args: &T::Args,
        timeout: Duration,
    ) -> impl Future<Output = Result<T::Output, CallError>> + Send
    where
        Self: Sized,
    {
        let encoded = encode_arguments(args);
        async move {
            let (args, kwargs) = encoded?;
            let raw = self
                .call_task_raw(T::NAME, args, kwargs, SendOptions::default(), timeout)
                .await?;
            decode_output::<T::Output>(T::NAME, &raw)
        }
    }
}

/// Decodes a task's JSON result into its output type.
pub fn decode_output<O: serde::de::DeserializeOwned>(
    task: &str,
    raw: &RawValue,
) -> Result<O, CallError> {
    serde_json::from_str(raw.get()).map_err(|err| {
        CallError::Codec(Error::Arguments {
            task: task.to_owned(),
            reason: format!("result does not fit the output type: {err}"),
        })
    })
}
