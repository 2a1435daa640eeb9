//! `celeriac beat`: send a schedule's tasks when they fall due; with
//! `--check`, validate a schedule and print its next run times.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use celeriac_admin::beat::Beat;
use celeriac_admin::schedule::Schedule;
use celeriac_producer::Producer;

/// `celeriac beat` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BeatArgs {
    /// The schedule to run (TOML, `[[schedule]]` entries). Read once at
    /// start: restart the beats to apply a change.
    #[arg(long, value_name = "FILE", required_unless_present = "check")]
    pub(crate) schedule: Option<PathBuf>,
    /// Validate a schedule, print each entry's next run times, and exit
    /// (no broker needed).
    #[arg(long, value_name = "FILE", conflicts_with = "schedule")]
    pub(crate) check: Option<PathBuf>,
    /// The schedule's name: beats of one name elect one leader and share
    /// one record of the ticks sent.
    #[arg(long, default_value = Beat::DEFAULT_NAME)]
    pub(crate) name: String,
    /// How many next run times `--check` prints per entry.
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
}

/// `--check FILE`: exits 0 with the next run times, or 1 with the error.
pub(crate) fn check(file: &PathBuf, runs: usize) -> anyhow::Result<ExitCode> {
    let schedule = Schedule::load(file)?;
    print!("{}", schedule.next_runs(chrono::Utc::now(), runs));
    Ok(ExitCode::SUCCESS)
}

/// Runs the beat until SIGINT or SIGTERM.
pub(crate) async fn run(producer: &Producer, args: BeatArgs) -> anyhow::Result<ExitCode> {
    let path = args.schedule.context("--schedule FILE is required")?;
    let schedule = Schedule::load(&path)?;
    let beat = Beat::new(producer.clone(), schedule).name(args.name);
    beat.run(celeriac_telemetry::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
