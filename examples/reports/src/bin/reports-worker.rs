//! The reports example's worker: runs `reports.build` from the `reports`
//! queue until SIGTERM or ctrl-c, releasing each report's key when its
//! build finished. See the crate docs.
//!
//! ```text
//! reports-worker --queues reports --concurrency 4
//! ```

use anyhow::Context;
use celeriac_example_reports::{REPORTS_QUEUE, registry};
use celeriac_shared::BrokerUrl;
use celeriac_telemetry::{LogFormat, Logs, Telemetry};
use celeriac_worker::{Worker, WorkerConfig};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "The reports example's worker")]
struct Args {
    /// Queues to consume, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = REPORTS_QUEUE)]
    queues: Vec<String>,
    /// At most this many builds at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
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
    let telemetry = Telemetry::init("reports-worker", logs)?;
    let config = WorkerConfig {
        broker_url: BrokerUrl::from_addresses(&args.broker),
        queues: args.queues,
        concurrency: args.concurrency,
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
