//! The CLI's commands, each a thin layer over the producer library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, CallError, Config, SendOptions, Task, Uniqueness};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cli::{Cli, Command, TaskArgs, TopologyAction};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Beat(crate::beat::BeatArgs {
        check: Some(file),
        runs,
        ..
    }) = &cli.command
    {
        return crate::beat::check(file, *runs);
    }
    let file = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let broker = BrokerUrl::from_addresses(&cli.broker);
    let producer = Producer::connect(ProducerConfig::from_config(&file, broker.clone()))
        .await
        .with_context(|| format!("cannot reach the broker at {broker}"))?;
    match cli.command {
        Command::Send {
            task,
            countdown,
            priority,
            unique_key,
            unique_until,
            unique_ttl,
        } => {
            let (args, kwargs) = parse_arguments(&task)?;
            let unique = match unique_key {
                Some(key) => Some(
                    Uniqueness::new(key)?
                        .with_until(unique_until)
                        .with_ttl(unique_ttl)?,
                ),
                None => None,
            };
            let options = SendOptions {
                queue: task.queue.clone(),
                countdown,
                priority,
                ignore_result: true,
                unique,
                ..SendOptions::default()
            };
            let handle = producer
                .send_raw::<Box<RawValue>>(&task.task, args, kwargs, options)
                .await?;
            println!("{}", handle.id());
            if handle.is_duplicate() {
                eprintln!(
                    "not sent: the uniqueness key is held by task {}",
                    handle.id()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Call { task, timeout } => call(&producer, &task, timeout).await,
        Command::Sum {
            to,
            chunks,
            timeout,
        } => sum(&producer, to, chunks, timeout).await,
        Command::Topology {
            action: TopologyAction::Declare,
        } => {
            for queue in file.queue_names() {
                producer.declare_queue(&queue).await?;
                println!("declared {queue}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { action } => crate::dlq::run(&producer, &file, action).await,
        Command::Retries(args) => crate::retries::run(&producer, &file, args).await,
        Command::Dashboard(args) => crate::dashboard::run(&producer, &file, args).await,
        Command::Inspect(args) => crate::inspect::inspect(&producer, args).await,
        Command::Revoke(args) => crate::inspect::revoke(&producer, args).await,
        Command::Control(args) => crate::inspect::control(&producer, args).await,
        Command::Beat(args) => crate::beat::run(&producer, args).await,
        Command::Queues => {
            for queue in file.queue_names() {
                match producer.queue_stats(&queue).await? {
                    Some(stats) => println!(
                        "{queue}  messages={}  consumers={}",
                        stats.messages, stats.consumers
                    ),
                    None => println!("{queue}  (not declared)"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn call(producer: &Producer, task: &TaskArgs, timeout: Duration) -> anyhow::Result<ExitCode> {
    let (args, kwargs) = parse_arguments(task)?;
    let options = SendOptions {
        queue: task.queue.clone(),
        ..SendOptions::default()
    };
    let handle = producer
        .send_raw::<Box<RawValue>>(&task.task, args, kwargs, options)
        .await?;
    match handle.wait(timeout).await {
        Ok(result) => {
            println!("{}", result.get());
            Ok(ExitCode::SUCCESS)
        }
        Err(CallError::Failed { task_id, failure }) => {
            let error = format!("{}: {}", failure.exc_type, failure.message);
            eprintln!("task {task_id} failed: {error}");
            // A Python traceback says more than its last line; a Rust
            // worker's is that line again, plus the error's sources.
            let traceback = failure.traceback.as_deref().map(str::trim_end);
            if let Some(more) = traceback.filter(|t| !t.is_empty() && *t != error) {
                let more = more.strip_prefix(error.as_str()).unwrap_or(more);
                eprintln!("{}", more.trim_start_matches('\n'));
            }
            Ok(ExitCode::FAILURE)
        }
        Err(err) => Err(err.into()),
    }
}

/// `demo.sum_range(start, end)` as the `sum` command calls it (the demo
/// worker's own definition lives in `celeriac-demo`, which the CLI does
/// not depend on).
struct SumRange;

/// The keyword arguments of `demo.sum_range`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SumRangeArgs {
    start: i64,
    end: i64,
}

impl Task for SumRange {
    const NAME: &'static str = "demo.sum_range";
    type Args = SumRangeArgs;
    type Output = i128;
}

async fn sum(
    producer: &Producer,
    to: i64,
    chunks: u32,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    if to < 1 || chunks == 0 {
        bail!("--to must be at least 1 and --chunks at least 1");
    }
    let ranges = split(to, chunks);
    let group = producer
        .map::<SumRange>(
            ranges
                .iter()
                .map(|&(start, end)| SumRangeArgs { start, end }),
        )
        .await?;
    let bar = ProgressBar::new(group.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} chunks {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results = group
        .join_with_progress(timeout, |done, _| bar.set_position(done as u64))
        .await;
    bar.finish();
    let mut total: i128 = 0;
    let mut failed = 0;
    for (range, result) in ranges.iter().zip(results) {
        match result {
            Ok(part) => total += part,
            Err(err) => {
                failed += 1;
                eprintln!("chunk {}..={} failed: {err}", range.0, range.1);
            }
        }
    }
    let expected = i128::from(to) * (i128::from(to) + 1) / 2;
    println!("sum 1..={to} over {} chunks = {total}", ranges.len());
    println!(
        "check n(n+1)/2 = {expected}: {}",
        if total == expected { "ok" } else { "MISMATCH" }
    );
    Ok(if failed == 0 && total == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Splits 1..=to into at most `chunks` contiguous inclusive ranges.
fn split(to: i64, chunks: u32) -> Vec<(i64, i64)> {
    let chunks = i64::from(chunks).min(to);
    let size = to / chunks;
    let extra = to % chunks;
    let mut start = 1;
    (0..chunks)
        .map(|i| {
            let end = start + size - 1 + i64::from(i < extra);
            let range = (start, end);
            start = end + 1;
            range
        })
        .collect()
}

fn parse_arguments(task: &TaskArgs) -> anyhow::Result<(Vec<Value>, Map<String, Value>)> {
    let args = match serde_json::from_str(&task.args).context("--args is not JSON")? {
        Value::Array(args) => args,
        other => bail!("--args must be a JSON array, got {other}"),
    };
    let kwargs = match serde_json::from_str(&task.kwargs).context("--kwargs is not JSON")? {
        Value::Object(kwargs) => kwargs,
        other => bail!("--kwargs must be a JSON object, got {other}"),
    };
    Ok((args, kwargs))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_covers_the_range_without_gaps() {
        for (to, chunks) in [(10, 3), (1_000_000, 16), (5, 8), (7, 1)] {
            let ranges = split(to, chunks);
            assert_eq!(ranges.first().map(|r| r.0), Some(1));
            assert_eq!(ranges.last().map(|r| r.1), Some(to));
            assert!(ranges.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        }
    }
}
