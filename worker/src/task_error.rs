//! The error a task handler returns, and what it does to the message.

use std::fmt;
use std::time::Duration;

use celeriac_shared::TaskFailure;

/// A handler's failure. Each variant says what happens to the message.
///
/// When the task fails for good, the failure is reported to a waiting
/// caller as Celery's `FAILURE` state with the exception type and module,
/// the message, and the error chain as traceback, so a Python caller's
/// `AsyncResult.get()` raises it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// An expected, temporary failure (a timeout talking to a slow API).
    ///
    /// Fate: retried through the broker-side delay after `countdown`, or
    /// after the task's backoff when `None`; dead-lettered with reason
    /// `max retries exceeded` once the retry policy's `max_retries` is
    /// reached.
    Retry {
        /// What went wrong.
        message: String,
        /// Retry after exactly this long instead of the backoff.
        countdown: Option<Duration>,
    },
    /// A permanent failure: the input can never succeed.
    ///
    /// Fate: dead-lettered at once with reason `rejected`; never retried.
    Reject {
        /// Why the task was rejected.
        message: String,
    },
    /// An unexpected failure (a bug, a broken invariant).
    ///
    /// Fate: retried like [`TaskError::Retry`] (with the backoff) unless
    /// the task's retry policy sets `retry_unexpected = false`, then
    /// dead-lettered. Panics and time limits are treated the same way.
    Failed {
        /// The exception type reported to callers. Defaults to `TaskError`.
        exc_type: String,
        /// The exception's module reported to callers. Defaults to
        /// `celeriac`; set `builtins` with a builtin exception name (e.g.
        /// `ValueError`) so that Python callers can catch it by class.
        exc_module: String,
        /// What went wrong.
        message: String,
        /// The error chain, outermost first, reported as the traceback.
        chain: Vec<String>,
    },
}

impl TaskError {
    /// An expected failure, retried with the task's backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        TaskError::Retry {
            message: message.into(),
            countdown: None,
        }
    }

    /// An expected failure, retried after exactly `countdown`.
    pub fn retry_after(message: impl Into<String>, countdown: Duration) -> Self {
        TaskError::Retry {
            message: message.into(),
            countdown: Some(countdown),
        }
    }

    /// A permanent failure with this message.
    pub fn reject(message: impl Into<String>) -> Self {
        TaskError::Reject {
            message: message.into(),
        }
    }

    /// The task ran past its soft time limit: Celery's
    /// `billiard.exceptions.SoftTimeLimitExceeded`, an unexpected failure
    /// (retried as the task's policy says for those).
    pub fn soft_time_limit_exceeded(limit: Duration) -> Self {
        TaskError::Failed {
            exc_type: "SoftTimeLimitExceeded".into(),
            exc_module: "billiard.exceptions".into(),
            message: format!("SoftTimeLimitExceeded({:?})", limit.as_secs_f64()),
            chain: Vec::new(),
        }
    }

    /// An unexpected failure with this message.
    pub fn failed(message: impl Into<String>) -> Self {
        TaskError::Failed {
            exc_type: "TaskError".into(),
            exc_module: "celeriac".into(),
            message: message.into(),
            chain: Vec::new(),
        }
    }

    /// An unexpected failure from an error value, keeping its source chain
    /// for the traceback.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        TaskError::Failed {
            exc_type: "TaskError".into(),
            exc_module: "celeriac".into(),
            message: error.to_string(),
            chain,
        }
    }

    /// Sets the exception type and module reported to callers, e.g.
    /// `("ValueError", "builtins")` so that a Python caller's
    /// `except ValueError` catches it. Only changes [`TaskError::Failed`].
    pub fn with_exception(
        self,
        exc_type: impl Into<String>,
        exc_module: impl Into<String>,
    ) -> Self {
        match self {
            TaskError::Failed { message, chain, .. } => TaskError::Failed {
                exc_type: exc_type.into(),
                exc_module: exc_module.into(),
                message,
                chain,
            },
            other => other,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            TaskError::Retry { message, .. }
            | TaskError::Reject { message }
            | TaskError::Failed { message, .. } => message,
        }
    }

    /// The failure as it crosses the wire to the caller.
    pub fn to_failure(&self) -> TaskFailure {
        let (exc_type, exc_module, chain): (&str, &str, &[String]) = match self {
            TaskError::Failed {
                exc_type,
                exc_module,
                chain,
                ..
            } => (exc_type, exc_module, chain),
            TaskError::Retry { .. } => ("Retry", "celeriac", &[]),
            TaskError::Reject { .. } => ("Reject", "celeriac", &[]),
        };
        let mut traceback = format!("{exc_type}: {}\n", self.message());
        for cause in chain {
            traceback.push_str(&format!("Caused by: {cause}\n"));
        }
        TaskFailure {
            exc_type: exc_type.to_owned(),
            message: self.message().to_owned(),
            exc_module: Some(exc_module.to_owned()),
            traceback: Some(traceback),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Retry { message, .. } => write!(f, "retry: {message}"),
            TaskError::Reject { message } => write!(f, "rejected: {message}"),
            TaskError::Failed {
                exc_type, message, ..
            } => write!(f, "{exc_type}: {message}"),
        }
    }
}

impl std::error::Error for TaskError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("report failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_error_chain_becomes_the_traceback() {
        let err = Outer(std::io::Error::other("disk full"));
        let failure = TaskError::from_error(&err).to_failure();
        assert_eq!(failure.message, "report failed");
        let traceback = failure.traceback.unwrap_or_default();
        assert!(traceback.contains("Caused by: disk full"), "{traceback}");
    }

    #[test]
    fn the_exception_type_and_module_can_be_chosen() {
        let failure = TaskError::failed("bad")
            .with_exception("ValueError", "builtins")
            .to_failure();
        assert_eq!(failure.exc_type, "ValueError");
        assert_eq!(failure.exc_module.as_deref(), Some("builtins"));
    }
}
