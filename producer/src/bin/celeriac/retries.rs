//! `celeriac retries`: what waits in the delay ladder, and roughly when it
//! is due.

use std::process::ExitCode;

use anyhow::bail;
use celeriac_producer::{DelayReport, DelayedTasks, Producer};
use celeriac_shared::{Config, DEFAULT_QUEUE};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::commands::configured_queues;

/// Flags of `celeriac retries`.
#[derive(Debug, clap::Args)]
pub(crate) struct RetriesArgs {
    /// A queue whose waiting tasks to show; repeatable. Default: the
    /// configured queues and `celery`.
    #[arg(long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// Only count the messages per delay level; read none.
    #[arg(long)]
    counts_only: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(
    producer: &Producer,
    file: &Config,
    args: RetriesArgs,
) -> anyhow::Result<ExitCode> {
    let queues = resolve(producer, file, &args.queues).await?;
    let delayed = DelayedTasks::new(producer);
    let report = if args.counts_only {
        delayed.count().await?
    } else {
        delayed.inspect().await?
    };
    if args.json {
        print_json(&report, &queues)?;
    } else {
        print_text(&report, &queues);
    }
    Ok(ExitCode::SUCCESS)
}

/// The queues named with --queue (each must exist), or the configured ones
/// and `celery`.
async fn resolve(
    producer: &Producer,
    file: &Config,
    named: &[String],
) -> anyhow::Result<Vec<String>> {
    for queue in named {
        if producer.queue_stats(queue).await?.is_none() {
            bail!("unknown queue `{queue}`: it does not exist on the broker");
        }
    }
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    let mut queues = configured_queues(file);
    if !queues.iter().any(|q| q == DEFAULT_QUEUE) {
        queues.push(DEFAULT_QUEUE.to_owned());
    }
    Ok(queues)
}

fn print_json(report: &DelayReport, queues: &[String]) -> anyhow::Result<()> {
    let by_queue = report.by_queue();
    let selected: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| queues.contains(&t.queue))
        .collect();
    let shown: serde_json::Map<String, serde_json::Value> = by_queue
        .iter()
        .filter(|(queue, _)| queues.contains(queue))
        .map(|(queue, delays)| Ok((queue.clone(), serde_json::to_value(delays)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    let doc = json!({
        "waiting": report.waiting(),
        "browsed": report.browsed,
        "levels": report.levels,
        "queues": shown,
        "other_queues": report.tasks.len() - selected.len(),
        "tasks": selected,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

fn print_text(report: &DelayReport, queues: &[String]) {
    if !report.is_declared() {
        println!("no delay queues on the broker: nothing was ever delayed or retried");
        return;
    }
    println!(
        "{} message(s) waiting in the delay queues",
        report.waiting()
    );
    println!("{:<20}  {:>8}  DUE WITHIN", "LEVEL", "WAITING");
    for level in report.levels.iter().filter(|l| l.messages.unwrap_or(0) > 0) {
        let more = if level.truncated {
            " (not all read)"
        } else {
            ""
        };
        println!(
            "{:<20}  {:>8}  {}{more}",
            level.queue,
            level.messages.unwrap_or(0),
            humantime::format_duration(level.due_within)
        );
    }
    if !report.browsed {
        return;
    }
    let now = Utc::now();
    println!(
        "{:<30}  {:>8}  {:<36}  LAST DUE",
        "QUEUE", "WAITING", "NEXT DUE"
    );
    let by_queue = report.by_queue();
    for queue in queues {
        match by_queue.get(queue) {
            Some(d) => println!(
                "{queue:<30}  {:>8}  {:<36}  {}",
                d.count,
                due(d.next_due, now),
                due(d.last_due, now)
            ),
            None => println!("{queue:<30}  {:>8}  -", 0),
        }
    }
    let others: usize = by_queue
        .iter()
        .filter(|(queue, _)| !queues.contains(queue))
        .map(|(_, d)| d.count)
        .sum();
    if others > 0 {
        println!("({others} more for other queues; name them with --queue)");
    }
}

/// `in 4s (2026-01-01T10:00:04Z)`.
fn due(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = (at - now).to_std().unwrap_or_default();
    let left = std::time::Duration::from_secs(left.as_secs());
    format!(
        "in {} ({})",
        humantime::format_duration(left),
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}
