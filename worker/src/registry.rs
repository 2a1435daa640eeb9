//! The registered task handlers, by task name.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use celeriac_shared::{Task, TaskMessage, TimeLimit, decode_arguments};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::outcome::Outcome;
use crate::{RetryPolicy, TaskContext, TaskError};

type HandlerFuture = BoxFuture<'static, Result<Box<RawValue>, TaskError>>;

/// A type-erased handler: decodes the arguments (an error means they do not
/// fit the task) and returns the future that runs the task.
type Handler = Arc<
    dyn Fn(
            Vec<Value>,
            Map<String, Value>,
            TaskContext,
        ) -> Result<HandlerFuture, celeriac_shared::Error>
        + Send
        + Sync,
>;

/// Per-task settings given at registration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOptions {
    /// The task's retry policy. Defaults to the worker's
    /// ([`WorkerConfig::retry`](crate::WorkerConfig::retry)).
    pub retry: Option<RetryPolicy>,
    /// Cancel the task when it runs longer than this; a `timelimit` hard
    /// limit in the message applies too (the shorter wins). Defaults to
    /// none.
    pub time_limit: Option<Duration>,
    /// Signal the handler once it ran this long
    /// ([`TaskContext::soft_time_limit`]); a `timelimit` soft limit in the
    /// message applies too (the shorter wins). Defaults to none.
    pub soft_time_limit: Option<Duration>,
}

/// A registered handler with its options.
#[derive(Clone)]
struct Entry {
    handler: Handler,
    options: TaskOptions,
}

/// Task handlers by task name, shared by the [`Worker`](crate::Worker) and
/// the [`EagerSender`](crate::EagerSender).
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Entry>,
    /// Time limits changed while the worker runs (the `time_limit`
    /// control command), by task name; shared by the registry's clones.
    changed: Arc<RwLock<HashMap<String, TimeLimit>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the time limits of task `name` for as long as the worker
    /// runs (Celery's `time_limit` control command); `false` if no such
    /// task is registered.
    pub(crate) fn change_limits(&self, name: &str, limits: TimeLimit) -> bool {
        if !self.handlers.contains_key(name) {
            return false;
        }
        self.changed
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_owned(), limits);
        true
    }

    fn changed_limits(&self, name: &str) -> TimeLimit {
        self.changed
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    /// Registers `handler` for task `T`, replacing any handler registered
    /// under the same name.
    ///
    /// The handler gets the decoded arguments (from kwargs or positional
    /// args) and the task's context; its output is sent to the caller.
    pub fn register<T, F, Fut>(&mut self, handler: F) -> &mut Self
    where
        T: Task,
        F: Fn(T::Args, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        self.register_with::<T, F, Fut>(TaskOptions::default(), handler)
    }

    /// Registers `handler` for task `T` with its own retry policy or time
    /// limit.
    pub fn register_with<T, F, Fut>(&mut self, options: TaskOptions, handler: F) -> &mut Self
    where
        T: Task,
        F: Fn(T::Args, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |args, kwargs, ctx| {
            let args: T::Args = decode_arguments(T::NAME, args, kwargs)?;
            let run = handler(args, ctx);
            Ok(async move { encode_output(run.await?) }.boxed())
        });
        let entry = Entry {
            handler: erased,
            options,
        };
        self.handlers.insert(T::NAME.to_owned(), entry);
        self
    }

    /// The options `task` was registered with (defaults if unknown).
    pub(crate) fn options(&self, task: &str) -> TaskOptions {
        self.handlers
            .get(task)
            .map(|entry| entry.options.clone())
            .unwrap_or_default()
    }

    /// Whether a handler is registered for `task`.
    pub fn contains(&self, task: &str) -> bool {
        self.handlers.contains_key(task)
    }

    /// The registered task names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Runs the message's task; a panic in the handler becomes
    /// [`Outcome::Panicked`], running past the time limit (the task's or
    /// the message's hard limit, the shorter) [`Outcome::TimedOut`]. Takes
    /// the arguments out of the message.
    pub(crate) async fn execute(&self, message: &mut TaskMessage, redelivered: bool) -> Outcome {
        let Some(entry) = self.handlers.get(message.task()) else {
            return Outcome::UnknownTask;
        };
        let changed = self.changed_limits(message.task());
        let limit = shorter(
            changed.hard.or(entry.options.time_limit),
            message.headers.timelimit.hard,
        );
        let soft = shorter(
            changed.soft.or(entry.options.soft_time_limit),
            message.headers.timelimit.soft,
        );
        let handler = &entry.handler;
        let args = std::mem::take(&mut message.args);
        let kwargs = std::mem::take(&mut message.kwargs);
        let ctx = TaskContext::new(message.headers.clone(), redelivered, soft);
        let run = match handler(args, kwargs, ctx) {
            Ok(run) => run,
            Err(err) => return Outcome::BadArguments(err),
        };
        let run = AssertUnwindSafe(run).catch_unwind();
        let finished = match limit {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(finished) => finished,
                Err(_) => return Outcome::TimedOut(limit),
            },
            None => run.await,
        };
        match finished {
            Ok(Ok(result)) => Outcome::Succeeded(result),
            Ok(Err(err)) => Outcome::Failed(err),
            Err(panic) => Outcome::Panicked(panic_message(panic.as_ref())),
        }
    }
}

/// The shorter of two optional limits.
fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn encode_output<O: serde::Serialize>(output: O) -> Result<Box<RawValue>, TaskError> {
    serde_json::to_string(&output)
        .and_then(RawValue::from_string)
        .map_err(|err| TaskError::failed(format!("the result cannot be encoded as JSON: {err}")))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
