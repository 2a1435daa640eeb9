//! What a handler knows about the task it runs.

use celeriac_shared::TaskHeaders;

/// The running task's metadata, passed to every handler.
#[derive(Debug, Clone)]
pub struct TaskContext {
    headers: TaskHeaders,
    redelivered: bool,
}

impl TaskContext {
    pub(crate) fn new(headers: TaskHeaders, redelivered: bool) -> Self {
        Self {
            headers,
            redelivered,
        }
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
