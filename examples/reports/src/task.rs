//! The `reports.build` task, shared by the service and the worker.

use std::time::Duration;

use celeriac_shared::Task;
use celeriac_worker::{Registry, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

/// The queue report builds go to.
pub const REPORTS_QUEUE: &str = "reports";

/// Builds one report: slow, so it should run once, not once per request.
#[derive(Debug)]
pub struct BuildReport;

/// Which report to build, and how long the simulated build takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportArgs {
    /// The report's id, e.g. `q3`.
    pub report_id: String,
    /// How long building takes, in milliseconds.
    pub build_ms: u64,
}

/// A built report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The report's id.
    pub report_id: String,
    /// The task that built it.
    pub built_by: String,
}

impl Task for BuildReport {
    const NAME: &'static str = "reports.build";
    type Args = ReportArgs;
    type Output = Report;
}

/// Builds a report: waits `build_ms` (the slow part), then returns it.
pub async fn build(args: ReportArgs, ctx: TaskContext) -> Result<Report, TaskError> {
    tokio::time::sleep(Duration::from_millis(args.build_ms)).await;
    Ok(Report {
        report_id: args.report_id,
        built_by: ctx.id().to_owned(),
    })
}

/// The worker's handlers: [`build`] for [`BuildReport`].
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register::<BuildReport, _, _>(build);
    registry
}
