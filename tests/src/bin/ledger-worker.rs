//! A worker running `ledger.record` for crash tests:
//! `ledger-worker <ledger file> <queue> <concurrency>`, broker from
//! `CELERIAC_BROKER_URL`. Logs like the demo worker; stops on ctrl-c or
//! SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use celeriac_worker::{Worker, WorkerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,lapin=warn"))
        .init();
    let mut args = std::env::args().skip(1);
    let ledger = PathBuf::from(
        args.next()
            .context("usage: ledger-worker LEDGER QUEUE CONCURRENCY")?,
    );
    let queue = args.next().context("missing queue")?;
    let concurrency = args.next().context("missing concurrency")?.parse()?;
    let config = WorkerConfig {
        broker_url: celeriac_tests::broker_url(),
        queues: vec![queue],
        concurrency,
        ..WorkerConfig::default()
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Worker::with_registry(config, celeriac_tests::ledger::registry(ledger))
        .run(shutdown)
        .await?;
    Ok(())
}
