//! Workers run in a process of their own, so that their memory can be
//! measured: the bench binary's hidden `worker` subcommand for raw lapin
//! and celeriac, `celery worker` for Celery.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_shared::{BrokerUrl, QueueType};
use tokio::process::{Child, Command};

use crate::System;
use crate::celery::Celery;

/// How long a worker gets to exit after being asked to.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A worker process; killed on drop.
pub(crate) struct WorkerProcess {
    child: Child,
    /// Our own workers stop when their stdin closes; Celery's are killed
    /// with their process group (the main process and its pool): its warm
    /// and cold shutdowns both take about 6 s, and by then its queue is
    /// empty and nothing is left to lose.
    celery: bool,
}

/// How a Rust worker process consumes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RustWorkerSettings {
    /// Tasks at once (celeriac only; raw lapin handles one at a time).
    pub(crate) concurrency: usize,
    /// Unacknowledged deliveries per consumer.
    pub(crate) prefetch: u16,
    /// Whether the worker sends Celery task events (celeriac only).
    pub(crate) task_events: bool,
    /// The type of the queues celeriac's worker declares.
    pub(crate) queue_type: QueueType,
    /// The threads of the worker's tokio runtime; tokio's default (one per
    /// core) if `None`.
    pub(crate) runtime_threads: Option<usize>,
}

impl WorkerProcess {
    /// Starts a worker of `system` on `queue`.
    pub(crate) fn start(
        system: System,
        url: &BrokerUrl,
        queue: &str,
        settings: RustWorkerSettings,
        celery: Option<&Celery>,
    ) -> anyhow::Result<Self> {
        let mut command = match system {
            System::Celery => celery
                .context("Celery is not available")?
                .worker_command(queue),
            System::Lapin | System::Celeriac => {
                let mut command = Command::new(bench_binary()?);
                command
                    .arg("worker")
                    .arg(format!("--system={}", system.name()))
                    .arg(format!("--queue={queue}"))
                    .arg(format!("--concurrency={}", settings.concurrency))
                    .arg(format!("--prefetch={}", settings.prefetch))
                    .arg(format!("--queue-type={}", settings.queue_type))
                    .env("CELERIAC_BROKER_URL", url.expose())
                    .stdin(Stdio::piped());
                if settings.task_events {
                    command.arg("--task-events");
                }
                if let Some(threads) = settings.runtime_threads {
                    command.env("TOKIO_WORKER_THREADS", threads.to_string());
                }
                command
            }
        };
        let child = command
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {} worker", system.name()))?;
        Ok(Self {
            child,
            celery: system == System::Celery,
        })
    }

    /// The peak resident memory (`VmHWM`) of the worker and its child
    /// processes, summed, in MiB.
    pub(crate) fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the worker exited")?;
        let kib: u64 = process_tree(pid)
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmHWM:").ok())
            .sum();
        Ok(kib as f64 / 1024.0)
    }

    /// The resident memory (`VmRSS`) of the worker and its child processes,
    /// summed, in MiB, now.
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the worker exited")?;
        let kib: u64 = process_tree(pid)
            .into_iter()
            .filter_map(|pid| status_kib(pid, "VmRSS:").ok())
            .sum();
        Ok(kib as f64 / 1024.0)
    }

    /// Asks the worker to stop, waits for it to exit, and kills it if it
    /// does not within [`STOP_TIMEOUT`].
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if self.celery {
            if let Some(pid) = self.child.id() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
            }
        } else {
            drop(self.child.stdin.take());
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !self.celery && !status.success() {
                    bail!("the worker failed: {status}");
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("the worker did not stop within {STOP_TIMEOUT:?}")
            }
        }
    }
}

/// The bench binary itself: this process when it is the bench, else (in
/// the smoke test) the one cargo built beside the test binary.
fn bench_binary() -> anyhow::Result<PathBuf> {
    const NAME: &str = "celeriac-bench";
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|stem| stem == NAME) {
        return Ok(exe);
    }
    let dir = exe.parent().context("the executable has no directory")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().context("deps has no parent")?
    } else {
        dir
    };
    let path = dir.join(NAME);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "celeriac-tests", "--bin", NAME])
            .status()?;
        if !status.success() {
            bail!("building {NAME} failed");
        }
    }
    Ok(path)
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(parent) = parent_pid(child) {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        tree.extend(children.get(&tree[next]).into_iter().flatten());
        next += 1;
    }
    tree
}

/// The parent pid from `/proc/<pid>/stat` (the field after the
/// parenthesised command name, which may itself contain spaces).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// A field of `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("no {field} line"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("{field} has no value"))?;
    Ok(kib.parse()?)
}
