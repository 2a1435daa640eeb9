//! celeriac-bench: raw lapin, celeriac and Python Celery side by side
//! against the local RabbitMQ, one measurement after another, printed as
//! one table of medians [min–max] with ratios to raw lapin.
//!
//! ```text
//! scripts/bench --n 20000 --reps 3 --systems lapin,celeriac,celery --only publish,drain,e2e,rtt,rss
//! scripts/bench --reps 3 --systems celeriac,celery --only chain,chord,rtt
//! scripts/bench --n 50000 --systems celeriac --only drain,drain-events
//! ```
//!
//! See `docs/benchmarks.md` for the method. `celeriac-bench soak` is the
//! soak run of `scripts/soak` (`docs/reliability.md`). The hidden `worker`
//! subcommand is the worker process the bench starts for raw lapin and
//! celeriac, so that its memory can be measured on its own.

mod celeriac_side;
mod celery;
mod fixture;
mod raw_lapin;
mod report;
mod runner;
mod soak;
mod worker_process;

use std::time::{Duration, Instant};

use anyhow::Context;
use celeriac_shared::QueueType;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::celery::CeleryWorkerSettings;
use crate::report::{Report, Row};
use crate::runner::Runner;

/// A system under measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum System {
    /// Raw lapin: the same AMQP work by hand, the ceiling.
    Lapin,
    /// celeriac through its public API.
    Celeriac,
    /// Python Celery 5 with `rpc://` results.
    Celery,
}

impl System {
    /// The name used on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Lapin => "lapin",
            Self::Celeriac => "celeriac",
            Self::Celery => "celery",
        }
    }
}

/// A measurement; `rss` is taken during `drain`; `drain-events` is
/// `drain` with the worker sending task events (celeriac only); `delayed`
/// is the RSS of an idle worker while N delayed tasks wait; `chain` the
/// latency of a chain per step; `chord` the time a chord takes (the last
/// three not for raw lapin: it has no delays and no workflows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Measurement {
    Publish,
    Drain,
    DrainEvents,
    E2e,
    Rtt,
    Rss,
    Delayed,
    Chain,
    Chord,
}

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "Benchmark raw lapin, celeriac and Celery on the local RabbitMQ")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one worker until stdin closes (started by the bench itself).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Pushes many tasks through celeriac workers, sampling their memory
    /// every second (`scripts/soak`).
    Soak(soak::SoakArgs),
}

/// What to measure and how.
#[derive(Debug, Clone, Args)]
pub(crate) struct Settings {
    /// Tasks per publish, drain and end-to-end run.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) n: u64,
    /// Repetitions of every measurement; the table shows their median.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The systems to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "lapin,celeriac,celery")]
    pub(crate) systems: Vec<System>,
    /// The measurements to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "publish,drain,drain-events,e2e,rtt,rss,delayed,chain,chord"
    )]
    only: Vec<Measurement>,
    /// Timed sequential calls per round-trip run.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) calls: usize,
    /// Untimed calls before the timed ones.
    #[arg(long, default_value_t = 200)]
    pub(crate) warmup: usize,
    /// Timed sequential chains per chain run.
    #[arg(long, default_value_t = 200)]
    chains: usize,
    /// Untimed chains before the timed ones.
    #[arg(long, default_value_t = 20)]
    chain_warmup: usize,
    /// Steps of every chain.
    #[arg(long, default_value_t = 10)]
    pub(crate) chain_steps: usize,
    /// Header tasks of the chord.
    #[arg(long, default_value_t = 1000)]
    pub(crate) chord_size: usize,
    /// Outstanding confirms when publishing (raw lapin's window, celeriac's
    /// concurrent sends).
    #[arg(long, default_value_t = 1000)]
    pub(crate) in_flight: usize,
    /// celeriac worker concurrency.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Prefetch of the raw lapin and celeriac workers [default: concurrency].
    #[arg(long)]
    prefetch: Option<u16>,
    /// Runtime threads of the raw lapin and celeriac worker processes
    /// (`TOKIO_WORKER_THREADS`) [default: tokio's, one per core].
    #[arg(long)]
    pub(crate) worker_threads: Option<usize>,
    /// Pause before every run and between filling a queue and draining
    /// it, so that the broker has finished with the previous step
    /// (writing or deleting 100,000 persistent messages).
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// How long a worker may take to fetch delayed tasks from its queue
    /// (Celery's does, on classic queues) before its RSS is read anyway.
    #[arg(long, default_value_t = 60)]
    delayed_fetch_secs: u64,
    /// Confirm-mode channels of celeriac's producer [default: the
    /// library's default].
    #[arg(long)]
    pub(crate) producer_channels: Option<usize>,
    /// Before each timed celeriac publish, send one untimed task so that
    /// the producer has declared the fresh queue already.
    #[arg(long)]
    pub(crate) warm_producer: bool,
    /// The type of every queue measured: `classic`, or `quorum` (raw lapin
    /// and celeriac only; Celery is skipped).
    #[arg(long, default_value = "classic")]
    pub(crate) queue_type: QueueType,
    /// Celery's worker pool (`solo` was the fastest on 2 cores).
    #[arg(long, default_value = "solo")]
    celery_pool: String,
    /// Celery's worker concurrency.
    #[arg(long, default_value_t = 1)]
    celery_concurrency: usize,
    /// Celery's prefetch multiplier (solo x 64 = the Rust workers' prefetch).
    #[arg(long, default_value_t = 64)]
    celery_prefetch_multiplier: u16,
}

impl Settings {
    /// The prefetch of the Rust workers.
    pub(crate) fn prefetch(&self) -> u16 {
        self.prefetch
            .unwrap_or_else(|| u16::try_from(self.concurrency).unwrap_or(u16::MAX))
    }

    /// The pause before every run.
    pub(crate) fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }

    /// The limit on fetching delayed tasks.
    pub(crate) fn delayed_fetch(&self) -> Duration {
        Duration::from_secs(self.delayed_fetch_secs)
    }

    /// How Celery's worker runs.
    pub(crate) fn celery_worker(&self) -> CeleryWorkerSettings {
        CeleryWorkerSettings {
            pool: self.celery_pool.clone(),
            concurrency: self.celery_concurrency,
            prefetch_multiplier: self.celery_prefetch_multiplier,
        }
    }

    /// Untimed and timed chains per chain run.
    pub(crate) fn chains(&self) -> (usize, usize) {
        (self.chain_warmup, self.chains)
    }

    /// Whether `measurement` was selected with `--only`.
    pub(crate) fn runs(&self, measurement: Measurement) -> bool {
        self.only.contains(&measurement)
    }

    fn describe(&self) -> String {
        format!(
            "N = {} tasks, {} reps, {} queues, {} timed calls after {} warm-up calls, {} publishes in flight{}; \
             Rust workers: concurrency {}, prefetch {}, runtime threads {}; Celery worker: -P {} -c {} --prefetch-multiplier {}",
            self.n,
            self.reps,
            self.queue_type,
            self.calls,
            self.warmup,
            self.in_flight,
            if self.warm_producer {
                " (warm producer)"
            } else {
                ""
            },
            self.concurrency,
            self.prefetch(),
            self.worker_threads
                .map_or_else(|| "one per core".to_owned(), |threads| threads.to_string()),
            self.celery_pool,
            self.celery_concurrency,
            self.celery_prefetch_multiplier,
        ) + &self.describe_workflows()
    }

    /// The task-event drain and the chain and chord settings, if they
    /// are measured.
    fn describe_workflows(&self) -> String {
        let mut out = String::new();
        if self.runs(Measurement::DrainEvents) {
            out += "; drain-events: the drain with the celeriac worker sending task events \
                    (3 per task), consumed no-ack by a queue bound to `celeryev` with `task.#`";
        }
        if self.runs(Measurement::Chain) {
            out += &format!(
                "; chain: {} timed chains of {} `bench.incr` steps after {} warm-up chains",
                self.chains, self.chain_steps, self.chain_warmup
            );
        }
        if self.runs(Measurement::Chord) {
            out += &format!(
                "; chord: {} `bench.incr` header tasks, `bench.total` body",
                self.chord_size
            );
        }
        out
    }
}

/// Flags of the hidden `worker` subcommand.
#[derive(Debug, Args)]
struct WorkerArgs {
    #[arg(long)]
    system: System,
    #[arg(long)]
    queue: String,
    #[arg(long)]
    concurrency: usize,
    #[arg(long)]
    prefetch: u16,
    /// Send Celery task events (celeriac only).
    #[arg(long)]
    task_events: bool,
    /// The type of the queues it declares.
    #[arg(long, default_value = "classic")]
    queue_type: QueueType,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Worker(args)) => run_worker(args).await,
        Some(Command::Soak(args)) => soak::soak(args).await,
        None => {
            let report = run(cli.settings).await?;
            println!("{}", report.render());
            Ok(())
        }
    }
}

/// Runs every selected measurement `reps` times for every system, the
/// systems taking turns within each repetition (in reverse order every
/// other one).
async fn run(settings: Settings) -> anyhow::Result<Report> {
    let mut report = Report::default();
    report.notes.push(settings.describe());
    let load_before = load_average();
    let runner = Runner::new(settings.clone(), &mut report).await?;
    let systems: Vec<System> = settings
        .systems
        .iter()
        .copied()
        .filter(|&s| runner.has(s))
        .collect();
    // The steps of a group take turns within each repetition: the drain
    // with task events on alternates with the one with them off.
    let groups: [&[Measurement]; 7] = [
        &[Measurement::Publish],
        &[Measurement::Drain, Measurement::DrainEvents],
        &[Measurement::E2e],
        &[Measurement::Rtt],
        &[Measurement::Delayed],
        &[Measurement::Chain],
        &[Measurement::Chord],
    ];
    let drain_or_rss = settings.runs(Measurement::Drain) || settings.runs(Measurement::Rss);
    let selected = |step| match step {
        Measurement::Drain => drain_or_rss,
        other => settings.runs(other),
    };
    for group in groups {
        let group: Vec<Measurement> = group.iter().copied().filter(|&s| selected(s)).collect();
        if group.is_empty() {
            continue;
        }
        for rep in 1..=settings.reps {
            // Every other repetition runs the systems in reverse order, so
            // neither always runs on the broker the other just left (a
            // quorum queue's log, say, still being compacted).
            let turns: Vec<System> = match rep % 2 {
                0 => systems.iter().rev().copied().collect(),
                _ => systems.clone(),
            };
            for &step in &group {
                for &system in &turns {
                    if !runner.runs(step, system) {
                        continue;
                    }
                    let context = || format!("{step:?} of {} (rep {rep})", system.name());
                    let started = Instant::now();
                    measure(&runner, step, system, &settings, &mut report)
                        .await
                        .with_context(context)?;
                    eprintln!("done: {} in {:.1?}", context(), started.elapsed());
                }
            }
        }
    }
    runner.close().await;
    report.notes.push(format!(
        "load average (1, 5, 15 min) before: {load_before}; after: {}. \
         Other processes using the CPU or the broker skew the numbers.",
        load_average()
    ));
    Ok(report)
}

/// Runs `step` once for `system` and records its samples.
async fn measure(
    runner: &Runner,
    step: Measurement,
    system: System,
    settings: &Settings,
    report: &mut Report,
) -> anyhow::Result<()> {
    match step {
        Measurement::Publish => report.add(Row::Publish, system, runner.publish(system).await?),
        Measurement::Drain | Measurement::Rss => {
            let (rate, rss) = runner.drain(system).await?;
            if settings.runs(Measurement::Drain) {
                report.add(Row::Drain, system, rate);
            }
            report.add(Row::PeakRss, system, rss);
        }
        Measurement::DrainEvents => {
            let rate = runner.drain_with_events(system).await?;
            report.add(Row::DrainEvents, system, rate);
        }
        Measurement::E2e => report.add(Row::EndToEnd, system, runner.end_to_end(system).await?),
        Measurement::Rtt => runner.round_trips(system, report).await?,
        Measurement::Delayed => {
            let rss = runner.delayed(system, report).await?;
            report.add(Row::DelayedRss, system, rss);
        }
        Measurement::Chain => runner.chains(system, report).await?,
        Measurement::Chord => {
            let seconds = runner.chord(system).await?;
            report.add(Row::Chord(settings.chord_size), system, seconds);
        }
    }
    Ok(())
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The worker process: consumes until stdin closes.
async fn run_worker(args: WorkerArgs) -> anyhow::Result<()> {
    let url = celeriac_tests::broker_url();
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await;
    };
    match args.system {
        System::Lapin if args.task_events => anyhow::bail!("raw lapin sends no task events"),
        System::Lapin => {
            raw_lapin::run_worker(&url, &args.queue, args.prefetch, stdin_closed).await
        }
        System::Celeriac => {
            let settings = celeriac_side::WorkerSettings {
                concurrency: args.concurrency,
                prefetch: args.prefetch,
                task_events: args.task_events,
                queue_type: args.queue_type,
            };
            celeriac_side::run_worker(&url, &args.queue, settings, stdin_closed).await
        }
        System::Celery => anyhow::bail!("the Celery worker is `celery worker`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smoke run with tiny numbers, so the bench cannot rot: every
    /// system yields every row (Celery only if it could be installed, its
    /// chord only if Redis answers; the drain with task events only
    /// celeriac).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_tiny_run_fills_every_row() {
        let cli = Cli::parse_from([
            "celeriac-bench",
            "--n=300",
            "--reps=1",
            "--calls=20",
            "--warmup=2",
            "--settle-ms=0",
            "--delayed-fetch-secs=1",
            "--chains=5",
            "--chain-warmup=1",
            "--chain-steps=3",
            "--chord-size=20",
        ]);
        let report = run(cli.settings).await.unwrap();
        let noted = |text| report.notes.iter().any(|n| n.contains(text));
        let (celery_skipped, chords_skipped) = (noted("celery skipped"), noted("chords skipped"));
        let rows = [Row::Publish, Row::Drain, Row::EndToEnd, Row::PeakRss];
        for system in [System::Lapin, System::Celeriac, System::Celery] {
            if system == System::Celery && celery_skipped {
                continue;
            }
            let events = (system == System::Celeriac).then_some(Row::DrainEvents);
            let delayed = (system != System::Lapin).then_some(Row::DelayedRss);
            let chain = (system != System::Lapin).then_some(Row::ChainStep);
            let chord = (system == System::Celeriac || system == System::Celery && !chords_skipped)
                .then_some(Row::Chord(20));
            let rtt = Row::RoundTrip(report::Percentile::P50);
            let workflows = chain.into_iter().chain(chord);
            for row in rows
                .into_iter()
                .chain([rtt])
                .chain(events)
                .chain(delayed)
                .chain(workflows)
            {
                let value = report.median(row, system);
                assert!(value.is_some_and(|v| v > 0.0), "{row:?} of {system:?}");
            }
        }
        let direct = Row::DirectReplyTo(report::Percentile::P99);
        assert!(report.median(direct, System::Lapin).is_some());
        for system in [System::Lapin, System::Celery] {
            assert!(report.median(Row::DrainEvents, system).is_none());
        }
        assert!(report.render().contains("| drain events on / off | – | "));
        println!("{}", report.render());
    }
}
