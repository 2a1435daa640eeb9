//! A producer for chaos tests: sends `ledger.count` tasks until `--count`
//! of them were confirmed by the broker, recording each confirmed task id
//! in the Redis ledger. A send that fails (the broker stayed away longer
//! than the send timeout) is counted and replaced by a new task. Prints
//! `confirmed=N failed=M` at the end. Broker from `CELERIAC_BROKER_URL`.
//!
//! ```text
//! chaos-producer --ledger chaos-1234 --queue chaos-1234 --count 10000
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{QueueType, Router, SendOptions, Topology};
use celeriac_tests::redis_ledger::{Count, RedisLedger};
use clap::Parser;
use futures::StreamExt;
use tokio::time::Instant;

/// Command-line flags.
#[derive(Debug, Parser)]
struct Args {
    /// The ledger's Redis key prefix.
    #[arg(long)]
    ledger: String,
    /// The queue to send to.
    #[arg(long)]
    queue: String,
    /// How many confirmed tasks to send.
    #[arg(long)]
    count: u64,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 100)]
    in_flight: usize,
    /// Tasks per second at most, so that a run lasts long enough for the
    /// faults to hit it.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// The type of the queues it declares: `classic` or `quorum`.
    #[arg(long, default_value = "classic")]
    queue_type: QueueType,
    /// The connection's name, as the broker lists it.
    #[arg(long, default_value = "chaos-producer")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,lapin=off"))
        .init();
    let args = Args::parse();
    let ledger = RedisLedger::open(&args.ledger).await?;
    let config = ProducerConfig {
        broker_url: celeriac_tests::broker_url(),
        router: Router::new(vec![], &args.queue),
        topology: Topology::new(vec![]).default_queue_type(args.queue_type),
        connection_name: args.name,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config).await?;
    let failed = AtomicU64::new(0);
    let start = Instant::now();
    futures::stream::iter(0..args.count)
        .for_each_concurrent(args.in_flight, |i| {
            #[allow(clippy::cast_precision_loss)]
            let due = start + Duration::from_secs_f64(i as f64 / args.rate.max(1.0));
            let (producer, ledger, failed) = (&producer, &ledger, &failed);
            async move {
                tokio::time::sleep_until(due).await;
                send_until_confirmed(producer, ledger, failed).await;
            }
        })
        .await;
    println!(
        "confirmed={} failed={}",
        args.count,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Sends one task, and a new one after each failed send, until one is
/// confirmed; records it in the ledger.
async fn send_until_confirmed(producer: &Producer, ledger: &RedisLedger, failed: &AtomicU64) {
    loop {
        match producer
            .send_with::<Count>(&(), SendOptions::ignore_result())
            .await
        {
            Ok(handle) => {
                while let Err(err) = ledger.confirm(handle.id()).await {
                    eprintln!("ledger write failed: {err}; trying again");
                }
                return;
            }
            Err(err) => {
                failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("send failed: {:#}", anyhow::Error::from(err));
            }
        }
    }
}
