//! How handling a delivery ended, and what the caller and the dead
//! letter are told about it.

use std::time::Duration;

use celeriac_shared::{ResultMessage, TaskFailure};
use serde_json::value::RawValue;

use crate::TaskError;

/// How handling one delivery ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The handler returned a result.
    Succeeded(Box<RawValue>),
    /// The handler returned an error.
    Failed(TaskError),
    /// The handler panicked; the payload's message.
    Panicked(String),
    /// The handler ran past its time limit and was cancelled.
    TimedOut(Duration),
    /// The task's `expires` had passed when it arrived; it did not run.
    Expired,
    /// The task was revoked: it did not run, or (`terminated`) it was
    /// cancelled while it ran.
    Revoked {
        /// Whether it was running.
        terminated: bool,
    },
    /// The message was delivered this many times without being settled
    /// (it crashes or stalls every worker that takes it); it did not run.
    DeliveryLimit(u32),
    /// No handler is registered for the task name.
    UnknownTask,
    /// The arguments do not fit the task's argument type.
    BadArguments(celeriac_shared::Error),
    /// The message is not a task message celeriac accepts (not JSON, wrong
    /// shape, no `task` header, pickle or YAML, oversize).
    Undecodable(celeriac_shared::Error),
}

impl Outcome {
    /// Whether the outcome is an error: everything but success and an
    /// expired task (not run, but not an error either).
    pub(crate) fn is_failure(&self) -> bool {
        match self {
            Outcome::Succeeded(_) | Outcome::Expired | Outcome::Revoked { .. } => false,
            Outcome::Failed(_)
            | Outcome::Panicked(_)
            | Outcome::TimedOut(_)
            | Outcome::DeliveryLimit(_)
            | Outcome::UnknownTask
            | Outcome::BadArguments(_)
            | Outcome::Undecodable(_) => true,
        }
    }

    /// A short word for logs.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(TaskError::Retry { .. }) => "failed (retryable)",
            Outcome::Failed(TaskError::Reject { .. }) => "rejected",
            Outcome::Failed(TaskError::Failed { .. }) => "failed",
            Outcome::Panicked(_) => "panicked",
            Outcome::TimedOut(_) => "timed out",
            Outcome::Expired => "expired",
            Outcome::Revoked { .. } => "revoked",
            Outcome::DeliveryLimit(_) => "over the delivery limit",
            Outcome::UnknownTask => "unknown task",
            Outcome::BadArguments(_) => "bad arguments",
            Outcome::Undecodable(_) => "undecodable",
        }
    }

    /// The failure reported to the caller and written into a dead letter,
    /// as Celery would report it. `None` for success.
    pub(crate) fn failure(&self, task: &str) -> Option<TaskFailure> {
        let failure = |exc_type: &str, exc_module: &str, message: String| TaskFailure {
            traceback: Some(format!("{exc_type}: {message}\n")),
            exc_type: exc_type.to_owned(),
            message,
            exc_module: Some(exc_module.to_owned()),
        };
        match self {
            Outcome::Succeeded(_) => None,
            Outcome::Failed(err) => Some(err.to_failure()),
            Outcome::Panicked(message) => Some(failure("Panic", "celeriac", message.clone())),
            Outcome::TimedOut(limit) => Some(failure(
                "TimeLimitExceeded",
                "billiard.exceptions",
                format!("task {task} ran longer than {limit:?}"),
            )),
            Outcome::Revoked { .. } => Some(failure(
                "TaskRevokedError",
                "celery.exceptions",
                format!("task {task} was revoked"),
            )),
            Outcome::Expired => Some(failure(
                "TaskRevokedError",
                "celery.exceptions",
                format!("task {task} expired before it started"),
            )),
            Outcome::DeliveryLimit(count) => Some(failure(
                "DeliveryLimit",
                "celeriac",
                format!("delivered {count} times without finishing"),
            )),
            Outcome::UnknownTask => Some(failure(
                "NotRegistered",
                "celery.exceptions",
                format!("'{task}'"),
            )),
            Outcome::BadArguments(err) => Some(failure("TypeError", "builtins", err.to_string())),
            Outcome::Undecodable(err) => {
                Some(failure("DecodeError", "kombu.exceptions", err.to_string()))
            }
        }
    }

    /// The `RETRY` state message Celery sends a waiting caller when a task
    /// is retried (callers keep waiting for the final state).
    pub(crate) fn retry_message(&self, task_id: &str, task: &str) -> ResultMessage {
        let mut message = self.result_message(task_id, task);
        message.status = celeriac_shared::TaskState::Retry;
        message
    }

    /// The final result message for a caller waiting on `task_id`:
    /// `SUCCESS`, `REVOKED` for an expired task, `FAILURE` otherwise.
    pub(crate) fn result_message(&self, task_id: &str, task: &str) -> ResultMessage {
        match (self, self.failure(task)) {
            (Outcome::Succeeded(result), _) => ResultMessage::success(task_id, result.clone()),
            (Outcome::Expired | Outcome::Revoked { .. }, Some(failure)) => {
                ResultMessage::revoked(task_id, &failure)
            }
            (_, Some(failure)) => ResultMessage::failure(task_id, &failure),
            (_, None) => unreachable!("every outcome but success has a failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_task_is_reported_as_celerys_not_registered() {
        let failure = Outcome::UnknownTask.failure("nope").unwrap();
        assert_eq!(failure.exc_type, "NotRegistered");
        assert_eq!(failure.message, "'nope'");
    }
}
