//! The worker's heartbeat: Celery's `worker-online`, `worker-heartbeat`
//! and `worker-offline` events on the `celeryev` exchange, so monitors
//! (the celeriac dashboard, Flower, `celery events`) see the worker, its
//! queues and its counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use celeriac_shared::{EVENT_EXCHANGE, WorkerEvent, WorkerEventKind, declare_event_exchange};
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Connection};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::tally::Tally;
use crate::{Error, WorkerConfig};

/// What a worker says about itself in every event.
pub(crate) struct Identity {
    /// The node name (`celeriac-worker-<pid>@<host>`).
    pub(crate) hostname: String,
    /// The queues consumed.
    pub(crate) queues: Vec<String>,
    /// At most this many tasks at once.
    pub(crate) concurrency: usize,
    /// The interval announced as `freq`.
    pub(crate) interval: Duration,
    /// The counts announced.
    pub(crate) tally: Arc<Tally>,
    /// Events sent so far, as the `clock`.
    pub(crate) clock: AtomicU64,
}

impl Identity {
    pub(crate) fn new(config: &WorkerConfig, hostname: String, tally: Arc<Tally>) -> Self {
        Self {
            hostname,
            queues: config.queues.clone(),
            concurrency: config.concurrency,
            // A zero interval would spin (and `tokio::time::interval`
            // refuses it).
            interval: config
                .heartbeat_interval
                .unwrap_or(celeriac_shared::DEFAULT_HEARTBEAT_INTERVAL)
                .max(Duration::from_millis(10)),
            tally,
            clock: AtomicU64::new(0),
        }
    }

    /// The event of `kind` with the counts as of now.
    fn event(&self, kind: WorkerEventKind) -> WorkerEvent {
        let counts = self.tally.counts();
        let now = chrono::Utc::now();
        WorkerEvent {
            kind,
            hostname: self.hostname.clone(),
            timestamp: now.timestamp_micros() as f64 / 1e6,
            utcoffset: 0.0,
            pid: std::process::id(),
            clock: self.clock.fetch_add(1, Ordering::Relaxed) + 1,
            freq: self.interval.as_secs_f64(),
            active: counts.in_flight,
            processed: counts.processed,
            loadavg: load_average(),
            sw_ident: "celeriac".into(),
            sw_ver: env!("CARGO_PKG_VERSION").into(),
            sw_sys: std::env::consts::OS.into(),
            celeriac_queues: self.queues.clone(),
            celeriac_concurrency: u64::try_from(self.concurrency).ok(),
            celeriac_failed: Some(counts.failed),
            celeriac_in_flight: Some(counts.in_flight),
        }
    }
}

/// Sends one session's events on a channel of its own: `worker-online`
/// at once, then a heartbeat every interval until stopped.
pub(crate) struct Heartbeat {
    /// Publishes the events.
    channel: Channel,
    /// The periodic sender; aborted when the heartbeat stops.
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Declares the event exchange, sends `worker-online` and starts the
    /// heartbeats.
    pub(crate) async fn start(
        connection: &Connection,
        identity: &Arc<Identity>,
    ) -> Result<Self, Error> {
        let channel = connection
            .create_channel()
            .await
            .map_err(Error::amqp("channel.open"))?;
        declare_event_exchange(&channel).await?;
        send(&channel, &identity.event(WorkerEventKind::Online)).await;
        let task = tokio::spawn({
            let (channel, identity) = (channel.clone(), Arc::clone(identity));
            async move {
                let mut ticks = tokio::time::interval(identity.interval);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    send(&channel, &identity.event(WorkerEventKind::Heartbeat)).await;
                }
            }
        });
        Ok(Self { channel, task })
    }

    /// Stops the heartbeats; on a graceful shutdown (`offline`), says
    /// `worker-offline` first.
    pub(crate) async fn stop(self, identity: &Identity, offline: bool) {
        self.task.abort();
        if offline {
            send(&self.channel, &identity.event(WorkerEventKind::Offline)).await;
        }
        let _ = self.channel.close(200, "OK".into()).await;
    }
}

/// Publishes an event, transient and unconfirmed as Celery does: a lost
/// heartbeat is made up for by the next one.
async fn send(channel: &Channel, event: &WorkerEvent) {
    let Ok((body, properties)) = event.encode() else {
        return;
    };
    let published = channel
        .basic_publish(
            EVENT_EXCHANGE.into(),
            event.kind.routing_key().into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await;
    if let Err(err) = published {
        debug!(error = %err, "heartbeat not sent");
    }
}

/// The machine's 1, 5 and 15 minute load averages (empty where
/// `/proc/loadavg` is not there).
fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|n| n.parse().ok())
        .collect()
}
