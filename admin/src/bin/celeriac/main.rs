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

mod beat;
mod cli;
mod commands;
mod dashboard;
mod dlq;
mod inspect;
mod retries;

use std::process::ExitCode;

use celeriac_telemetry::{Logs, Telemetry};
use clap::Parser;

use crate::cli::Cli;

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
