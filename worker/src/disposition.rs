//! What happened to a task, and so what happens to its message.

use std::time::Duration;

use celeriac_shared::{ResultMessage, TaskFailure};
use serde_json::value::RawValue;

use crate::{RetryPolicy, TaskError};

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

/// What to do with a message after handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Acknowledge: the message is done.
    Ack,
    /// Publish a copy with `retries + 1` through the broker-side delay,
    /// wait for its confirm, then acknowledge the original.
    Retry {
        /// How long the copy waits in the delay topology.
        delay: Duration,
    },
    /// Publish a copy with the reason to the dead-letter queue, wait for
    /// its confirm, then acknowledge the original.
    DeadLetter {
        /// The reason written into the dead letter's headers.
        reason: &'static str,
    },
}

/// The one place that decides a message's fate, given how often it was
/// retried and the task's retry policy.
pub(crate) fn disposition(outcome: &Outcome, retries: u32, policy: &RetryPolicy) -> Disposition {
    match outcome {
        Outcome::Succeeded(_) => Disposition::Ack,
        Outcome::Expired => Disposition::Ack,
        Outcome::Failed(TaskError::Retry { countdown, .. }) => retry(retries, policy, *countdown),
        Outcome::Failed(TaskError::Reject { .. }) => Disposition::DeadLetter { reason: "rejected" },
        Outcome::Failed(TaskError::Failed { .. }) | Outcome::Panicked(_) | Outcome::TimedOut(_) => {
            if policy.retry_unexpected {
                retry(retries, policy, None)
            } else {
                Disposition::DeadLetter { reason: "failed" }
            }
        }
        Outcome::DeliveryLimit(_) => Disposition::DeadLetter {
            reason: "delivery limit",
        },
        Outcome::UnknownTask => Disposition::DeadLetter {
            reason: "unknown task",
        },
        Outcome::BadArguments(_) => Disposition::DeadLetter {
            reason: "bad arguments",
        },
        Outcome::Undecodable(_) => Disposition::DeadLetter {
            reason: "undecodable",
        },
    }
}

fn retry(retries: u32, policy: &RetryPolicy, countdown: Option<Duration>) -> Disposition {
    if retries >= policy.max_retries {
        return Disposition::DeadLetter {
            reason: "max retries exceeded",
        };
    }
    let delay = countdown.unwrap_or_else(|| policy.backoff.delay(retries));
    Disposition::Retry { delay }
}

impl Outcome {
    /// Whether the outcome is an error: everything but success and an
    /// expired task (not run, but not an error either).
    pub(crate) fn is_failure(&self) -> bool {
        match self {
            Outcome::Succeeded(_) | Outcome::Expired => false,
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
            (Outcome::Expired, Some(failure)) => ResultMessage::revoked(task_id, &failure),
            (_, Some(failure)) => ResultMessage::failure(task_id, &failure),
            (_, None) => unreachable!("every outcome but success has a failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Outcome {
        Outcome::Succeeded(RawValue::from_string("1".into()).unwrap())
    }

    #[test]
    fn success_and_expiry_are_acknowledged() {
        let policy = RetryPolicy::default();
        assert_eq!(disposition(&ok(), 0, &policy), Disposition::Ack);
        assert_eq!(disposition(&Outcome::Expired, 0, &policy), Disposition::Ack);
    }

    #[test]
    fn expected_and_unexpected_failures_retry_until_the_limit() {
        let policy = RetryPolicy::default();
        let countdown = Outcome::Failed(TaskError::retry_after("x", Duration::from_secs(7)));
        assert_eq!(
            disposition(&countdown, 2, &policy),
            Disposition::Retry {
                delay: Duration::from_secs(7)
            }
        );
        for outcome in [
            Outcome::Failed(TaskError::failed("x")),
            Outcome::Panicked("x".into()),
            Outcome::TimedOut(Duration::from_secs(1)),
        ] {
            assert!(matches!(
                disposition(&outcome, 0, &policy),
                Disposition::Retry { .. }
            ));
            assert_eq!(
                disposition(&outcome, 3, &policy),
                Disposition::DeadLetter {
                    reason: "max retries exceeded"
                }
            );
        }
        let strict = RetryPolicy {
            retry_unexpected: false,
            ..RetryPolicy::default()
        };
        assert_eq!(
            disposition(&Outcome::Panicked("x".into()), 0, &strict),
            Disposition::DeadLetter { reason: "failed" }
        );
    }

    #[test]
    fn unusable_and_rejected_messages_are_dead_lettered_at_once() {
        let policy = RetryPolicy::default();
        for (outcome, reason) in [
            (Outcome::Failed(TaskError::reject("x")), "rejected"),
            (Outcome::UnknownTask, "unknown task"),
            (Outcome::DeliveryLimit(6), "delivery limit"),
        ] {
            assert_eq!(
                disposition(&outcome, 0, &policy),
                Disposition::DeadLetter { reason }
            );
        }
    }

    #[test]
    fn an_unknown_task_is_reported_as_celerys_not_registered() {
        let failure = Outcome::UnknownTask.failure("nope").unwrap();
        assert_eq!(failure.exc_type, "NotRegistered");
        assert_eq!(failure.message, "'nope'");
    }
}
