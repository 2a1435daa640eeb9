//! Tasks processed and failed per second over the last minutes, from the
//! totals in the workers' heartbeats.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::worker_list::{WorkerRow, WorkerStatus};

/// One point of the chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Sample {
    pub(crate) at: DateTime<Utc>,
    /// Tasks processed per second since the previous sample, all workers.
    pub(crate) processed_per_second: f64,
    /// Of those, failed per second.
    pub(crate) failed_per_second: f64,
}

/// The samples of the last `window`, and each worker's totals at the last
/// sample to take differences from.
#[derive(Debug)]
pub(crate) struct Throughput {
    window: chrono::Duration,
    samples: VecDeque<Sample>,
    /// Processed and failed totals per worker at the last sample.
    totals: HashMap<String, (u64, u64)>,
    last_at: Option<DateTime<Utc>>,
}

impl Throughput {
    pub(crate) fn new(window: std::time::Duration) -> Self {
        Self {
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(10)),
            samples: VecDeque::new(),
            totals: HashMap::new(),
            last_at: None,
        }
    }

    /// Adds the sample of `workers` at `now`. A worker seen for the first
    /// time adds nothing (its totals are from before); one whose totals
    /// went down restarted and adds its new totals.
    pub(crate) fn record(&mut self, workers: &[WorkerRow], now: DateTime<Utc>) {
        let (mut processed, mut failed) = (0, 0);
        for worker in workers.iter().filter(|w| w.status == WorkerStatus::Online) {
            let current = (worker.processed, worker.failed.unwrap_or(0));
            let before = self.totals.insert(worker.hostname.clone(), current);
            let delta = |now: u64, then: Option<u64>| match then {
                Some(then) if now >= then => now - then,
                Some(_) => now,
                None => 0,
            };
            processed += delta(current.0, before.map(|b| b.0));
            failed += delta(current.1, before.map(|b| b.1));
        }
        let Some(last_at) = self.last_at.replace(now) else {
            return;
        };
        let seconds = (now - last_at).num_milliseconds().max(1) as f64 / 1000.0;
        self.samples.push_back(Sample {
            at: now,
            processed_per_second: processed as f64 / seconds,
            failed_per_second: failed as f64 / seconds,
        });
        while self
            .samples
            .front()
            .is_some_and(|s| now - s.at > self.window)
        {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(processed: u64, failed: u64) -> WorkerRow {
        WorkerRow {
            hostname: "w@h".into(),
            status: WorkerStatus::Online,
            software: String::new(),
            queues: vec![],
            concurrency: None,
            active: 0,
            in_flight: None,
            processed,
            failed: Some(failed),
            loadavg: vec![],
            last_seen: Utc::now(),
        }
    }

    #[test]
    fn rates_are_the_differences_per_second_and_a_restart_counts_anew() {
        let mut throughput = Throughput::new(std::time::Duration::from_secs(60));
        let start = Utc::now();
        let at = |s| start + chrono::Duration::seconds(s);
        throughput.record(&[worker(100, 5)], at(0));
        throughput.record(&[worker(110, 7)], at(2));
        throughput.record(&[worker(4, 0)], at(4));
        let samples = throughput.samples();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].processed_per_second, 5.0);
        assert_eq!(samples[0].failed_per_second, 1.0);
        assert_eq!(samples[1].processed_per_second, 2.0);
        throughput.record(&[], at(100));
        assert_eq!(throughput.samples().len(), 1, "older than the window");
    }
}
