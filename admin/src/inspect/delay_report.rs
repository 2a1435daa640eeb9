//! What waits in the delay ladder, and roughly when it is due.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

/// The state of the 28 delay queues (`celery_delayed_27` …
/// `celery_delayed_0`) that hold retries, countdowns and etas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelayReport {
    /// Every level, 27 first.
    pub levels: Vec<DelayLevel>,
    /// The messages read from the levels, each with its destination and
    /// due time; empty when only counted.
    pub tasks: Vec<DelayedTask>,
    /// Whether the levels were read ([`DelayedTasks::inspect`]) or only
    /// counted ([`DelayedTasks::count`]).
    ///
    /// [`DelayedTasks::inspect`]: crate::DelayedTasks::inspect
    /// [`DelayedTasks::count`]: crate::DelayedTasks::count
    pub browsed: bool,
}

/// One level of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelayLevel {
    /// The level, 0 to 27.
    pub level: u32,
    /// Its queue, `celery_delayed_<level>`.
    pub queue: String,
    /// Messages waiting in it, or `None` if the queue does not exist.
    pub messages: Option<u32>,
    /// How long the level holds a message: 2^level seconds (in JSON,
    /// `hold_seconds`).
    #[serde(rename = "hold_seconds", serialize_with = "seconds")]
    pub hold: Duration,
    /// A message waiting here is due within this: 2^(level+1) - 1
    /// seconds, the most its remaining levels can add up to (in JSON,
    /// `due_within_seconds`).
    #[serde(rename = "due_within_seconds", serialize_with = "seconds")]
    pub due_within: Duration,
    /// Whether more messages were waiting than one read could hold, so
    /// [`DelayReport::tasks`] lacks some of this level's.
    pub truncated: bool,
}

/// A message waiting in the ladder.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DelayedTask {
    /// The level it waits in.
    pub level: u32,
    /// The queue it will be delivered to (its routing key's last word).
    pub queue: String,
    /// The task id, if the message is a task.
    pub task_id: Option<String>,
    /// The task name.
    pub task: Option<String>,
    /// Its `retries` header: how many retries it already had.
    pub retries: u32,
    /// Its `eta` header: when it is meant to run (the ladder delivers it
    /// within a second after that).
    pub eta: Option<DateTime<Utc>>,
    /// The earliest it can arrive: now plus the delay its lower levels
    /// still add.
    pub due_after: DateTime<Utc>,
    /// The latest it can arrive: that plus a full hold of this level.
    pub due_by: DateTime<Utc>,
}

/// The delayed tasks of one destination queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueDelays {
    /// How many wait.
    pub count: usize,
    /// The first due (by eta, else the latest it can arrive).
    pub next_due: DateTime<Utc>,
    /// The last due.
    pub last_due: DateTime<Utc>,
}

impl DelayedTask {
    /// When it is due: its eta if it has one, else the latest it can
    /// arrive.
    pub fn due(&self) -> DateTime<Utc> {
        self.eta.unwrap_or(self.due_by)
    }
}

impl DelayReport {
    /// Messages waiting in all levels, by the counts.
    pub fn waiting(&self) -> u64 {
        self.levels
            .iter()
            .filter_map(|l| l.messages)
            .map(u64::from)
            .sum()
    }

    /// Whether the ladder exists at all (any level was found).
    pub fn is_declared(&self) -> bool {
        self.levels.iter().any(|l| l.messages.is_some())
    }

    /// The read messages grouped by destination queue.
    pub fn by_queue(&self) -> BTreeMap<String, QueueDelays> {
        let mut queues: BTreeMap<String, QueueDelays> = BTreeMap::new();
        for task in &self.tasks {
            let due = task.due();
            queues
                .entry(task.queue.clone())
                .and_modify(|q| {
                    q.count += 1;
                    q.next_due = q.next_due.min(due);
                    q.last_due = q.last_due.max(due);
                })
                .or_insert(QueueDelays {
                    count: 1,
                    next_due: due,
                    last_due: due,
                });
        }
        queues
    }
}

fn seconds<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(value.as_secs())
}
