//! `celeriac dlq`: list, show, replay and purge dead letters.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_admin::{DeadLetters, Selection};
use celeriac_producer::Producer;
use celeriac_shared::{Config, DEFAULT_QUEUE, DeadLetterTopology};
use chrono::Utc;
use clap::Subcommand;
use indicatif::ProgressBar;
use serde_json::json;

use celeriac_admin::output::dead_letters::{
    describe, list_header, list_or_none, list_row, progress_bar,
};

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
    List(ListArgs),
    /// Show everything about one dead letter; nothing is removed.
    Show(ShowArgs),
    /// Publish dead letters back to where they were sent, with retries
    /// reset; each leaves the dead-letter queue only once the broker
    /// confirmed its copy.
    Replay(ReplayArgs),
    /// Delete dead letters for good; refuses without --yes.
    Purge(PurgeArgs),
}

/// Flags of `dlq list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    queues: QueueArgs,
    /// Only tasks whose name matches this glob (`*`, `?`).
    #[arg(long, value_name = "PATTERN")]
    task: Option<String>,
    /// Only dead letters whose error contains this text (any case).
    #[arg(long, value_name = "TEXT")]
    error: Option<String>,
    /// Show at most this many.
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `dlq show`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The task id.
    task_id: String,
    #[command(flatten)]
    queues: QueueArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `dlq replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
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
}

/// Flags of `dlq purge`.
#[derive(Debug, clap::Args)]
pub(crate) struct PurgeArgs {
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
}

pub(crate) async fn run(
    producer: &Producer,
    file: &Config,
    action: DlqAction,
) -> anyhow::Result<ExitCode> {
    let dead = DeadLetters::new(producer);
    match action {
        DlqAction::List(args) => {
            let queues = resolve(&dead, file, &args.queues).await?;
            let selection = Selection {
                task: args.task,
                error: args.error,
                limit: args.limit,
                ..Selection::default()
            };
            list(&dead, &queues, &selection, args.json).await
        }
        DlqAction::Show(args) => {
            let queues = resolve(&dead, file, &args.queues).await?;
            show(&dead, &queues, &args.task_id, args.json).await
        }
        DlqAction::Replay(args) => {
            if args.task_ids.is_empty() && !args.all && args.task.is_none() {
                bail!(
                    "name the task ids to replay, or pass --all (with --queue/--task to narrow it)"
                );
            }
            let queues = resolve(&dead, file, &args.queues).await?;
            let selection = Selection {
                task: args.task,
                task_ids: args.task_ids,
                ..Selection::default()
            };
            replay(&dead, &queues, &selection, args.json).await
        }
        DlqAction::Purge(args) => purge(&dead, file, args).await,
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
    let mut candidates = file.queue_names();
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
    if queues.is_empty() {
        println!("no dead-letter queue: no worker has consumed the configured queues yet");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", list_header());
    for entry in &entries {
        println!("{}", list_row(entry));
    }
    let mut total = 0;
    for queue in queues {
        total += dead.count(queue).await?.unwrap_or(0);
    }
    let names: Vec<String> = queues
        .iter()
        .map(|q| DeadLetterTopology::queue_name(q))
        .collect();
    println!(
        "{} of {total} dead letter(s) in {}",
        entries.len(),
        names.join(", ")
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
        if summary.unread > 0 {
            println!(
                "{} not read (see docs/dead-letters.md, limits)",
                summary.unread
            );
        }
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

async fn purge(dead: &DeadLetters, file: &Config, args: PurgeArgs) -> anyhow::Result<ExitCode> {
    let queues = resolve(dead, file, &args.queues).await?;
    let failed_before = args
        .older_than
        .map(|age| chrono::Duration::from_std(age).map(|age| Utc::now() - age))
        .transpose()
        .context("--older-than is too long")?;
    let selection = Selection {
        task: args.task,
        failed_before,
        ..Selection::default()
    };
    if !args.yes {
        let matching = dead.list(&queues, &selection).await?.len();
        bail!(
            "purge deletes dead letters for good: {matching} would be deleted; pass --yes to delete them"
        );
    }
    let summary = dead.purge(&queues, &selection).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for (queue, purged) in &summary.queues {
            println!(
                "purged {purged} from {}",
                DeadLetterTopology::queue_name(queue)
            );
        }
        println!("purged {}, kept {}", summary.purged, summary.kept);
        if summary.unread > 0 {
            println!(
                "{} not read (see docs/dead-letters.md, limits)",
                summary.unread
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
