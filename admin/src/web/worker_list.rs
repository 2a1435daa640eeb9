//! The workers the dashboard knows of, from their events.

use std::collections::BTreeMap;

use celeriac_shared::{WorkerEvent, WorkerEventKind};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Every worker heard from, by node name, with its last event.
#[derive(Debug, Default)]
pub(crate) struct WorkerList {
    /// The last event of each worker and when it was received.
    workers: BTreeMap<String, (WorkerEvent, DateTime<Utc>)>,
}

/// Whether a worker is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WorkerStatus {
    /// Its last heartbeat is recent.
    Online,
    /// It said `worker-offline` (a graceful shutdown).
    Offline,
    /// Its heartbeats stopped without a `worker-offline`: it crashed, was
    /// killed, or lost its broker connection.
    Lost,
}

/// One worker as the Workers page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WorkerRow {
    pub(crate) hostname: String,
    pub(crate) status: WorkerStatus,
    /// `celeriac 0.1.0`, `py-celery 5.7.0`.
    pub(crate) software: String,
    /// The queues it consumes, when it says (celeriac workers do).
    pub(crate) queues: Vec<String>,
    pub(crate) concurrency: Option<u64>,
    /// Tasks running now (Celery's `active`).
    pub(crate) active: u64,
    /// Deliveries being handled, when it says (celeriac workers do).
    pub(crate) in_flight: Option<u64>,
    pub(crate) processed: u64,
    pub(crate) failed: Option<u64>,
    pub(crate) loadavg: Vec<f64>,
    /// When its last event arrived.
    pub(crate) last_seen: DateTime<Utc>,
}

impl WorkerList {
    /// Records an event received at `now`.
    pub(crate) fn record(&mut self, event: WorkerEvent, now: DateTime<Utc>) {
        self.workers.insert(event.hostname.clone(), (event, now));
    }

    /// Forgets workers not heard from within `keep` of `now`.
    pub(crate) fn forget_older_than(&mut self, keep: chrono::Duration, now: DateTime<Utc>) {
        self.workers.retain(|_, (_, seen)| now - *seen <= keep);
    }

    /// Every worker, online ones first, each by name.
    pub(crate) fn rows(&self, now: DateTime<Utc>) -> Vec<WorkerRow> {
        let mut rows: Vec<WorkerRow> = self
            .workers
            .values()
            .map(|(event, seen)| row(event, *seen, now))
            .collect();
        rows.sort_by_key(|r| r.status != WorkerStatus::Online);
        rows
    }
}

fn row(event: &WorkerEvent, seen: DateTime<Utc>, now: DateTime<Utc>) -> WorkerRow {
    // Expiry counts from when the event arrived rather than from its
    // timestamp, so a worker whose clock is off is not shown as lost.
    let window = chrono::Duration::from_std(event.interval() * 2).unwrap_or_default();
    let status = match event.kind {
        WorkerEventKind::Offline => WorkerStatus::Offline,
        WorkerEventKind::Online | WorkerEventKind::Heartbeat if now - seen > window => {
            WorkerStatus::Lost
        }
        WorkerEventKind::Online | WorkerEventKind::Heartbeat => WorkerStatus::Online,
    };
    WorkerRow {
        hostname: event.hostname.clone(),
        status,
        software: format!("{} {}", event.sw_ident, event.sw_ver)
            .trim()
            .to_owned(),
        queues: event.celeriac_queues.clone(),
        concurrency: event.celeriac_concurrency,
        active: event.active,
        in_flight: event.celeriac_in_flight,
        processed: event.processed,
        failed: event.celeriac_failed,
        loadavg: event.loadavg.clone(),
        last_seen: seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: WorkerEventKind, hostname: &str) -> WorkerEvent {
        let json = format!(
            r#"{{"type": "worker-heartbeat", "hostname": "{hostname}", "timestamp": 0.0, "freq": 2.0}}"#
        );
        WorkerEvent {
            kind,
            ..WorkerEvent::decode(json.as_bytes()).unwrap()
        }
    }

    #[test]
    fn a_worker_is_online_until_its_heartbeats_stop_or_it_says_offline() {
        let mut list = WorkerList::default();
        let start = Utc::now();
        list.record(event(WorkerEventKind::Heartbeat, "a@h"), start);
        list.record(event(WorkerEventKind::Heartbeat, "b@h"), start);
        let status = |list: &WorkerList, now| -> Vec<(String, WorkerStatus)> {
            let rows = list.rows(now);
            rows.into_iter().map(|r| (r.hostname, r.status)).collect()
        };
        assert_eq!(status(&list, start)[0].1, WorkerStatus::Online);
        list.record(event(WorkerEventKind::Offline, "b@h"), start);
        let later = start + chrono::Duration::seconds(5);
        assert_eq!(
            status(&list, later),
            vec![
                ("a@h".to_owned(), WorkerStatus::Lost),
                ("b@h".to_owned(), WorkerStatus::Offline)
            ]
        );
        list.forget_older_than(chrono::Duration::seconds(1), later);
        assert!(list.rows(later).is_empty());
    }
}
