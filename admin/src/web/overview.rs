//! What the Overview and Workers pages show, sampled every refresh.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::management_api::ManagedQueue;
use super::throughput::Sample;
use super::worker_list::WorkerRow;
use celeriac_producer::QueueStats;

/// A snapshot of the queues, workers and throughput.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Overview {
    /// When it was taken; `None` before the first sample.
    pub(crate) taken_at: Option<DateTime<Utc>>,
    pub(crate) queues: Vec<QueueRow>,
    pub(crate) workers: Vec<WorkerRow>,
    /// Messages waiting in the whole delay ladder, when known.
    pub(crate) delayed_total: Option<u64>,
    /// When the ladder was last read for the per-queue delayed counts.
    pub(crate) delay_scanned_at: Option<DateTime<Utc>>,
    /// Whether unacknowledged counts and rates come from the management
    /// API (`false`: they are unavailable).
    pub(crate) management: bool,
    /// Why the last sample is incomplete (the broker or the management
    /// API did not answer).
    pub(crate) problems: Vec<String>,
    /// Throughput over the last minutes, oldest first.
    pub(crate) throughput: Vec<Sample>,
}

/// One work queue's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct QueueRow {
    pub(crate) name: String,
    /// Whether the queue exists on the broker.
    pub(crate) exists: bool,
    /// Messages ready for delivery.
    pub(crate) ready: u64,
    /// Delivered and not yet acknowledged (management API only).
    pub(crate) unacked: Option<u64>,
    pub(crate) consumers: u64,
    /// Messages per second published (management API only).
    pub(crate) publish_rate: Option<f64>,
    /// Messages per second delivered (management API only).
    pub(crate) deliver_rate: Option<f64>,
    /// Messages in `<queue>.dead`, when it exists.
    pub(crate) dead_letters: Option<u64>,
    /// Tasks for it waiting in the delay ladder, as of the last scan.
    pub(crate) delayed: Option<u64>,
}

impl QueueRow {
    /// The row of `name` from its AMQP counts, the management API's view
    /// of the queue (if reachable), its dead-letter count and the delay
    /// scan.
    pub(crate) fn new(
        name: &str,
        stats: Option<QueueStats>,
        managed: Option<&HashMap<String, ManagedQueue>>,
        dead_letters: Option<u32>,
        delayed: Option<&BTreeMap<String, u64>>,
    ) -> Self {
        let queue = managed.and_then(|m| m.get(name));
        let exists = stats.is_some();
        Self {
            name: name.to_owned(),
            exists,
            ready: stats.map_or(0, |s| u64::from(s.messages)),
            unacked: queue.map(|q| q.messages_unacknowledged),
            consumers: stats.map_or(0, |s| u64::from(s.consumers)),
            publish_rate: queue.map(ManagedQueue::publish_rate),
            deliver_rate: queue.map(ManagedQueue::deliver_rate),
            dead_letters: dead_letters.map(u64::from),
            delayed: delayed.map(|d| d.get(name).copied().unwrap_or(0)),
        }
    }
}
