//! The `celeriac` command line's flags and subcommands.

use std::path::PathBuf;
use std::time::Duration;

use celeriac_shared::UniqueUntil;
use celeriac_telemetry::LogFormat;
use clap::{Parser, Subcommand, ValueEnum};

use crate::{beat, dashboard, dlq, retries};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(version, about = "Send celeriac tasks and inspect queues")]
pub(crate) struct Cli {
    /// Broker URL, e.g. `amqp://user:password@host:5672/%2f`. Repeat the
    /// flag, or give a comma-separated list (also in CELERIAC_BROKER_URL),
    /// for several addresses (a cluster's nodes): celeriac connects to the
    /// first that answers and, when that connection is lost, to the next.
    /// Defaults to the local broker's guest account.
    #[arg(long, global = true, env = "CELERIAC_BROKER_URL", default_value = celeriac_shared::BrokerUrl::LOCAL, hide_env_values = true, hide_default_value = true)]
    pub(crate) broker: Vec<String>,
    /// Routing and topology file (TOML).
    #[arg(long, global = true, env = "CELERIAC_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Log lines (to stderr) as `human` text or `json`.
    #[arg(long, global = true, env = "CELERIAC_LOG_FORMAT", default_value_t = LogFormat::Human)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Positional and keyword arguments of a task, as JSON.
#[derive(Debug, clap::Args)]
pub(crate) struct TaskArgs {
    /// The task name, e.g. `demo.add`.
    pub(crate) task: String,
    /// Positional arguments, a JSON array.
    #[arg(long, default_value = "[]")]
    pub(crate) args: String,
    /// Keyword arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    pub(crate) kwargs: String,
    /// Send to this queue instead of the routed one.
    #[arg(long)]
    pub(crate) queue: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// Send only if no other task holds this uniqueness key; if one
        /// does, send nothing and print the holder's id instead.
        #[arg(long)]
        unique_key: Option<String>,
        /// When the worker releases the key: when the task `started`, or
        /// when it `finished` (succeeded or was dead-lettered).
        #[arg(long, default_value = "finished", requires = "unique_key")]
        unique_until: UniqueUntil,
        /// How long the key is held at most, whatever happens to the task
        /// or its worker, e.g. `10m` (from 1s to 24h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, requires = "unique_key")]
        unique_ttl: Duration,
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
    /// Ask the workers (Rust and Python) over Celery's remote control;
    /// prints one block per worker that replied, exits 1 if none did.
    Inspect(InspectArgs),
    /// Revoke tasks: recorded on the revocation stream for every celeriac
    /// worker, and broadcast as Celery's `revoke` to the running workers.
    Revoke(RevokeArgs),
    /// Steer the workers over Celery's remote control.
    Control(ControlArgs),
    /// Send the tasks of a schedule when they fall due; run several for
    /// failover, one leads. `--check FILE` validates a schedule.
    Beat(beat::BeatArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopologyAction {
    /// Declare every configured queue, its exchange and binding.
    Declare,
}

/// The workers a remote-control command addresses, and how long to wait
/// for their replies.
#[derive(Debug, clap::Args)]
pub(crate) struct Targets {
    /// Only this worker (its hostname, e.g. `celery@host`); repeatable.
    /// Default: every worker. With it, the command returns as soon as each
    /// named worker replied.
    #[arg(long = "destination", short = 'd', value_name = "WORKER")]
    pub(crate) destination: Vec<String>,
    /// How long to wait for replies.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
}

/// What `celeriac inspect` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectMethod {
    /// Whether each worker is alive.
    Ping,
    /// Process, pool and counts.
    Stats,
    /// The task names each worker runs.
    Registered,
    /// The tasks running now.
    Active,
    /// The tasks received but not started.
    Reserved,
    /// The tasks waiting for their eta in the worker.
    Scheduled,
    /// The queues each worker consumes.
    #[value(name = "active_queues", alias = "active-queues")]
    ActiveQueues,
    /// The task ids each worker knows as revoked.
    Revoked,
    /// The worker's configuration.
    Conf,
}

impl InspectMethod {
    /// The remote-control command's name.
    pub(crate) fn command(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Stats => "stats",
            Self::Registered => "registered",
            Self::Active => "active",
            Self::Reserved => "reserved",
            Self::Scheduled => "scheduled",
            Self::ActiveQueues => "active_queues",
            Self::Revoked => "revoked",
            Self::Conf => "conf",
        }
    }
}

/// Flags of `celeriac inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// What to ask.
    pub(crate) method: InspectMethod,
    #[command(flatten)]
    pub(crate) targets: Targets,
    /// Print `{hostname: reply}` as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Flags of `celeriac revoke`.
#[derive(Debug, clap::Args)]
pub(crate) struct RevokeArgs {
    /// The ids of the tasks to revoke.
    #[arg(required = true, value_name = "TASK_ID")]
    pub(crate) task_ids: Vec<String>,
    /// Cancel the revoked tasks that are running too.
    #[arg(long)]
    pub(crate) terminate: bool,
    #[command(flatten)]
    pub(crate) targets: Targets,
}

/// What `celeriac control` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ControlAction {
    /// Start sending task events (`task-received`, `task-started`, ...).
    EnableEvents,
    /// Stop sending task events.
    DisableEvents,
    /// Finish the running tasks and exit; the workers do not reply.
    Shutdown,
}

/// Flags of `celeriac control`.
#[derive(Debug, clap::Args)]
pub(crate) struct ControlArgs {
    /// What to do.
    pub(crate) action: ControlAction,
    #[command(flatten)]
    pub(crate) targets: Targets,
}
