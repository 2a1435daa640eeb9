//! `celeriac dlq`: list, show, replay and purge dead letters.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_producer::{DeadLetterEntry, DeadLetters, Producer, Selection};
use celeriac_shared::{Config, DEFAULT_QUEUE, DeadLetterTopology};
use chrono::{SecondsFormat, Utc};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::commands::configured_queues;

/// Replays of at least this many dead letters show a progress bar (on a
/// terminal).
const PROGRESS_BAR_FROM: u64 = 50;

/// The work queues whose dead letters a command reads.
#[derive(Debug, clap::Args)]
pub(crate) struct QueueArgs {
    /// A work queue whose dead-letter queue (`<queue>.dead`) to read;
    /// repeatable. Default: the configured queues and `celery`, those that
    /// have one.
    #[arg(long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqAction {
    /// List dead letters, one line each; nothing is removed.
    List {
        #[command(flatten)]
        queues: QueueArgs,
        /// Only tasks whose name matches this glob (`*`, `?`).
        #[arg(long, value_name = "PATTERN")]
        task: Option<String>,
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show everything about one dead letter; nothing is removed.
    Show {
        /// The task id.
        task_id: String,
        #[command(flatten)]
        queues: QueueArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish dead letters back to where they were sent, with retries
    /// reset; each leaves the dead-letter queue only once the broker
    /// confirmed its copy.
    Replay {
        /// Task ids to replay.
        task_ids: Vec<String>,
        /// Replay every dead letter of the queues (narrowed by --task).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        queues: QueueArgs,
        /// Only tasks whose name matches this glob (`*`, `?`).
        #[arg(long, value_name = "PATTERN")]
        task: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete dead letters for good; refuses without --yes.
    Purge {
        #[command(flatten)]
        queues: QueueArgs,
        /// Only dead letters that failed longer ago than this, e.g. `7d`.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Only tasks whose name matches this glob (`*`, `?`).
        #[arg(long, value_name = "PATTERN")]
        task: Option<String>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(
    producer: &Producer,
    file: &Config,
    action: DlqAction,
) -> anyhow::Result<ExitCode> {
    let dead = DeadLetters::new(producer);
    match action {
        DlqAction::List {
            queues,
            task,
            limit,
            json,
        } => {
            let queues = resolve(&dead, file, &queues).await?;
            let selection = Selection {
                task,
                limit,
                ..Selection::default()
            };
            list(&dead, &queues, &selection, json).await
        }
        DlqAction::Show {
            task_id,
            queues,
            json,
        } => show(&dead, &resolve(&dead, file, &queues).await?, &task_id, json).await,
        DlqAction::Replay {
            task_ids,
            all,
            queues,
            task,
            json,
        } => {
            if task_ids.is_empty() && !all && task.is_none() {
                bail!(
                    "name the task ids to replay, or pass --all (with --queue/--task to narrow it)"
                );
            }
            let queues = resolve(&dead, file, &queues).await?;
            let selection = Selection {
                task,
                task_ids,
                ..Selection::default()
            };
            replay(&dead, &queues, &selection, json).await
        }
        DlqAction::Purge {
            queues,
            older_than,
            task,
            yes,
            json,
        } => {
            let queues = resolve(&dead, file, &queues).await?;
            let failed_before = older_than
                .map(|age| chrono::Duration::from_std(age).map(|age| Utc::now() - age))
                .transpose()
                .context("--older-than is too long")?;
            let selection = Selection {
                task,
                failed_before,
                ..Selection::default()
            };
            purge(&dead, &queues, &selection, yes, json).await
        }
    }
}

/// The queues named with --queue (each must have a dead-letter queue), or
/// the configured ones and `celery` that have one.
async fn resolve(
    dead: &DeadLetters,
    file: &Config,
    args: &QueueArgs,
) -> anyhow::Result<Vec<String>> {
    if !args.queues.is_empty() {
        for queue in &args.queues {
            if dead.count(queue).await?.is_none() {
                bail!(
                    "unknown queue `{queue}`: there is no dead-letter queue `{}` (no worker has consumed `{queue}` yet)",
                    DeadLetterTopology::queue_name(queue)
                );
            }
        }
        return Ok(args.queues.clone());
    }
    let mut candidates = configured_queues(file);
    if !candidates.iter().any(|q| q == DEFAULT_QUEUE) {
        candidates.push(DEFAULT_QUEUE.to_owned());
    }
    let mut queues = Vec::new();
    for queue in candidates {
        if dead.count(&queue).await?.is_some() {
            queues.push(queue);
        }
    }
    Ok(queues)
}

async fn list(
    dead: &DeadLetters,
    queues: &[String],
    selection: &Selection,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let entries = dead.list(queues, selection).await?;
    if as_json {
        let doc = json!({ "count": entries.len(), "dead_letters": entries });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<24}  {:<30}  {:<50}  {:>7}  {:<27}  QUEUE",
        "TASK ID", "TASK", "ARGS", "ERROR", "RETRIES", "FAILED AT"
    );
    for entry in &entries {
        println!(
            "{:<36}  {:<24}  {:<30}  {:<50}  {:>7}  {:<27}  {}",
            entry.task_id.as_deref().unwrap_or("-"),
            entry.task.as_deref().unwrap_or("-"),
            entry.short_args(30),
            shorten(&entry.short_error(), 50),
            entry.retries,
            failed_at(entry),
            entry.queue
        );
    }
    let names: Vec<String> = queues
        .iter()
        .map(|q| DeadLetterTopology::queue_name(q))
        .collect();
    println!(
        "{} dead letter(s) in {}",
        entries.len(),
        list_or_none(&names)
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(
    dead: &DeadLetters,
    queues: &[String],
    task_id: &str,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(entry) = dead.find(queues, task_id).await? else {
        let names: Vec<String> = queues
            .iter()
            .map(|q| DeadLetterTopology::queue_name(q))
            .collect();
        bail!(
            "no dead letter with task id {task_id} in {}",
            list_or_none(&names)
        );
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&entry)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", describe(&entry)?);
    Ok(ExitCode::SUCCESS)
}

/// Everything about a dead letter, as `show` prints it.
fn describe(entry: &DeadLetterEntry) -> anyhow::Result<String> {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<16}{value}\n"));
    line("task id:", or_dash(&entry.task_id));
    line("task:", or_dash(&entry.task));
    let dead = DeadLetterTopology::queue_name(&entry.queue);
    line(
        "queue:",
        format!("{} ({dead}, position {})", entry.queue, entry.position),
    );
    line("reason:", or_dash(&entry.reason));
    line("error:", entry.short_error());
    line("retries:", entry.retries.to_string());
    line("failed at:", failed_at(entry));
    line("worker:", or_dash(&entry.worker));
    line(
        "published to:",
        format!(
            "exchange `{}`, routing key `{}`",
            or_dash(&entry.original_exchange),
            or_dash(&entry.original_routing_key)
        ),
    );
    line("trace id:", or_dash(&entry.trace_id));
    line(
        "replayed:",
        format!("{} time(s) before", entry.replay_count),
    );
    line("args:", serde_json::to_string(&entry.args)?);
    line("kwargs:", serde_json::to_string(&entry.kwargs)?);
    if let Some(error) = &entry.decode_error {
        line("not a task:", error.clone());
    }
    out.push_str("traceback:\n");
    for text in entry.traceback.as_deref().unwrap_or("-").lines() {
        out.push_str(&format!("  {text}\n"));
    }
    out.push_str("headers:\n");
    for text in serde_json::to_string_pretty(&entry.headers)?.lines() {
        out.push_str(&format!("  {text}\n"));
    }
    Ok(out)
}

async fn replay(
    dead: &DeadLetters,
    queues: &[String],
    selection: &Selection,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let mut bar: Option<ProgressBar> = None;
    let summary = dead
        .replay(queues, selection, |progress| {
            let bar = bar.get_or_insert_with(|| progress_bar(progress.total));
            bar.set_length(progress.total);
            bar.set_position(progress.done);
        })
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let ok = summary.failed.is_empty() && summary.not_found.is_empty();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "replayed {}, skipped {}, failed {}",
            summary.replayed,
            summary.skipped,
            summary.failed.len()
        );
        for failure in &summary.failed {
            let id = failure.task_id.as_deref().unwrap_or("-");
            println!("failed {id} ({}): {}", failure.queue, failure.error);
        }
    }
    if !summary.not_found.is_empty() {
        eprintln!(
            "error: no dead letter with task id {}",
            summary.not_found.join(", ")
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn purge(
    dead: &DeadLetters,
    queues: &[String],
    selection: &Selection,
    yes: bool,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    if !yes {
        let matching = dead.list(queues, selection).await?.len();
        bail!(
            "purge deletes dead letters for good: {matching} would be deleted; pass --yes to delete them"
        );
    }
    let summary = dead.purge(queues, selection).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for (queue, purged) in &summary.queues {
            println!(
                "purged {purged} from {}",
                DeadLetterTopology::queue_name(queue)
            );
        }
        println!("purged {}, kept {}", summary.purged, summary.kept);
    }
    Ok(ExitCode::SUCCESS)
}

/// A bar on stderr (drawn only on a terminal) for large replays, else a
/// hidden one.
fn progress_bar(total: u64) -> ProgressBar {
    if total < PROGRESS_BAR_FROM {
        return ProgressBar::hidden();
    }
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} dead letters {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn failed_at(entry: &DeadLetterEntry) -> String {
    entry.failed_at.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no dead-letter queue".into()
    } else {
        names.join(", ")
    }
}

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && line.len() == text.len() {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
