//! The worker's Prometheus metrics: tasks by outcome (or rate limit), task
//! and queue, task durations, tasks in flight, broker connection and
//! readiness.
//!
//! Only a worker serving metrics ([`WorkerConfig::metrics_addr`]) keeps
//! them; otherwise nothing is counted.
//!
//! [`WorkerConfig::metrics_addr`]: crate::WorkerConfig::metrics_addr

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::health::Readiness;
use crate::outcome::Outcome;
use crate::plan::Disposition;

/// Upper bounds of the task duration buckets, in seconds: 1 ms to 5 min.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The label value for a task name no handler is registered for (or a
/// message without one), so that arbitrary names in messages cannot
/// create series without end.
pub(crate) const UNKNOWN_TASK: &str = "unknown";

const FAILED_HELP: &str = "Task runs or messages that failed (error, panic, time limit, unknown task, bad arguments, undecodable, delivery limit); a retried failure counts here and in retried";
const DURATION_HELP: &str = "Time from receiving a task to its outcome, for tasks that ran";

/// Which task on which queue.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
    queue: String,
}

type Tasks = Family<TaskLabels, Counter>;
type Durations = Family<TaskLabels, Histogram, fn() -> Histogram>;

/// Every metric the worker exports, registered in its own registry.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    received: Tasks,
    succeeded: Tasks,
    failed: Tasks,
    retried: Tasks,
    dead_lettered: Tasks,
    expired: Tasks,
    rate_limited: Tasks,
    duration: Durations,
    in_flight: Gauge,
    connected: Gauge,
    ready: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("celeriac");
        let mut tasks =
            |name: &str, help: &str| register(&mut registry, name, help, Tasks::default());
        let received = tasks("tasks_received", "Task messages received");
        let succeeded = tasks("tasks_succeeded", "Task runs that returned a result");
        let failed = tasks("tasks_failed", FAILED_HELP);
        let retried = tasks(
            "tasks_retried",
            "Failures sent back through the delay for another attempt",
        );
        let dead_lettered = tasks(
            "tasks_dead_lettered",
            "Messages sent to the dead-letter queue",
        );
        let expired = tasks(
            "tasks_expired",
            "Tasks received after their expires time, not run",
        );
        let rate_limited = tasks(
            "tasks_rate_limited",
            "Tasks over their rate limit, sent back through the delay unrun (not failures, not retries)",
        );
        let durations = Durations::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let duration = register(
            &mut registry,
            "task_duration_seconds",
            DURATION_HELP,
            durations,
        );
        let mut gauge =
            |name: &str, help: &str| register(&mut registry, name, help, Gauge::default());
        let in_flight = gauge("tasks_in_flight", "Deliveries being handled now");
        let connected = gauge("broker_connected", "1 while the broker connection is open");
        let ready = gauge(
            "worker_ready",
            "1 while connected and consuming every queue",
        );
        Self {
            registry,
            received,
            succeeded,
            failed,
            retried,
            dead_lettered,
            expired,
            rate_limited,
            duration,
            in_flight,
            connected,
            ready,
        }
    }

    /// Counts a received message.
    pub(crate) fn received(&self, task: &str, queue: &str) {
        self.received.get_or_create(&labels(task, queue)).inc();
    }

    /// Counts how handling a message ended, as decided. (A decision whose
    /// copy cannot be published requeues the message, which is then
    /// received and counted again.)
    pub(crate) fn finished(
        &self,
        task: &str,
        queue: &str,
        outcome: &Outcome,
        disposition: Disposition,
        elapsed: Duration,
    ) {
        let labels = labels(task, queue);
        let ran = match outcome {
            Outcome::Succeeded(_) => {
                self.succeeded.get_or_create(&labels).inc();
                true
            }
            Outcome::Expired | Outcome::Revoked { .. } => {
                self.expired.get_or_create(&labels).inc();
                false
            }
            Outcome::Failed(_) | Outcome::Panicked(_) | Outcome::TimedOut(_) => {
                self.failed.get_or_create(&labels).inc();
                true
            }
            Outcome::DeliveryLimit(_)
            | Outcome::UnknownTask
            | Outcome::BadArguments(_)
            | Outcome::Undecodable(_) => {
                self.failed.get_or_create(&labels).inc();
                false
            }
        };
        if ran {
            let seconds = elapsed.as_secs_f64();
            self.duration.get_or_create(&labels).observe(seconds);
        }
        match disposition {
            Disposition::Ack => {}
            Disposition::Retry { .. } => {
                self.retried.get_or_create(&labels).inc();
            }
            Disposition::DeadLetter { .. } => {
                self.dead_lettered.get_or_create(&labels).inc();
            }
        }
    }

    /// Counts a task sent back through the delay because it was over its
    /// rate limit.
    pub(crate) fn rate_limited(&self, task: &str, queue: &str) {
        self.rate_limited.get_or_create(&labels(task, queue)).inc();
    }

    /// Counts a delivery in flight until the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// The metrics in the OpenMetrics text format, with the broker state
    /// as of now.
    pub(crate) fn encode(&self, readiness: Readiness) -> String {
        self.connected.set(i64::from(readiness.connected));
        self.ready.set(i64::from(readiness.is_ready()));
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Counts one delivery in flight while alive.
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Registers `metric` under `name` and returns it (a handle on the same
/// values).
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn labels(task: &str, queue: &str) -> TaskLabels {
    TaskLabels {
        task: task.to_owned(),
        queue: queue.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

    fn ready() -> Readiness {
        Readiness {
            connected: true,
            consuming: true,
        }
    }

    #[test]
    fn a_success_and_a_retried_failure_are_counted_by_task_and_queue() {
        let metrics = Metrics::new();
        metrics.received("demo.add", "celery");
        metrics.received("demo.add", "celery");
        let ok = Outcome::Succeeded(serde_json::value::RawValue::from_string("5".into()).unwrap());
        metrics.finished(
            "demo.add",
            "celery",
            &ok,
            Disposition::Ack,
            Duration::from_millis(3),
        );
        let failed = Outcome::Failed(TaskError::retry("again"));
        let retry = Disposition::Retry {
            delay: Duration::from_secs(1),
        };
        metrics.finished(
            "demo.add",
            "celery",
            &failed,
            retry,
            Duration::from_millis(2),
        );
        metrics.rate_limited("demo.add", "celery");
        let text = metrics.encode(ready());
        for line in [
            r#"celeriac_tasks_rate_limited_total{task="demo.add",queue="celery"} 1"#,
            r#"celeriac_tasks_received_total{task="demo.add",queue="celery"} 2"#,
            r#"celeriac_tasks_succeeded_total{task="demo.add",queue="celery"} 1"#,
            r#"celeriac_tasks_failed_total{task="demo.add",queue="celery"} 1"#,
            r#"celeriac_tasks_retried_total{task="demo.add",queue="celery"} 1"#,
            r#"celeriac_task_duration_seconds_count{task="demo.add",queue="celery"} 2"#,
            "celeriac_broker_connected 1",
            "celeriac_worker_ready 1",
            "celeriac_tasks_in_flight 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }

    #[test]
    fn in_flight_counts_while_the_guard_lives() {
        let metrics = Metrics::new();
        let guard = metrics.in_flight();
        assert!(
            metrics
                .encode(ready())
                .contains("celeriac_tasks_in_flight 1")
        );
        drop(guard);
        let down = Readiness {
            connected: false,
            consuming: true,
        };
        let text = metrics.encode(down);
        assert!(text.contains("celeriac_tasks_in_flight 0"), "{text}");
        assert!(text.contains("celeriac_broker_connected 0"), "{text}");
        assert!(text.contains("celeriac_worker_ready 0"), "{text}");
    }
}
