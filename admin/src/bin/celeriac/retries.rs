//! `celeriac retries`: what waits in the delay ladder, and roughly when it
//! is due.

use std::process::ExitCode;

use anyhow::bail;
use celeriac_admin::{DelayedTasks, output};
use celeriac_producer::Producer;
use celeriac_shared::{Config, DEFAULT_QUEUE};

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
        println!("{}", output::delays::json(&report, &queues)?);
    } else {
        print!("{}", output::delays::text(&report, &queues));
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
    let mut queues = file.queue_names();
    if !queues.iter().any(|q| q == DEFAULT_QUEUE) {
        queues.push(DEFAULT_QUEUE.to_owned());
    }
    Ok(queues)
}
