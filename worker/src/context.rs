//! What a handler knows about the task it runs.

use std::time::Duration;

use celeriac_shared::TaskHeaders;
use tokio::time::Instant;

use crate::TaskError;

/// The running task's metadata, passed to every handler.
#[derive(Debug, Clone)]
pub struct TaskContext {
    headers: TaskHeaders,
    redelivered: bool,
    /// When the soft time limit strikes, and the limit.
    soft_limit: Option<(Instant, Duration)>,
}

impl TaskContext {
    pub(crate) fn new(headers: TaskHeaders, redelivered: bool, soft: Option<Duration>) -> Self {
        Self {
            headers,
            redelivered,
            soft_limit: soft.map(|limit| (Instant::now() + limit, limit)),
        }
    }

    /// Resolves once the task has run for its soft time limit (the
    /// message's soft `timelimit` or [`TaskOptions::soft_time_limit`],
    /// the shorter), with the error to stop with; never without a soft
    /// limit. A handler that can stop early races its work against it:
    ///
    /// ```no_run
    /// # use celeriac_worker::{TaskContext, TaskError};
    /// # async fn work() -> Result<u64, TaskError> { Ok(1) }
    /// # async fn handler(ctx: TaskContext) -> Result<u64, TaskError> {
    /// tokio::select! {
    ///     done = work() => done,
    ///     stop = ctx.soft_time_limit() => Err(stop),
    /// }
    /// # }
    /// ```
    ///
    /// The error is Celery's `SoftTimeLimitExceeded`
    /// (`billiard.exceptions`), so a Python caller catches the class it
    /// knows. The hard time limit still cancels the task regardless.
    ///
    /// [`TaskOptions::soft_time_limit`]: crate::TaskOptions::soft_time_limit
    pub async fn soft_time_limit(&self) -> TaskError {
        match self.soft_limit {
            Some((at, limit)) => {
                tokio::time::sleep_until(at).await;
                TaskError::soft_time_limit_exceeded(limit)
            }
            None => std::future::pending().await,
        }
    }

    /// Whether the soft time limit has passed: for handlers that check
    /// between steps.
    pub fn soft_time_limit_exceeded(&self) -> bool {
        self.soft_limit.is_some_and(|(at, _)| Instant::now() >= at)
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.headers.id
    }

    /// The task name.
    pub fn task(&self) -> &str {
        &self.headers.task
    }

    /// How often the task was retried before this attempt.
    pub fn retries(&self) -> u32 {
        self.headers.retries
    }

    /// Whether the broker delivered this message before (the previous
    /// worker died or its channel closed before acknowledging it).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// All application headers of the message.
    pub fn headers(&self) -> &TaskHeaders {
        &self.headers
    }
}
