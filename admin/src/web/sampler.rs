//! The background work of a dashboard: sample the queues every refresh,
//! scan the delay ladder now and then, keep the throughput history.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use celeriac_shared::DeadLetterTopology;
use chrono::Utc;
use tracing::warn;

use super::DashboardConfig;
use super::management_api::ManagementApi;
use super::overview::{Overview, QueueRow};
use super::throughput::Throughput;
use super::worker_list::WorkerList;
use celeriac_producer::Producer;

use crate::{DelayedTasks, Error};

/// How often the ladder's levels are counted when per-queue scans are off
/// (the management API, when it answers, counts them at every refresh).
const COUNT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the snapshots the pages show.
pub(crate) struct Sampler {
    pub(crate) producer: Producer,
    pub(crate) config: DashboardConfig,
    pub(crate) management: Option<ManagementApi>,
    /// Fed by the worker events consumer.
    pub(crate) workers: Arc<Mutex<WorkerList>>,
    /// The latest snapshot.
    pub(crate) overview: RwLock<Overview>,
    /// The chart's history.
    pub(crate) throughput: Mutex<Throughput>,
    /// The last delay scan.
    pub(crate) delays: Mutex<Option<DelayScan>>,
}

/// What the last read of the delay ladder found.
#[derive(Debug, Clone)]
pub(crate) struct DelayScan {
    /// When it was read.
    at: Instant,
    /// Tasks waiting per destination queue (empty for a count only).
    by_queue: BTreeMap<String, u64>,
    /// Messages waiting in all levels.
    total: u64,
}

impl Sampler {
    /// Samples every refresh interval, forever.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.refresh);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.sample().await;
        }
    }

    /// Takes one snapshot.
    pub(crate) async fn sample(&self) {
        let now = Utc::now();
        let workers = {
            let mut list = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            let keep = chrono::Duration::from_std(self.config.history).unwrap_or_default();
            list.forget_older_than(keep, now);
            list.rows(now)
        };
        let mut problems = Vec::new();
        let managed = match &self.management {
            Some(api) => api
                .queues()
                .await
                .map_err(|e| problems.push(e.to_string()))
                .ok(),
            None => None,
        };
        self.scan_delays(&mut problems).await;
        let delays = self
            .delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut queues = self.config.queues.clone();
        for queue in workers.iter().flat_map(|w| &w.queues) {
            if !queues.contains(queue) {
                queues.push(queue.clone());
            }
        }
        let mut rows = Vec::new();
        for queue in &queues {
            match self
                .queue_row(queue, managed.as_ref(), delays.as_ref())
                .await
            {
                Ok(row) => rows.push(row),
                Err(err) => {
                    problems.push(format!("broker: {err}"));
                    break;
                }
            }
        }
        let ladder = managed.as_ref().map(|m| {
            let delayed = m.values().filter(|q| q.name.starts_with("celery_delayed_"));
            delayed
                .map(|q| q.messages_ready + q.messages_unacknowledged)
                .sum()
        });
        let mut throughput = self.throughput.lock().unwrap_or_else(|p| p.into_inner());
        throughput.record(&workers, now);
        let overview = Overview {
            taken_at: Some(now),
            queues: rows,
            workers,
            delayed_total: ladder.or(delays.as_ref().map(|d| d.total)),
            delay_scanned_at: delays
                .as_ref()
                .map(|d| now - chrono::Duration::from_std(d.at.elapsed()).unwrap_or_default()),
            management: managed.is_some(),
            problems,
            throughput: throughput.samples(),
        };
        *self.overview.write().unwrap_or_else(|p| p.into_inner()) = overview;
    }

    async fn queue_row(
        &self,
        queue: &str,
        managed: Option<&std::collections::HashMap<String, super::management_api::ManagedQueue>>,
        delays: Option<&DelayScan>,
    ) -> Result<QueueRow, Error> {
        let stats = self.producer.queue_stats(queue).await?;
        let dead = DeadLetterTopology::queue_name(queue);
        let dead = self.producer.queue_stats(&dead).await?.map(|s| s.messages);
        let per_queue = delays.filter(|_| self.config.delay_scan.is_some());
        Ok(QueueRow::new(
            queue,
            stats,
            managed,
            dead,
            per_queue.map(|d| &d.by_queue),
        ))
    }

    /// Reads the ladder when the scan interval has passed; when per-queue
    /// scans are off, counts its levels (28 passive declares) every
    /// [`COUNT_INTERVAL`] at most.
    async fn scan_delays(&self, problems: &mut Vec<String>) {
        let due = {
            let last = self.delays.lock().unwrap_or_else(|p| p.into_inner());
            let counts = self.config.refresh.max(COUNT_INTERVAL);
            let interval = self.config.delay_scan.unwrap_or(counts);
            last.as_ref()
                .is_none_or(|scan| scan.at.elapsed() >= interval)
        };
        if !due {
            return;
        }
        let delayed = DelayedTasks::new(&self.producer);
        let report = match self.config.delay_scan {
            Some(_) => delayed.inspect().await,
            None => delayed.count().await,
        };
        match report {
            Ok(report) => {
                let by_queue = report.by_queue().into_iter();
                let counts = by_queue.map(|(q, d)| (q, d.count as u64)).collect();
                let scan = DelayScan {
                    at: Instant::now(),
                    by_queue: counts,
                    total: report.waiting(),
                };
                *self.delays.lock().unwrap_or_else(|p| p.into_inner()) = Some(scan);
            }
            Err(err) => {
                warn!(error = %err, "cannot read the delay ladder");
                problems.push(format!("delay ladder: {err}"));
            }
        }
    }
}
