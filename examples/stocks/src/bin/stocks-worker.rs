//! The stocks example's worker: runs `stocks.refresh` from the `stocks`
//! queue until SIGTERM or ctrl-c. See the crate docs.
//!
//! ```text
//! stocks-worker --queues stocks --metrics-addr 0.0.0.0:9090
//! ```

use std::net::SocketAddr;

use anyhow::Context;
use celeriac_example_stocks::{STOCKS_QUEUE, registry};
use celeriac_shared::BrokerUrl;
use celeriac_telemetry::{LogFormat, Logs, Telemetry};
use celeriac_worker::{Worker, WorkerConfig};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "The stocks example's worker")]
struct Args {
    /// Queues to consume, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = STOCKS_QUEUE)]
    queues: Vec<String>,
    /// At most this many refreshes at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Serve /metrics, /healthz and /readyz on this address. Off when unset.
    #[arg(long, env = "CELERIAC_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Broker URL. Repeat the flag, or give a comma-separated list (also
    /// in CELERIAC_BROKER_URL), for several addresses (a cluster's nodes).
    #[arg(long, env = "CELERIAC_BROKER_URL", default_value = BrokerUrl::LOCAL, hide_env_values = true)]
    broker: Vec<String>,
    /// Log lines as `human` text or `json`.
    #[arg(long, env = "CELERIAC_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = Logs::stdout(args.log_format, "RUST_LOG", "info,lapin=warn");
    let telemetry = Telemetry::init("stocks-worker", logs)?;
    let config = WorkerConfig {
        broker_url: BrokerUrl::from_addresses(&args.broker),
        queues: args.queues,
        concurrency: args.concurrency,
        metrics_addr: args.metrics_addr,
        ..WorkerConfig::default()
    };
    let outcome = Worker::with_registry(config, registry())
        .run(celeriac_telemetry::shutdown_signal())
        .await
        .context("worker failed");
    if let Err(err) = telemetry.shutdown() {
        tracing::warn!(error = %err, "spans may be lost");
    }
    outcome
}
