//! The tasks a worker runs right now, for the `active` control command.

use std::collections::HashMap;
use std::sync::Mutex;

use celeriac_shared::{TaskMessage, python_repr};
use serde_json::{Value, json};

/// The running tasks by id, as Celery's `Request.info()` describes them.
#[derive(Debug, Default)]
pub(crate) struct ActiveTasks {
    running: Mutex<HashMap<String, Value>>,
}

impl ActiveTasks {
    /// Records that `message`, from `exchange`/`routing_key`, started now.
    pub(crate) fn started(
        &self,
        message: &TaskMessage,
        queue: &str,
        hostname: &str,
        redelivered: bool,
    ) {
        let headers = &message.headers;
        let info = json!({
            "id": message.id(),
            "name": message.task(),
            "args": headers.argsrepr.clone().unwrap_or_else(|| python_repr(&Value::Array(message.args.clone()))),
            "kwargs": headers.kwargsrepr.clone().unwrap_or_else(|| python_repr(&Value::Object(message.kwargs.clone()))),
            "type": message.task(),
            "hostname": hostname,
            "time_start": chrono::Utc::now().timestamp_micros() as f64 / 1e6,
            "acknowledged": false,
            "delivery_info": {"exchange": "", "routing_key": queue, "priority": message.priority, "redelivered": redelivered},
            "worker_pid": std::process::id(),
        });
        self.lock().insert(message.id().to_owned(), info);
    }

    /// Records that task `id` finished.
    pub(crate) fn finished(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Every running task's description.
    pub(crate) fn list(&self) -> Vec<Value> {
        self.lock().values().cloned().collect()
    }

    /// How many tasks run.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
