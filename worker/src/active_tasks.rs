//! The tasks a worker runs right now, for the `active` control command.

use std::collections::HashMap;
use std::sync::Mutex;

use celeriac_shared::{TaskMessage, python_repr};
use serde_json::{Value, json};

/// The running tasks by id, as Celery's `Request.info()` describes them.
///
/// Every task is recorded as it starts, and `active` is asked for rarely:
/// so a start records only what the description needs, and the JSON is
/// built when asked for.
#[derive(Debug, Default)]
pub(crate) struct ActiveTasks {
    running: Mutex<HashMap<String, Running>>,
}

/// What `active` says of one running task, besides its id.
#[derive(Debug)]
struct Running {
    name: String,
    /// The arguments as the producer showed them (`argsrepr`), or as
    /// Python would.
    args: String,
    kwargs: String,
    /// Seconds since the epoch.
    time_start: f64,
    queue: String,
    priority: Option<u8>,
    redelivered: bool,
}

impl ActiveTasks {
    /// Records that `message`, from `queue`, started now.
    pub(crate) fn started(&self, message: &TaskMessage, queue: &str, redelivered: bool) {
        let headers = &message.headers;
        let running = Running {
            name: message.task().to_owned(),
            args: match &headers.argsrepr {
                Some(repr) => repr.clone(),
                None => python_repr(&Value::Array(message.args.clone())),
            },
            kwargs: match &headers.kwargsrepr {
                Some(repr) => repr.clone(),
                None => python_repr(&Value::Object(message.kwargs.clone())),
            },
            time_start: chrono::Utc::now().timestamp_micros() as f64 / 1e6,
            queue: queue.to_owned(),
            priority: message.priority,
            redelivered,
        };
        self.lock().insert(message.id().to_owned(), running);
    }

    /// Records that task `id` finished.
    pub(crate) fn finished(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Every running task's description, as worker `hostname` shows it.
    pub(crate) fn list(&self, hostname: &str) -> Vec<Value> {
        let pid = std::process::id();
        let describe = |(id, task): (&String, &Running)| {
            json!({
                "id": id,
                "name": task.name,
                "args": task.args,
                "kwargs": task.kwargs,
                "type": task.name,
                "hostname": hostname,
                "time_start": task.time_start,
                "acknowledged": false,
                "delivery_info": {
                    "exchange": "",
                    "routing_key": task.queue,
                    "priority": task.priority,
                    "redelivered": task.redelivered,
                },
                "worker_pid": pid,
            })
        };
        self.lock().iter().map(describe).collect()
    }

    /// How many tasks run.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    fn message(argsrepr: Option<&str>) -> TaskMessage {
        let mut message = TaskMessage::new("proj.add", vec![json!(2), json!("x")], Map::new());
        message.headers.id = "id-1".into();
        message.headers.argsrepr = argsrepr.map(str::to_owned);
        message.priority = Some(3);
        message
    }

    #[test]
    fn a_running_task_is_described_as_celery_does() {
        let active = ActiveTasks::default();
        active.started(&message(None), "q1", true);
        let listed = active.list("w1@host");
        let [task] = listed.as_slice() else {
            panic!("{listed:?}")
        };
        assert_eq!(task["id"], "id-1");
        assert_eq!(task["name"], "proj.add");
        assert_eq!(task["type"], "proj.add");
        assert_eq!(task["args"], "[2, 'x']");
        assert_eq!(task["kwargs"], "{}");
        assert_eq!(task["hostname"], "w1@host");
        assert_eq!(task["acknowledged"], false);
        assert_eq!(task["worker_pid"], std::process::id());
        assert!(task["time_start"].as_f64().unwrap() > 1.7e9);
        let info = json!({"exchange": "", "routing_key": "q1", "priority": 3, "redelivered": true});
        assert_eq!(task["delivery_info"], info);
    }

    #[test]
    fn the_producers_repr_is_shown_and_a_finished_task_is_gone() {
        let active = ActiveTasks::default();
        active.started(&message(Some("(2, 'secret')")), "q1", false);
        assert_eq!(active.list("w")[0]["args"], "(2, 'secret')");
        assert_eq!(active.len(), 1);
        active.finished("id-1");
        assert_eq!(active.list("w"), Vec::<Value>::new());
    }
}
