//! The `celeriac` command line: send and call tasks, declare the topology,
//! inspect queues.
//!
//! ```text
//! celeriac send demo.add --args '[2, 3]'
//! celeriac call demo.add --kwargs '{"x": 2, "y": 3}' --timeout 10s
//! celeriac sum --to 1000000 --chunks 16
//! celeriac topology declare
//! celeriac queues
//! celeriac dlq list --queue celery --task 'reports.*'
//! celeriac dlq replay --all --queue celery
//! celeriac retries
//! celeriac dashboard --listen 127.0.0.1:8080
//! ```
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, each send is exported as a
//! `publish` span, flushed before the command exits.

mod commands;
mod dashboard;
mod dlq;
mod retries;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use celeriac_telemetry::{LogFormat, Logs, Telemetry};
use clap::{Parser, Subcommand};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(version, about = "Send celeriac tasks and inspect queues")]
struct Cli {
    /// Broker URL.
    #[arg(long, global = true, env = "CELERIAC_BROKER_URL", default_value = celeriac_shared::BrokerUrl::LOCAL, hide_env_values = true, hide_default_value = true)]
    broker: String,
    /// Routing and topology file (TOML).
    #[arg(long, global = true, env = "CELERIAC_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines (to stderr) as `human` text or `json`.
    #[arg(long, global = true, env = "CELERIAC_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Positional and keyword arguments of a task, as JSON.
#[derive(Debug, clap::Args)]
struct TaskArgs {
    /// The task name, e.g. `demo.add`.
    task: String,
    /// Positional arguments, a JSON array.
    #[arg(long, default_value = "[]")]
    args: String,
    /// Keyword arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    kwargs: String,
    /// Send to this queue instead of the routed one.
    #[arg(long)]
    queue: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send a task without waiting for its result; prints the task id.
    Send {
        #[command(flatten)]
        task: TaskArgs,
        /// Run no earlier than this from now, e.g. `10s` (the eta header).
        #[arg(long, value_parser = humantime::parse_duration)]
        countdown: Option<Duration>,
        /// Message priority (needs a queue with max_priority).
        #[arg(long)]
        priority: Option<u8>,
    },
    /// Send a task and print its result as JSON.
    Call {
        #[command(flatten)]
        task: TaskArgs,
        /// How long to wait for the result.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Sum 1..=N by mapping demo.sum_range over chunks across the workers.
    Sum {
        /// The last integer of the sum.
        #[arg(long)]
        to: i64,
        /// How many chunks (tasks) to split the range into.
        #[arg(long, default_value_t = 16)]
        chunks: u32,
        /// How long to wait for all chunks.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Declare exchanges and queues.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// List configured queues with message and consumer counts.
    Queues,
    /// List, show, replay and purge dead letters.
    Dlq {
        #[command(subcommand)]
        action: dlq::DlqAction,
    },
    /// Show the retries, countdowns and etas waiting in the delay queues.
    Retries(retries::RetriesArgs),
    /// Serve the web dashboard: queues, workers, dead letters.
    Dashboard(dashboard::DashboardArgs),
}

#[derive(Debug, Subcommand)]
enum TopologyAction {
    /// Declare every configured queue, its exchange and binding.
    Declare,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = Logs::stderr(cli.log_format, "CELERIAC_LOG", "warn,lapin=off");
    let telemetry = match Telemetry::init("celeriac", logs) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let code = match commands::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    };
    if let Err(err) = telemetry.shutdown() {
        eprintln!("warning: {err:#}; spans may be lost");
    }
    code
}
