//! The soak run: a million tasks through two celeriac worker processes,
//! each worker's resident memory sampled every second, to show that it
//! stays flat (no growth with the number of tasks handled).
//!
//! ```text
//! scripts/soak --n 1000000 --workers 2
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use celeriac_shared::QueueType;
use clap::Args;

use crate::System;
use crate::celeriac_side;
use crate::fixture::Broker;
use crate::worker_process::{RustWorkerSettings, WorkerProcess};

/// Flags of the `soak` subcommand.
#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// Tasks to push through.
    #[arg(long, default_value_t = 1_000_000)]
    n: u64,
    /// Worker processes consuming the queue.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrency (and prefetch) of each worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Publishes in flight.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
}

/// One second's reading.
struct Sample {
    /// Since the start.
    at: Duration,
    /// Messages ready in the queue.
    ready: u32,
    /// Each worker's RSS in MiB.
    rss: Vec<f64>,
}

/// Runs the soak and prints the samples (every 10 s) and a summary.
pub(crate) async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let classic = QueueType::Classic;
    let broker = Broker::connect(celeriac_tests::broker_url(), classic).await?;
    broker
        .with_fresh_queue("soak", async |queue: &str| {
            soak_on(&args, &broker, queue).await
        })
        .await
}

/// [`soak`] on `queue`, which it leaves for the caller to delete.
async fn soak_on(args: &SoakArgs, broker: &Broker, queue: &str) -> anyhow::Result<()> {
    let classic = QueueType::Classic;
    let producer = celeriac_side::producer(broker.url(), None, classic).await?;
    let settings = RustWorkerSettings {
        concurrency: args.concurrency,
        prefetch: u16::try_from(args.concurrency).unwrap_or(u16::MAX),
        task_events: false,
        queue_type: classic,
        runtime_threads: None,
    };
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let worker = WorkerProcess::start(System::Celeriac, broker.url(), queue, settings, None)?;
        workers.push(worker);
    }
    broker.wait_for_consumer(queue).await?;
    let started = Instant::now();
    let publishing = {
        let (producer, queue) = (producer.clone(), queue.to_owned());
        let (n, in_flight) = (args.n, args.in_flight);
        tokio::spawn(async move {
            celeriac_side::publish(&producer, &queue, (n, in_flight), None).await
        })
    };
    println!("| s | ready | {} |", worker_columns(args.workers));
    println!("|---|---|{}", "---|".repeat(args.workers));
    let mut samples = Vec::new();
    let mut published = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (ready, _) = broker.counts(queue).await?;
        let rss = workers
            .iter()
            .map(WorkerProcess::rss_mib)
            .collect::<anyhow::Result<Vec<f64>>>()?;
        let sample = Sample {
            at: started.elapsed(),
            ready,
            rss,
        };
        if samples.len() % 10 == 9 {
            println!("{}", row(&sample));
        }
        samples.push(sample);
        if published.is_none() && publishing.is_finished() {
            published = Some(started.elapsed());
        }
        if published.is_some() && ready == 0 {
            break;
        }
    }
    publishing.await?.context("publishing failed")?;
    let drained = started.elapsed();
    for worker in workers {
        worker.stop().await?;
    }
    println!(
        "{}",
        summary(args, &samples, published.unwrap_or(drained), drained)
    );
    Ok(())
}

fn worker_columns(workers: usize) -> String {
    (1..=workers)
        .map(|w| format!("worker {w} RSS (MiB)"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn row(sample: &Sample) -> String {
    let rss: Vec<String> = sample.rss.iter().map(|r| format!("{r:.1}")).collect();
    format!(
        "| {:.0} | {} | {} |",
        sample.at.as_secs_f64(),
        sample.ready,
        rss.join(" | ")
    )
}

/// Per worker: the median RSS over the first and the last tenth of the
/// samples (after 10 s of warm-up) and the peak, and the growth between.
fn summary(args: &SoakArgs, samples: &[Sample], published: Duration, drained: Duration) -> String {
    let mut text = format!(
        "\n{} tasks, {} workers at concurrency {}: published in {:.0} s, all run in {:.0} s ({:.0} tasks/s)\n\n\
         | worker | first tenth (MiB) | last tenth (MiB) | growth (MiB) | peak (MiB) |\n|---|---|---|---|---|\n",
        args.n,
        args.workers,
        args.concurrency,
        published.as_secs_f64(),
        drained.as_secs_f64(),
        args.n as f64 / drained.as_secs_f64(),
    );
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= Duration::from_secs(10))
        .collect();
    let tenth = (steady.len() / 10).max(1);
    for w in 0..args.workers {
        let series: Vec<f64> = steady.iter().map(|s| s.rss[w]).collect();
        let first = median(series.iter().take(tenth).copied().collect());
        let last = median(series.iter().rev().take(tenth).copied().collect());
        let peak = series.iter().copied().fold(0.0, f64::max);
        text.push_str(&format!(
            "| {} | {first:.1} | {last:.1} | {:+.1} | {peak:.1} |\n",
            w + 1,
            last - first
        ));
    }
    text
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
