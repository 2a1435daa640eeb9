//! One run of one measurement for one system, each on a fresh queue.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use celeriac_producer::Producer;
use celeriac_shared::{BrokerUrl, QueueType};
use celeriac_tests::Vhost;
use lapin::Connection;

use crate::celery::Celery;
use crate::fixture::{Broker, EncodedTask, EventMonitor};
use crate::raw_lapin::{self, ReplyQueue};
use crate::report::{Report, Row};
use crate::worker_process::{RustWorkerSettings, WorkerProcess};
use crate::{Measurement, Settings, System, celeriac_side};

/// How far in the future delayed tasks are due.
const COUNTDOWN: Duration = Duration::from_secs(3600);

/// How long the event monitor waits for a first event after a drain.
const FIRST_EVENT: Duration = Duration::from_secs(5);

/// The connections and installations the runs share.
pub(crate) struct Runner {
    settings: Settings,
    /// Sets up queues and watches their counts.
    broker: Broker,
    /// The message raw lapin publishes, and fills queues with.
    task: EncodedTask,
    /// Raw lapin's connection.
    lapin: Connection,
    /// celeriac's producer.
    producer: Producer,
    /// `None` when Celery could not be installed.
    celery: Option<Celery>,
    /// Celery with results in Redis, which joins chords; `None` when
    /// Celery or Redis is missing, or chords are not measured.
    celery_chords: Option<Celery>,
}

impl Runner {
    /// Connects everything; notes in `report` if Celery is skipped.
    pub(crate) async fn new(settings: Settings, report: &mut Report) -> anyhow::Result<Self> {
        let broker = Broker::connect(celeriac_tests::broker_url(), settings.queue_type).await?;
        let celery = if !settings.systems.contains(&System::Celery) {
            None
        } else if settings.queue_type == QueueType::Quorum {
            report.notes.push(
                "celery skipped: --queue-type quorum measures raw lapin and celeriac only".into(),
            );
            None
        } else {
            match Celery::find(broker.url().clone(), settings.celery_worker()) {
                Ok(celery) => Some(celery),
                Err(err) => {
                    report
                        .notes
                        .push(format!("celery skipped: it could not be set up: {err:#}"));
                    None
                }
            }
        };
        let celery_chords = match &celery {
            Some(celery) if settings.runs(Measurement::Chord) => {
                celery_with_redis(celery, report).await
            }
            _ => None,
        };
        Ok(Self {
            task: EncodedTask::noop()?,
            lapin: raw_lapin::connect(broker.url()).await?,
            producer: celeriac_side::producer(
                broker.url(),
                settings.producer_channels,
                settings.queue_type,
            )
            .await?,
            celery,
            celery_chords,
            broker,
            settings,
        })
    }

    /// Whether `system` can run (Celery may have been skipped).
    pub(crate) fn has(&self, system: System) -> bool {
        system != System::Celery || self.celery.is_some()
    }

    /// Whether `system` has `step`: raw lapin has no delayed tasks and no
    /// workflows; Celery's chords need Redis; only celeriac's drain is
    /// measured with task events on.
    pub(crate) fn runs(&self, step: Measurement, system: System) -> bool {
        match (step, system) {
            (Measurement::DrainEvents, system) => system == System::Celeriac,
            (Measurement::Delayed | Measurement::Chain | Measurement::Chord, System::Lapin) => {
                false
            }
            (Measurement::Chord, System::Celery) => self.celery_chords.is_some(),
            _ => true,
        }
    }

    fn celery(&self) -> anyhow::Result<&Celery> {
        self.celery.as_ref().context("Celery is not available")
    }

    /// Confirmed publishes per second.
    pub(crate) async fn publish(&self, system: System) -> anyhow::Result<f64> {
        let n = self.settings.n;
        self.on_fresh_queue("publish", async |queue: &str| {
            self.warm_up(system, queue).await?;
            let start = Instant::now();
            let elapsed = match system {
                System::Lapin => {
                    let window = self.settings.in_flight;
                    raw_lapin::publish(&self.lapin, queue, &self.task, n, window).await?;
                    start.elapsed()
                }
                System::Celeriac => {
                    let in_flight = self.settings.in_flight;
                    celeriac_side::publish(&self.producer, queue, (n, in_flight), None).await?;
                    start.elapsed()
                }
                System::Celery => self.celery()?.publish(queue, n).await?,
            };
            Ok(n as f64 / elapsed.as_secs_f64())
        })
        .await
    }

    /// Tasks per second drained from a pre-filled queue, from the moment
    /// the worker's consumer appears to the moment the queue is empty, and
    /// the worker's peak RSS in MiB.
    pub(crate) async fn drain(&self, system: System) -> anyhow::Result<(f64, f64)> {
        self.drain_with(system, false).await
    }

    /// [`Runner::drain`] with the worker sending task events (celeriac
    /// only), three per task, while a monitor in this process consumes
    /// them from `celeryev`: tasks per second.
    pub(crate) async fn drain_with_events(&self, system: System) -> anyhow::Result<f64> {
        ensure!(
            system == System::Celeriac,
            "{} sends no task events",
            system.name()
        );
        let monitor = EventMonitor::start(self.broker.url()).await?;
        let drained = self.drain_with(system, true).await;
        let events = monitor.finish(FIRST_EVENT).await;
        let (rate, _rss) = drained?;
        ensure!(events > 0, "the monitor got no task events");
        Ok(rate)
    }

    async fn drain_with(&self, system: System, task_events: bool) -> anyhow::Result<(f64, f64)> {
        let n = self.settings.n;
        self.on_fresh_queue("drain", async |queue: &str| {
            raw_lapin::publish(&self.lapin, queue, &self.task, n, self.settings.in_flight)
                .await
                .context("filling the queue")?;
            tokio::time::sleep(self.settings.settle()).await;
            let worker = self.start_worker_with(system, queue, task_events)?;
            let measured = async {
                let start = self.broker.wait_for_consumer(queue).await?;
                let end = self.broker.wait_until_empty(queue).await?;
                anyhow::Ok((rate(n, end - start), worker.peak_rss_mib()?))
            }
            .await;
            worker.stop().await?;
            measured
        })
        .await
    }

    /// Tasks per second from the first publish to the queue being empty,
    /// with the worker consuming while the producer publishes.
    pub(crate) async fn end_to_end(&self, system: System) -> anyhow::Result<f64> {
        let n = self.settings.n;
        self.on_fresh_queue("e2e", async |queue: &str| {
            self.warm_up(system, queue).await?;
            let worker = self.start_worker(system, queue)?;
            let measured = async {
                self.broker.wait_for_consumer(queue).await?;
                let in_flight = self.settings.in_flight;
                let start = match system {
                    System::Lapin => {
                        let start = Instant::now();
                        raw_lapin::publish(&self.lapin, queue, &self.task, n, in_flight).await?;
                        start
                    }
                    System::Celeriac => {
                        let start = Instant::now();
                        celeriac_side::publish(&self.producer, queue, (n, in_flight), None).await?;
                        start
                    }
                    System::Celery => {
                        let publisher = self.celery()?.publisher(queue, n, None).await?;
                        let start = Instant::now();
                        publisher.finish().await?;
                        start
                    }
                };
                let end = self.broker.wait_until_empty(queue).await?;
                anyhow::Ok(rate(n, end - start))
            }
            .await;
            worker.stop().await?;
            measured
        })
        .await
    }

    /// Sequential call-and-wait round trips; raw lapin runs them through a
    /// named reply queue and through direct reply-to.
    pub(crate) async fn round_trips(
        &self,
        system: System,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        self.on_fresh_queue("rtt", async |queue: &str| {
            let worker = self.start_worker(system, queue)?;
            let calls = (self.settings.warmup, self.settings.calls);
            let measured = async {
                self.broker.wait_for_consumer(queue).await?;
                match system {
                    System::Lapin => {
                        for (mode, row) in [
                            (ReplyQueue::Named, Row::RoundTrip as fn(_) -> _),
                            (ReplyQueue::Direct, Row::DirectReplyTo),
                        ] {
                            let latencies =
                                raw_lapin::round_trips(&self.lapin, queue, &self.task, calls, mode)
                                    .await
                                    .with_context(|| format!("reply queue {mode:?}"))?;
                            report.add_latencies(row, system, latencies);
                        }
                    }
                    System::Celeriac => {
                        let latencies =
                            celeriac_side::round_trips(&self.producer, queue, calls).await?;
                        report.add_latencies(Row::RoundTrip, system, latencies);
                    }
                    System::Celery => {
                        let latencies = self.celery()?.round_trips(queue, calls).await?;
                        report.add_latencies(Row::RoundTrip, system, latencies);
                    }
                }
                anyhow::Ok(())
            }
            .await;
            worker.stop().await?;
            measured
        })
        .await
    }

    /// Sequential chains of `--chain-steps` `bench.incr` steps; records
    /// their p50 per step.
    pub(crate) async fn chains(&self, system: System, report: &mut Report) -> anyhow::Result<()> {
        let (chains, steps) = (self.settings.chains(), self.settings.chain_steps);
        let measured = self
            .on_fresh_queue("chain", async |queue: &str| {
                let worker = self.start_worker(system, queue)?;
                let measured = async {
                    self.broker.wait_for_consumer(queue).await?;
                    match system {
                        System::Celeriac => {
                            celeriac_side::chains(&self.producer, queue, chains, steps).await
                        }
                        System::Celery => self.celery()?.chains(queue, chains, steps).await,
                        System::Lapin => bail!("raw lapin has no chains"),
                    }
                }
                .await;
                worker.stop().await?;
                measured
            })
            .await?;
        report.add_chains(system, measured, steps);
        Ok(())
    }

    /// Seconds from sending a chord of `--chord-size` `bench.incr` tasks
    /// (and `bench.total` as its body) to the body's result. celeriac's
    /// worker joins it from the chord queue; Celery's, in Redis.
    pub(crate) async fn chord(&self, system: System) -> anyhow::Result<f64> {
        self.on_fresh_queue("chord", async |queue: &str| {
            let celery = self.celery_chords.as_ref();
            let worker = self.start_worker_on(system, self.broker.url(), queue, celery)?;
            let size = self.settings.chord_size;
            let measured = async {
                self.broker.wait_for_consumer(queue).await?;
                let elapsed = match (system, celery) {
                    (System::Celeriac, _) => {
                        celeriac_side::chord(&self.producer, queue, size).await?
                    }
                    (System::Celery, Some(celery)) => celery.chord(queue, size).await?,
                    _ => bail!("{} has no chords here", system.name()),
                };
                anyhow::Ok(elapsed.as_secs_f64())
            }
            .await;
            worker.stop().await?;
            measured
        })
        .await
    }

    /// The RSS in MiB of an idle worker while `n` tasks for its queue wait
    /// out a one-hour countdown, on a throwaway vhost (deleting it drops
    /// the parked tasks and the delay queues with them).
    pub(crate) async fn delayed(&self, system: System, report: &mut Report) -> anyhow::Result<f64> {
        let vhost = tokio::task::spawn_blocking(Vhost::create).await??;
        let url = vhost.url();
        let broker = Broker::connect(url.clone(), self.settings.queue_type).await?;
        let queue = self.fresh_queue_on(&broker, "delayed").await?;
        let celery = self.celery.as_ref().map(|c| c.on(url.clone()));
        let batch = (self.settings.n, self.settings.in_flight);
        match (system, &celery) {
            (System::Celeriac, _) => {
                let (channels, queue_type) =
                    (self.settings.producer_channels, self.settings.queue_type);
                let producer = celeriac_side::producer(&url, channels, queue_type).await?;
                celeriac_side::publish(&producer, &queue, batch, Some(COUNTDOWN)).await?;
            }
            (System::Celery, Some(celery)) => {
                let publisher = celery.publisher(&queue, batch.0, Some(COUNTDOWN)).await?;
                publisher.finish().await?;
            }
            _ => bail!("{} has no delayed tasks", system.name()),
        }
        let worker = self.start_worker_on(system, &url, &queue, celery.as_ref())?;
        let measured = async {
            broker.wait_for_consumer(&queue).await?;
            // Celery's worker fetches delayed tasks and holds them.
            let limit = self.settings.delayed_fetch();
            let left = broker.wait_until_empty_within(&queue, limit).await?;
            if left > 0 {
                report.notes.push(format!(
                    "{}: its worker had fetched {} of {} delayed tasks when its RSS was read ({limit:?} after it started)",
                    system.name(),
                    self.settings.n - u64::from(left),
                    self.settings.n
                ));
            }
            tokio::time::sleep(self.settings.settle()).await;
            worker.peak_rss_mib()
        }
        .await;
        worker.stop().await?;
        broker.close().await;
        measured
    }

    /// With `--warm-producer`, one untimed celeriac send to `queue`; its
    /// task is left for the worker (one more than `n`, not counted).
    async fn warm_up(&self, system: System, queue: &str) -> anyhow::Result<()> {
        if system == System::Celeriac && self.settings.warm_producer {
            celeriac_side::warm_up(&self.producer, queue).await?;
        }
        Ok(())
    }

    /// After the settle pause, [`Broker::with_fresh_queue`]: the queue is
    /// deleted also when `measure` failed.
    async fn on_fresh_queue<T>(
        &self,
        label: &str,
        measure: impl AsyncFnOnce(&str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        tokio::time::sleep(self.settings.settle()).await;
        self.broker.with_fresh_queue(label, measure).await
    }

    async fn fresh_queue_on(&self, broker: &Broker, label: &str) -> anyhow::Result<String> {
        tokio::time::sleep(self.settings.settle()).await;
        broker.fresh_queue(label).await
    }

    fn start_worker(&self, system: System, queue: &str) -> anyhow::Result<WorkerProcess> {
        self.start_worker_with(system, queue, false)
    }

    fn start_worker_with(
        &self,
        system: System,
        queue: &str,
        task_events: bool,
    ) -> anyhow::Result<WorkerProcess> {
        let settings = self.rust_worker(task_events);
        WorkerProcess::start(
            system,
            self.broker.url(),
            queue,
            settings,
            self.celery.as_ref(),
        )
    }

    fn start_worker_on(
        &self,
        system: System,
        url: &BrokerUrl,
        queue: &str,
        celery: Option<&Celery>,
    ) -> anyhow::Result<WorkerProcess> {
        WorkerProcess::start(system, url, queue, self.rust_worker(false), celery)
    }

    fn rust_worker(&self, task_events: bool) -> RustWorkerSettings {
        RustWorkerSettings {
            concurrency: self.settings.concurrency,
            prefetch: self.settings.prefetch(),
            task_events,
            queue_type: self.settings.queue_type,
            runtime_threads: self.settings.worker_threads,
        }
    }

    /// Closes the connections.
    pub(crate) async fn close(self) {
        let _ = self.lapin.close(200, "OK".into()).await;
        self.broker.close().await;
    }
}

/// `celery` with results in the Redis of `CELERIAC_REDIS_URL` (default
/// the local one, see `scripts/ensure-redis`), if Celery can use it; else
/// `None`, noted in `report`.
async fn celery_with_redis(celery: &Celery, report: &mut Report) -> Option<Celery> {
    let url = celeriac_tests::redis_ledger::redis_url();
    let celery = celery.with_backend(&url);
    match celery.check_backend().await {
        Ok(()) => Some(celery),
        Err(err) => {
            report.notes.push(format!(
                "celery chords skipped: they need a result backend that joins them, \
                 and Celery could not use Redis at {url} (start it with scripts/ensure-redis; \
                 the venv needs `celery[redis]`): {err:#}"
            ));
            None
        }
    }
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}
