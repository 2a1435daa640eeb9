//! The demo worker: runs `demo.add`, `demo.sum_range`, `demo.sleep`,
//! `demo.fail` and `demo.flaky` from the given queues until SIGTERM or
//! ctrl-c.
//!
//! ```text
//! celeriac-demo-worker --queues celery,reports --concurrency 16 --metrics-addr 0.0.0.0:9090
//! ```
//!
//! Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set (see `celeriac-telemetry`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use celeriac_demo as demo;
use celeriac_shared::{BrokerUrl, Config, QueueType};
use celeriac_telemetry::{LogFormat, Logs, Telemetry};
use celeriac_worker::{Worker, WorkerConfig};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(version, about = "Run the celeriac demo tasks")]
struct Args {
    /// Queues to consume, comma-separated. Defaults to the config file's
    /// default queue, `celery` without one.
    #[arg(long, value_delimiter = ',')]
    queues: Vec<String>,
    /// At most this many tasks at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Routing and topology file (TOML).
    #[arg(long, env = "CELERIAC_CONFIG")]
    config: Option<PathBuf>,
    /// `classic` or `quorum` (replicated): the type of every queue whose
    /// `[[queue]]` entry sets none, instead of the config file's top-level
    /// `queue_type`. Producers must declare the queues alike.
    #[arg(long, env = "CELERIAC_QUEUE_TYPE")]
    queue_type: Option<QueueType>,
    /// Broker URL. Repeat the flag, or give a comma-separated list (also
    /// in CELERIAC_BROKER_URL), for several addresses (a cluster's nodes):
    /// the worker connects to the first that answers and, when that
    /// connection is lost, to the next.
    #[arg(long, env = "CELERIAC_BROKER_URL", default_value = BrokerUrl::LOCAL, hide_env_values = true)]
    broker: Vec<String>,
    /// How long in-flight tasks get to finish on shutdown, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace_period: Duration,
    /// Serve /metrics, /healthz and /readyz on this address, e.g.
    /// `0.0.0.0:9090`. Off when unset.
    #[arg(long, env = "CELERIAC_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Publish a Celery `worker-heartbeat` event this often, e.g. `2s`;
    /// `off` sends no worker events.
    #[arg(long, env = "CELERIAC_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = parse_interval)]
    heartbeat_interval: Interval,
    /// Send Celery's task events (`task-received`, `task-succeeded`, ...)
    /// from the start, as Celery's `-E`; Flower turns them on anyway.
    #[arg(short = 'E', long)]
    task_events: bool,
    /// Log lines as `human` text or `json`, one object per line.
    #[arg(long, env = "CELERIAC_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = Logs::stdout(args.log_format, "RUST_LOG", "info,lapin=warn");
    let telemetry = Telemetry::init("celeriac-demo-worker", logs)?;
    let mut file = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(queue_type) = args.queue_type {
        file.queue_type = queue_type;
    }
    let mut config = WorkerConfig::from_config(&file, BrokerUrl::from_addresses(&args.broker));
    if !args.queues.is_empty() {
        config.queues = args.queues;
    }
    config.concurrency = args.concurrency;
    config.grace_period = args.grace_period;
    config.metrics_addr = args.metrics_addr;
    config.heartbeat_interval = args.heartbeat_interval.0;
    config.task_events = args.task_events;
    let outcome = Worker::with_registry(config, demo::registry())
        .run(celeriac_telemetry::shutdown_signal())
        .await
        .context("worker failed");
    if let Err(err) = telemetry.shutdown() {
        tracing::warn!(error = %err, "spans may be lost");
    }
    outcome
}

/// A heartbeat interval, or `None` for `off`.
#[derive(Debug, Clone, Copy)]
struct Interval(Option<Duration>);

/// Why a heartbeat interval is refused.
#[derive(Debug, thiserror::Error)]
enum IntervalError {
    #[error("must be more than 0 (or `off`)")]
    Zero,
    #[error(transparent)]
    Invalid(#[from] humantime::DurationError),
}

fn parse_interval(text: &str) -> Result<Interval, IntervalError> {
    match text {
        "off" => Ok(Interval(None)),
        _ => match humantime::parse_duration(text)? {
            interval if interval.is_zero() => Err(IntervalError::Zero),
            interval => Ok(Interval(Some(interval))),
        },
    }
}
