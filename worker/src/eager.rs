//! Run tasks in-process, for tests and debugging (Celery's
//! `task_always_eager`).

use std::time::Duration;

use celeriac_shared::{CallError, ResultMessage, SendOptions, Sender, TaskMessage};
use chrono::Utc;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::Registry;
use crate::outcome::Outcome;
use crate::plan::{Disposition, disposition};

/// A [`Sender`] that runs the registered handler at once, in the calling
/// task, and returns its result. Retries run again at once (no delay) up
/// to the task's retry policy.
///
/// Every message and result goes through the same encode and decode path
/// as on the wire, so arguments or results that would not survive
/// RabbitMQ fail here too.
///
/// Eager mode ignores queues, priorities, etas, expiries and uniqueness
/// keys ([`SendOptions::unique`]): every send runs.
#[derive(Debug, Clone)]
pub struct EagerSender {
    registry: Registry,
    max_message_size: usize,
}

impl EagerSender {
    /// An eager sender running the handlers of `registry`.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            max_message_size: celeriac_shared::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Runs the task through the wire codec and returns its result message,
    /// also through the wire codec. Retries run again at once, without
    /// their delay, up to the task's retry policy; eta is ignored.
    async fn run(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: &SendOptions,
    ) -> Result<ResultMessage, CallError> {
        let mut message = TaskMessage::new(task, args, kwargs);
        options.apply(&mut message, Utc::now());
        let policy = self.registry.options(task).retry.unwrap_or_default();
        loop {
            let (body, properties) = message.encode(Utc::now())?;
            let outcome = match TaskMessage::decode(&properties, &body, self.max_message_size) {
                Ok(mut decoded) => self.registry.execute(&mut decoded, false).await,
                Err(err) => Outcome::Undecodable(err),
            };
            let retries = message.headers.retries;
            if let Disposition::Retry { .. } = disposition(&outcome, retries, &policy) {
                message.headers.retries += 1;
                continue;
            }
            let (body, _) = outcome.result_message(message.id(), task).encode()?;
            return Ok(ResultMessage::decode(&body)?);
        }
    }
}

impl Sender for EagerSender {
    async fn send_task_raw(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Result<String, CallError> {
        let result = self.run(task, args, kwargs, &options).await?;
        Ok(result.task_id)
    }

    async fn call_task_raw(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
        timeout: Duration,
    ) -> Result<Box<RawValue>, CallError> {
        let mut options = options;
        let task_id = options
            .task_id
            .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
            .clone();
        let run = self.run(task, args, kwargs, &options);
        let result = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| CallError::Timeout { task_id, timeout })??;
        match result.outcome() {
            Some(Ok(raw)) => Ok(raw.to_owned()),
            Some(Err(failure)) => Err(CallError::Failed {
                task_id: result.task_id.clone(),
                failure,
            }),
            None => unreachable!("eager results are final"),
        }
    }
}
