//! The workspace's binaries as child processes: the demo worker with its
//! log readable line by line.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};
use std::pin::Pin;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use crate::{GUARD, broker_url};

/// The path of a workspace binary (`celeriac`, `celeriac-demo-worker`),
/// built (once per test process) so that it is never older than the code:
/// `cargo test -p celeriac-tests` alone does not build other packages'
/// binaries.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test binary has no target directory")?;
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let package = match name {
            "celeriac" => "celeriac-admin",
            "celeriac-demo-worker" => "celeriac-demo",
            _ => "celeriac-tests",
        };
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", package, "--bin", name]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.stdout(Stdio::null()).status()?;
        if !status.success() {
            bail!("building {name} failed");
        }
        built.push(name.to_owned());
    }
    Ok(path)
}

/// The demo worker running as a child process, its log readable line by
/// line.
pub struct DemoWorker {
    /// The process; killed on drop.
    pub child: Child,
    lines: tokio::io::Lines<BufReader<Pin<Box<dyn AsyncRead + Send>>>>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

impl DemoWorker {
    /// Starts `celeriac-demo-worker` with `args` (plus the test broker) and
    /// waits until it logs that it is ready.
    pub async fn start(args: &[&str]) -> anyhow::Result<Self> {
        let mut worker = Self::spawn(args, &[])?;
        worker.wait_for_line("worker ready").await?;
        Ok(worker)
    }

    /// Starts it as [`DemoWorker::start`] does, with extra environment
    /// variables (`OTEL_*`, say).
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut worker = Self::spawn(args, env)?;
        worker.wait_for_line("worker ready").await?;
        Ok(worker)
    }

    /// Starts `celeriac-demo-worker` with `args` and extra environment
    /// variables (which may override the test broker's
    /// `CELERIAC_BROKER_URL` and `RUST_LOG=info`), without waiting for it
    /// to be ready.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::spawn_program("celeriac-demo-worker", args, env)
    }

    /// Starts workspace binary `name`, a worker that logs like the demo
    /// worker (its log on stdout), with `args` and extra environment
    /// variables, without waiting for it to be ready.
    pub fn spawn_program(name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(workspace_binary(name)?)
            .args(args)
            .envs(env.iter().copied())
            .env("CELERIAC_BROKER_URL", broker_url().expose())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(Self::reading(child, Box::pin(stdout)))
    }

    /// Starts the `celeriac` CLI with `args` and extra environment
    /// variables, its log (on stderr, at `info`) readable line by line.
    pub fn spawn_cli(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(workspace_binary("celeriac")?)
            .args(args)
            .env("CELERIAC_BROKER_URL", broker_url().expose())
            .env("CELERIAC_LOG", "info,lapin=off")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stderr = child.stderr.take().context("no stderr")?;
        Ok(Self::reading(child, Box::pin(stderr)))
    }

    fn reading(child: Child, log: Pin<Box<dyn AsyncRead + Send>>) -> Self {
        Self {
            child,
            lines: BufReader::new(log).lines(),
            log: Vec::new(),
        }
    }

    /// Reads log lines until one contains `needle`; returns it.
    pub async fn wait_for_line(&mut self, needle: &str) -> anyhow::Result<String> {
        let read = async {
            while let Some(line) = self.lines.next_line().await? {
                let line = strip_ansi(&line);
                self.log.push(line.clone());
                if line.contains(needle) {
                    return Ok(line);
                }
            }
            bail!(
                "worker exited before logging `{needle}`; log:\n{}",
                self.log.join("\n")
            )
        };
        tokio::time::timeout(GUARD, read)
            .await
            .with_context(|| format!("no log line with `{needle}` within {GUARD:?}"))?
    }

    /// Reads the rest of the log, until the process closes its output;
    /// returns the whole log.
    pub async fn read_to_end(&mut self) -> anyhow::Result<&[String]> {
        let read = async {
            while let Some(line) = self.lines.next_line().await? {
                self.log.push(strip_ansi(&line));
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(GUARD, read)
            .await
            .with_context(|| format!("the worker's output stayed open for {GUARD:?}"))??;
        Ok(&self.log)
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
