//! A worker running `ledger.count` for chaos tests: every run is counted
//! in a Redis ledger. Broker from `CELERIAC_BROKER_URL`; logs like the
//! demo worker but without a line per task; stops on ctrl-c or SIGTERM.
//!
//! ```text
//! chaos-worker --ledger chaos-1234 --queue chaos-1234 --concurrency 32
//! ```

use anyhow::Context;
use celeriac_shared::{QueueType, Topology};
use celeriac_tests::redis_ledger::{RedisLedger, registry};
use celeriac_worker::{Worker, WorkerConfig};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
struct Args {
    /// The ledger's Redis key prefix.
    #[arg(long)]
    ledger: String,
    /// The queue to consume.
    #[arg(long)]
    queue: String,
    /// Tasks at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The type of the queues it declares: `classic` or `quorum`.
    #[arg(long, default_value = "classic")]
    queue_type: QueueType,
    /// The connection's name, as the broker lists it.
    #[arg(long, default_value = "chaos-worker")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,celeriac_worker::worker=info,lapin=off",
        ))
        .init();
    let args = Args::parse();
    let ledger = RedisLedger::open(&args.ledger).await?;
    let config = WorkerConfig {
        broker_url: celeriac_tests::broker_url(),
        queues: vec![args.queue],
        concurrency: args.concurrency,
        topology: Topology::new(vec![]).default_queue_type(args.queue_type),
        connection_name: args.name,
        ..WorkerConfig::default()
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Worker::with_registry(config, registry(ledger))
        .run(shutdown)
        .await
        .context("worker failed")
}
