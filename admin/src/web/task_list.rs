//! The tasks the dashboard knows of, from their Celery task events: the
//! most recent [`MAX_TASKS`], each the merge of its events, and a feed
//! that says when they changed (the Tasks page's server-sent events).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use celeriac_shared::{TaskEvent, TaskEventKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;
use wildmatch::WildMatch;

/// How many tasks are kept: the oldest (by when first heard of) are
/// forgotten beyond it.
pub(crate) const MAX_TASKS: usize = 1_000;

/// How many events of one task are kept for its page.
const MAX_EVENTS_PER_TASK: usize = 20;

/// A task's state, as Celery names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum TaskState {
    Received,
    Started,
    Success,
    Failure,
    Retry,
    Rejected,
    Revoked,
}

impl TaskState {
    /// Every state, in the order the filter offers them.
    pub(crate) const ALL: [TaskState; 7] = [
        TaskState::Received,
        TaskState::Started,
        TaskState::Success,
        TaskState::Failure,
        TaskState::Retry,
        TaskState::Rejected,
        TaskState::Revoked,
    ];

    /// The state an event puts its task in.
    fn of(kind: TaskEventKind) -> Self {
        match kind {
            TaskEventKind::Received => TaskState::Received,
            TaskEventKind::Started => TaskState::Started,
            TaskEventKind::Succeeded => TaskState::Success,
            TaskEventKind::Failed => TaskState::Failure,
            TaskEventKind::Retried => TaskState::Retry,
            TaskEventKind::Rejected => TaskState::Rejected,
            TaskEventKind::Revoked => TaskState::Revoked,
        }
    }

    /// Celery's name: `SUCCESS`, `FAILURE`...
    pub(crate) fn name(self) -> &'static str {
        match self {
            TaskState::Received => "RECEIVED",
            TaskState::Started => "STARTED",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Retry => "RETRY",
            TaskState::Rejected => "REJECTED",
            TaskState::Revoked => "REVOKED",
        }
    }

    /// The state named `name`, in any case.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Which of two events with the same timestamp wins: later steps of
    /// a run over earlier ones.
    fn rank(self) -> u8 {
        match self {
            TaskState::Received => 0,
            TaskState::Started => 1,
            TaskState::Retry => 2,
            _ => 3,
        }
    }
}

/// One event of a task, for its page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EventLine {
    pub(crate) state: TaskState,
    pub(crate) at: DateTime<Utc>,
    pub(crate) hostname: String,
}

/// One task, merged from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TaskRow {
    pub(crate) uuid: String,
    /// The task's name (from `task-received`).
    pub(crate) name: Option<String>,
    pub(crate) state: TaskState,
    /// The worker of the latest event.
    pub(crate) hostname: String,
    pub(crate) received: Option<DateTime<Utc>>,
    pub(crate) started: Option<DateTime<Utc>>,
    /// When it succeeded, failed, was retried, rejected or revoked.
    pub(crate) finished: Option<DateTime<Utc>>,
    /// Seconds the handler ran (from `task-succeeded`).
    pub(crate) runtime: Option<f64>,
    pub(crate) retries: Option<u64>,
    /// The arguments' and keyword arguments' Python `repr`.
    pub(crate) args: Option<String>,
    pub(crate) kwargs: Option<String>,
    /// The result's `repr`.
    pub(crate) result: Option<String>,
    /// The exception's `repr` and the traceback.
    pub(crate) exception: Option<String>,
    pub(crate) traceback: Option<String>,
    /// Its latest events, oldest first.
    pub(crate) events: Vec<EventLine>,
    /// The timestamp of the event that set the state.
    #[serde(skip)]
    state_at: f64,
}

impl TaskRow {
    fn new(uuid: &str, state: TaskState) -> Self {
        Self {
            uuid: uuid.to_owned(),
            name: None,
            state,
            hostname: String::new(),
            received: None,
            started: None,
            finished: None,
            runtime: None,
            retries: None,
            args: None,
            kwargs: None,
            result: None,
            exception: None,
            traceback: None,
            events: Vec::new(),
            state_at: f64::NEG_INFINITY,
        }
    }

    /// Merges `event` in: its fields always, its state and worker when it
    /// is not older than the one that set the current state (events may
    /// arrive out of order).
    fn merge(&mut self, event: &TaskEvent) {
        let state = TaskState::of(event.kind);
        let at = time(event.timestamp);
        let f = &event.fields;
        match event.kind {
            TaskEventKind::Received => {
                self.received = Some(at);
                set(&mut self.name, text(f, "name"));
                set(&mut self.args, text(f, "args"));
                set(&mut self.kwargs, text(f, "kwargs"));
                set(&mut self.retries, f.get("retries").and_then(Value::as_u64));
            }
            TaskEventKind::Started => self.started = Some(at),
            TaskEventKind::Succeeded => {
                self.finished = Some(at);
                set(&mut self.result, text(f, "result"));
                set(&mut self.runtime, f.get("runtime").and_then(Value::as_f64));
            }
            TaskEventKind::Failed | TaskEventKind::Retried => {
                self.finished = Some(at);
                set(&mut self.exception, text(f, "exception"));
                set(&mut self.traceback, text(f, "traceback"));
            }
            TaskEventKind::Rejected | TaskEventKind::Revoked => self.finished = Some(at),
        }
        if (event.timestamp, state.rank()) >= (self.state_at, self.state.rank()) {
            self.state = state;
            self.state_at = event.timestamp;
            self.hostname.clone_from(&event.hostname);
        }
        self.events.push(EventLine {
            state,
            at,
            hostname: event.hostname.clone(),
        });
        self.events.sort_by_key(|e| e.at);
        if self.events.len() > MAX_EVENTS_PER_TASK {
            self.events.remove(0);
        }
    }

    /// What the task returned or raised, as the list shows it.
    pub(crate) fn outcome(&self) -> Option<&str> {
        match self.state {
            TaskState::Success => self.result.as_deref(),
            _ => self.exception.as_deref(),
        }
    }
}

/// Sets `field` to `value` when there is one.
fn set<T>(field: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *field = value;
    }
}

/// A field as text: a string as it is, another value as JSON, nothing
/// for null.
fn text(fields: &Map<String, Value>, key: &str) -> Option<String> {
    match fields.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// An event's timestamp (seconds since the epoch) as a time.
fn time(timestamp: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros((timestamp * 1e6) as i64).unwrap_or_default()
}

/// Which tasks a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TaskFilter {
    /// Only task names matching this glob (`demo.*`).
    pub(crate) name: Option<String>,
    /// Only tasks in this state.
    pub(crate) state: Option<TaskState>,
}

impl TaskFilter {
    fn admits(&self, row: &TaskRow) -> bool {
        let named = match (&self.name, &row.name) {
            (None, _) => true,
            (Some(pattern), Some(name)) => WildMatch::new(pattern).matches(name),
            (Some(_), None) => false,
        };
        named && self.state.is_none_or(|s| s == row.state)
    }
}

/// The kept tasks, by id and in the order they were first heard of.
#[derive(Debug)]
pub(crate) struct TaskList {
    capacity: usize,
    /// Each task and its place in `order`.
    tasks: HashMap<String, (u64, TaskRow)>,
    /// Task ids by when they were first heard of.
    order: BTreeMap<u64, String>,
    next: u64,
}

impl TaskList {
    /// An empty list keeping at most `capacity` tasks.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tasks: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Merges `event` into its task, forgetting the oldest task when
    /// there are too many.
    pub(crate) fn record(&mut self, event: &TaskEvent) {
        if event.uuid.is_empty() {
            return;
        }
        if let Some((_, row)) = self.tasks.get_mut(&event.uuid) {
            row.merge(event);
            return;
        }
        let mut row = TaskRow::new(&event.uuid, TaskState::of(event.kind));
        row.merge(event);
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, event.uuid.clone());
        self.tasks.insert(event.uuid.clone(), (seq, row));
        while self.tasks.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.tasks.remove(&oldest);
        }
    }

    /// The newest `limit` tasks that `filter` admits, newest first, and
    /// how many it admits in all.
    pub(crate) fn matching(&self, filter: &TaskFilter, limit: usize) -> (Vec<TaskRow>, usize) {
        let mut rows = Vec::new();
        let mut total = 0;
        for id in self.order.values().rev() {
            let Some((_, row)) = self.tasks.get(id) else {
                continue;
            };
            if filter.admits(row) {
                total += 1;
                if rows.len() < limit {
                    rows.push(row.clone());
                }
            }
        }
        (rows, total)
    }

    /// The task `id`, if kept.
    pub(crate) fn get(&self, id: &str) -> Option<TaskRow> {
        self.tasks.get(id).map(|(_, row)| row.clone())
    }
}

/// What the task feed says: how many times the tasks changed, and
/// whether the dashboard is shutting down (streams end then, so that a
/// graceful shutdown does not wait for open pages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Feed {
    pub(crate) version: u64,
    pub(crate) closed: bool,
}

/// The tasks, shared by the events consumer and the handlers, with the
/// feed of their changes.
#[derive(Debug)]
pub(crate) struct TaskStore {
    list: Mutex<TaskList>,
    feed: watch::Sender<Feed>,
}

impl TaskStore {
    /// An empty store of at most `capacity` tasks.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            list: Mutex::new(TaskList::new(capacity)),
            feed: watch::Sender::new(Feed::default()),
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, TaskList> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges `event` and tells the feed's subscribers.
    pub(crate) fn record(&self, event: &TaskEvent) {
        self.list().record(event);
        self.feed.send_modify(|feed| feed.version += 1);
    }

    /// See [`TaskList::matching`].
    pub(crate) fn matching(&self, filter: &TaskFilter, limit: usize) -> (Vec<TaskRow>, usize) {
        self.list().matching(filter, limit)
    }

    /// See [`TaskList::get`].
    pub(crate) fn get(&self, id: &str) -> Option<TaskRow> {
        self.list().get(id)
    }

    /// A receiver of the feed.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Feed> {
        self.feed.subscribe()
    }

    /// Ends every stream of the feed, now and to come.
    pub(crate) fn close(&self) {
        self.feed.send_modify(|feed| feed.closed = true);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: TaskEventKind, uuid: &str, timestamp: f64, fields: Value) -> TaskEvent {
        TaskEvent {
            kind,
            uuid: uuid.into(),
            hostname: "w@h".into(),
            timestamp,
            utcoffset: 0,
            pid: 1,
            clock: 1,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn events_merge_into_one_row_per_task() {
        let mut list = TaskList::new(10);
        let received = json!({"name": "demo.add", "args": "[1, 2]", "kwargs": "{}", "retries": 0});
        list.record(&event(TaskEventKind::Received, "a", 10.0, received));
        list.record(&event(TaskEventKind::Started, "a", 10.0, json!({})));
        let done = json!({"result": "3", "runtime": 0.25});
        list.record(&event(TaskEventKind::Succeeded, "a", 10.5, done));
        let row = list.get("a").unwrap();
        assert_eq!(row.name.as_deref(), Some("demo.add"));
        assert_eq!(row.state, TaskState::Success);
        assert_eq!(row.args.as_deref(), Some("[1, 2]"));
        assert_eq!(row.outcome(), Some("3"));
        assert_eq!(row.runtime, Some(0.25));
        assert!(row.received.is_some() && row.started.is_some() && row.finished.is_some());
        assert_eq!(row.events.len(), 3);
        assert_eq!(list.tasks.len(), 1);
    }

    #[test]
    fn a_late_event_does_not_take_the_state_back() {
        let mut list = TaskList::new(10);
        let failed = json!({"exception": "Boom()", "traceback": "tb"});
        list.record(&event(TaskEventKind::Failed, "a", 11.0, failed));
        let received = json!({"name": "demo.fail"});
        list.record(&event(TaskEventKind::Received, "a", 10.0, received));
        let row = list.get("a").unwrap();
        assert_eq!(row.state, TaskState::Failure);
        assert_eq!(row.name.as_deref(), Some("demo.fail"));
        assert_eq!(row.outcome(), Some("Boom()"));
        assert_eq!(row.events[0].state, TaskState::Received, "sorted by time");
    }

    #[test]
    fn the_newest_are_listed_first_filtered_and_the_oldest_forgotten() {
        let mut list = TaskList::new(3);
        for (i, name) in ["demo.add", "demo.fail", "demo.add", "other.x"]
            .iter()
            .enumerate()
        {
            let uuid = format!("t{i}");
            let fields = json!({"name": name});
            list.record(&event(TaskEventKind::Received, &uuid, i as f64, fields));
        }
        list.record(&event(TaskEventKind::Succeeded, "t2", 9.0, json!({})));
        assert_eq!(list.tasks.len(), 3);
        assert!(list.get("t0").is_none(), "the oldest is forgotten");
        let ids = |filter: &TaskFilter| -> Vec<String> {
            let (rows, _) = list.matching(filter, 10);
            rows.into_iter().map(|r| r.uuid).collect()
        };
        assert_eq!(ids(&TaskFilter::default()), ["t3", "t2", "t1"]);
        let demo = TaskFilter {
            name: Some("demo.*".into()),
            state: None,
        };
        assert_eq!(ids(&demo), ["t2", "t1"]);
        let succeeded = TaskFilter {
            state: Some(TaskState::Success),
            ..demo
        };
        assert_eq!(ids(&succeeded), ["t2"]);
        let (rows, total) = list.matching(&TaskFilter::default(), 1);
        assert_eq!((rows.len(), total), (1, 3));
    }

    #[test]
    fn states_parse_in_any_case() {
        assert_eq!(TaskState::parse("failure"), Some(TaskState::Failure));
        assert_eq!(TaskState::parse(" SUCCESS "), Some(TaskState::Success));
        assert_eq!(TaskState::parse("nope"), None);
    }

    #[tokio::test]
    async fn the_feed_tells_of_changes_and_of_closing() {
        let store = TaskStore::new(10);
        let mut feed = store.subscribe();
        store.record(&event(TaskEventKind::Started, "a", 1.0, json!({})));
        feed.changed().await.unwrap();
        assert_eq!(feed.borrow_and_update().version, 1);
        store.close();
        feed.changed().await.unwrap();
        assert!(feed.borrow().closed);
    }
}
