//! Sends Celery's task events (see `celeriac_shared::TaskEvent`) when they
//! are on: from the start with [`WorkerConfig::task_events`]
//! (`--task-events`/`-E` on the demo worker), or after an `enable_events`
//! control command, which Flower sends every few seconds. Off, they cost
//! one atomic load per task.
//!
//! Events are transient and unconfirmed, as Celery's; a lost event is not
//! a lost task. The dispatcher only hands them to the session's
//! [`EventFlusher`], after the task's message is settled, so they never
//! delay an acknowledgement.
//!
//! [`WorkerConfig::task_events`]: crate::WorkerConfig::task_events

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use celeriac_shared::{
    EVENT_EXCHANGE, TASK_EVENTS_BATCH_KEY, TaskEvent, TaskEventKind, TaskFailure, TaskMessage,
    python_repr,
};
use lapin::Channel;
use lapin::options::BasicPublishOptions;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

/// Whether task events are on, shared by every session of a worker and
/// its control commands.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSwitch(Arc<AtomicBool>);

impl EventSwitch {
    /// A switch, on or off.
    pub(crate) fn new(on: bool) -> Self {
        Self(Arc::new(AtomicBool::new(on)))
    }

    /// Turns events on or off; whether they were on.
    pub(crate) fn set(&self, on: bool) -> bool {
        self.0.swap(on, Ordering::Relaxed)
    }

    /// Whether events are on.
    pub(crate) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The most events one batch message carries.
const MAX_BATCH: usize = 500;

/// Hands one session's task events to its [`EventFlusher`].
pub(crate) struct TaskEvents {
    /// Whether to send.
    pub(crate) switch: EventSwitch,
    /// Where events go to be published.
    pub(crate) batches: mpsc::UnboundedSender<TaskEvent>,
    /// The flusher, taken out when the session closes.
    pub(crate) flusher: std::sync::Mutex<Option<EventFlusher>>,
    /// The worker's node name.
    pub(crate) hostname: String,
    /// The Lamport clock of this worker's events.
    pub(crate) clock: Arc<AtomicU64>,
}

impl TaskEvents {
    /// `task-received`, with the name, arguments and workflow ids.
    pub(crate) async fn received(&self, message: &TaskMessage) {
        if !self.switch.is_on() {
            return;
        }
        let headers = &message.headers;
        let args = headers
            .argsrepr
            .clone()
            .unwrap_or_else(|| python_repr(&Value::Array(message.args.clone())));
        let kwargs = headers
            .kwargsrepr
            .clone()
            .unwrap_or_else(|| python_repr(&Value::Object(message.kwargs.clone())));
        let fields = json!({
            "name": message.task(),
            "args": args,
            "kwargs": kwargs,
            "retries": headers.retries,
            "root_id": headers.root_id,
            "parent_id": headers.parent_id,
            "eta": headers.eta.map(|t| t.to_rfc3339()),
            "expires": headers.expires.map(|t| t.to_rfc3339()),
        });
        self.send(TaskEventKind::Received, message.id(), fields)
            .await;
    }

    /// `task-started`.
    pub(crate) async fn started(&self, task_id: &str) {
        if self.switch.is_on() {
            self.send(TaskEventKind::Started, task_id, json!({})).await;
        }
    }

    /// `task-succeeded`, with the result's repr and the runtime in
    /// seconds.
    pub(crate) async fn succeeded(&self, task_id: &str, result: &str, runtime: f64) {
        if !self.switch.is_on() {
            return;
        }
        let result =
            serde_json::from_str(result).map_or_else(|_| result.to_owned(), |v| python_repr(&v));
        let fields = json!({"result": result, "runtime": runtime});
        self.send(TaskEventKind::Succeeded, task_id, fields).await;
    }

    /// `task-failed` or `task-retried`, with the exception's repr and the
    /// traceback.
    pub(crate) async fn failed(&self, task_id: &str, failure: &TaskFailure, retried: bool) {
        if !self.switch.is_on() {
            return;
        }
        let kind = match retried {
            true => TaskEventKind::Retried,
            false => TaskEventKind::Failed,
        };
        let exception = format!(
            "{}({})",
            failure.exc_type,
            python_repr(&json!(failure.message))
        );
        let fields = json!({"exception": exception, "traceback": failure.traceback});
        self.send(kind, task_id, fields).await;
    }

    /// `task-revoked`: the task expired or was revoked, and did not run
    /// (or, `terminated`, was cancelled while it ran).
    pub(crate) async fn revoked(&self, task_id: &str, expired: bool, terminated: bool) {
        if self.switch.is_on() {
            let signum = terminated.then_some(15);
            let fields = json!({"terminated": terminated, "signum": signum, "expired": expired});
            self.send(TaskEventKind::Revoked, task_id, fields).await;
        }
    }

    async fn send(&self, kind: TaskEventKind, task_id: &str, fields: Value) {
        let Value::Object(fields) = fields else {
            return;
        };
        let _ = self.batches.send(self.event(kind, task_id, fields));
    }

    /// The flusher, to stop once the session's tasks are done.
    pub(crate) fn take_flusher(&self) -> Option<EventFlusher> {
        self.flusher
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn event(&self, kind: TaskEventKind, task_id: &str, fields: Map<String, Value>) -> TaskEvent {
        let now = chrono::Utc::now();
        TaskEvent {
            kind,
            uuid: task_id.to_owned(),
            hostname: self.hostname.clone(),
            timestamp: now.timestamp_micros() as f64 / 1e6,
            utcoffset: 0,
            pid: std::process::id(),
            clock: self.clock.fetch_add(1, Ordering::Relaxed) + 1,
            fields,
        }
    }
}

/// Publishes a session's task events on a channel of its own, batching
/// what accumulates while a publish is under way into one message, as
/// Celery's buffered dispatcher does (a JSON list with routing key
/// `task.multi`): at a high task rate a few messages carry many events, so
/// the broker's work per task stays small.
pub(crate) struct EventFlusher {
    task: JoinHandle<()>,
    channel: Channel,
}

impl EventFlusher {
    /// Starts publishing the events sent to the returned sender.
    pub(crate) fn start(channel: Channel) -> (mpsc::UnboundedSender<TaskEvent>, Self) {
        let (events, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(flush(receiver, channel.clone()));
        (events, Self { task, channel })
    }

    /// Publishes what is left once every sender is gone (within a
    /// second), then closes the channel.
    pub(crate) async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        let _ = self.channel.close(200, "worker shutdown".into()).await;
    }
}

async fn flush(mut events: mpsc::UnboundedReceiver<TaskEvent>, channel: Channel) {
    let mut batch = Vec::new();
    while let Some(event) = events.recv().await {
        batch.push(event);
        while batch.len() < MAX_BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        publish(&channel, &batch).await;
        batch.clear();
    }
}

async fn publish(channel: &Channel, batch: &[TaskEvent]) {
    let (encoded, key) = match batch {
        [event] => (event.encode(), event.kind.routing_key()),
        events => (TaskEvent::encode_batch(events), TASK_EVENTS_BATCH_KEY),
    };
    let Ok((body, properties)) = encoded else {
        return;
    };
    let published = channel
        .basic_publish(
            EVENT_EXCHANGE.into(),
            key.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await;
    if let Err(err) = published {
        debug!(events = batch.len(), error = %err, "task events not sent");
    }
}
