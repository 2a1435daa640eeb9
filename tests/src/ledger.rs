//! A task that writes every run into a ledger file, to count in crash tests
//! how often each task ran: `ledger.record(millis)` sleeps that long, then
//! appends its task id as one line (a single `write` to a file opened with
//! `O_APPEND`, so lines from concurrent tasks and processes never mix).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use celeriac_shared::Task;
use celeriac_worker::{Registry, TaskContext, TaskError};

/// `ledger.record(millis)`.
#[derive(Debug)]
pub struct Record;

impl Task for Record {
    const NAME: &'static str = "ledger.record";
    type Args = (u64,);
    type Output = ();
}

/// A registry with `ledger.record` writing to `path`.
pub fn registry(path: PathBuf) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Record, _, _>(move |(millis,), ctx: TaskContext| {
        let path = path.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(millis)).await;
            append(&path, ctx.id()).map_err(|e| TaskError::from_error(&e))
        }
    });
    registry
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// The task ids in the ledger, one per run.
pub fn runs(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
