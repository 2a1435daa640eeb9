//! What a replay or a purge did.

use std::collections::BTreeMap;

use serde::Serialize;

/// The outcome of [`DeadLetters::replay`](crate::DeadLetters::replay).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Dead letters published back (confirmed by the broker) and then
    /// removed from their dead-letter queue.
    pub replayed: usize,
    /// Dead letters read that did not match the selection; left in place.
    pub skipped: usize,
    /// Dead letters that matched but could not be published; left in
    /// place.
    pub failed: Vec<ReplayFailure>,
    /// Requested task ids that no dead-letter queue held.
    pub not_found: Vec<String>,
    /// Dead letters not read: the selection's limit was reached first, or
    /// 65,535 non-matching ones were held at once (the most one read can
    /// hold), or they expired or were dropped meanwhile.
    pub unread: u64,
    /// Replayed dead letters per work queue.
    pub queues: BTreeMap<String, usize>,
}

/// A dead letter that a replay could not publish; it stays in its
/// dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayFailure {
    /// The work queue whose dead-letter queue holds it.
    pub queue: String,
    /// Its task id, if it has one.
    pub task_id: Option<String>,
    /// Why: unroutable, refused by the broker, no original destination.
    pub error: String,
}

/// The outcome of [`DeadLetters::purge`](crate::DeadLetters::purge).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeSummary {
    /// Dead letters deleted.
    pub purged: usize,
    /// Dead letters read that did not match; left in place.
    pub kept: usize,
    /// Dead letters not read: 65,535 non-matching ones were held at once
    /// (the most one read can hold), or they expired or were dropped
    /// meanwhile.
    pub unread: u64,
    /// Deleted dead letters per work queue.
    pub queues: BTreeMap<String, usize>,
}

/// How far a long inspection is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Dead letters read so far.
    pub done: u64,
    /// Dead letters in the queues when the inspection began.
    pub total: u64,
}
