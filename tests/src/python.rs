//! Python processes from the Celery virtualenv, for the tests that run
//! real Celery beside celeriac.

use std::collections::HashMap;
use std::fmt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use celeriac_shared::BrokerUrl;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{GUARD, celery_python, python_dir, wait_for_consumers};

/// What a Python process wrote so far, shown when a test fails.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "--- python stdout ---\n{}", self.stdout)?;
        write!(f, "--- python stderr ---\n{}", self.stderr)
    }
}

impl Transcript {
    /// The stdout lines `<name> <value>` as a map from name to value.
    pub fn named_lines(&self) -> HashMap<&str, &str> {
        self.stdout
            .lines()
            .filter_map(|line| line.split_once(' '))
            .collect()
    }
}

/// A growing copy of one of a child's output streams.
type Captured = Arc<Mutex<String>>;

/// A Python process from the Celery virtualenv, run in `tests/python/`
/// with the broker URL in `CELERIAC_BROKER_URL`; its output is collected
/// while it runs and it is killed if dropped.
pub struct Python {
    /// The process.
    pub child: Child,
    stdout: Captured,
    stderr: Captured,
    /// Woken whenever either stream grows.
    grew: Arc<Notify>,
    /// The tasks copying stdout and stderr, done once the streams close.
    readers: Vec<JoinHandle<()>>,
}

impl Python {
    /// Starts `python <args>`.
    pub fn spawn(args: &[&str], broker: &BrokerUrl) -> anyhow::Result<Self> {
        Self::spawn_with_env(args, broker, &[])
    }

    /// Starts a Celery worker of `tests/python/pytasks.py` (`py.*` tasks)
    /// named `<name>@<host>`, on `queue` of `broker` (solo pool, no gossip
    /// or mingle), and waits until it consumes.
    ///
    /// No `--without-heartbeat`: the event heartbeat's 2 s timer is what
    /// wakes Celery's event loop to notice SIGTERM; without any timer it
    /// sleeps up to 10 s.
    pub async fn celery_worker(
        broker: &BrokerUrl,
        queue: &str,
        name: &str,
    ) -> anyhow::Result<Self> {
        let node = format!("{name}@%h");
        let args = [
            "-m",
            "celery",
            "-A",
            "pytasks",
            "worker",
            "-P",
            "solo",
            "-Q",
            queue,
            "-n",
            &node,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ];
        let mut celery = Self::spawn(&args, broker)?;
        celery.wait_until_consuming(broker, queue).await?;
        Ok(celery)
    }

    /// Starts `python <args>` with extra environment variables.
    pub fn spawn_with_env(
        args: &[&str],
        broker: &BrokerUrl,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let python = celery_python()?;
        let mut child = Command::new(&python)
            .args(args)
            .current_dir(python_dir())
            .envs(env.iter().copied())
            .env("CELERIAC_BROKER_URL", broker.expose())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {args:?}", python.display()))?;
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let grew = Arc::new(Notify::new());
        let readers = vec![
            tokio::spawn(copy_into(
                child.stdout.take(),
                Arc::clone(&stdout),
                Arc::clone(&grew),
            )),
            tokio::spawn(copy_into(
                child.stderr.take(),
                Arc::clone(&stderr),
                Arc::clone(&grew),
            )),
        ];
        Ok(Self {
            child,
            stdout,
            stderr,
            grew,
            readers,
        })
    }

    /// Runs the script `tests/python/<script>` to completion and returns
    /// its output; fails if it exits unsuccessfully or outlives [`GUARD`].
    pub async fn run(script: &str, broker: &BrokerUrl) -> anyhow::Result<Transcript> {
        Self::run_args(&[script], broker).await
    }

    /// Runs `python <args>` to completion, as [`Python::run`] does.
    pub async fn run_args(args: &[&str], broker: &BrokerUrl) -> anyhow::Result<Transcript> {
        let mut python = Self::spawn(args, broker)?;
        let status = python.wait().await?;
        let transcript = python.collect().await;
        if !status.success() {
            bail!("{args:?} failed with {status}\n{transcript}");
        }
        Ok(transcript)
    }

    /// What the process wrote so far.
    pub fn transcript(&self) -> Transcript {
        let text = |captured: &Captured| {
            captured
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
        };
        Transcript {
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }

    /// Waits up to [`GUARD`] until the output (stdout or stderr) contains
    /// `needle`.
    pub async fn wait_for_output(&self, needle: &str) -> anyhow::Result<()> {
        let wait = async {
            loop {
                let grew = self.grew.notified();
                let transcript = self.transcript();
                if transcript.stdout.contains(needle) || transcript.stderr.contains(needle) {
                    return;
                }
                grew.await;
            }
        };
        tokio::time::timeout(GUARD, wait).await.with_context(|| {
            format!(
                "python wrote no `{needle}` within {GUARD:?}\n{}",
                self.transcript()
            )
        })
    }

    /// Waits up to [`GUARD`] for the process to exit.
    pub async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(GUARD, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "python did not exit within {GUARD:?}\n{}",
                self.transcript()
            ),
        }
    }

    /// The whole output, once the process has exited.
    pub async fn collect(mut self) -> Transcript {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(GUARD, reader).await;
        }
        self.transcript()
    }

    /// Waits until `queue` in the broker's vhost has a consumer; fails
    /// early if the process exits first.
    pub async fn wait_until_consuming(
        &mut self,
        broker: &BrokerUrl,
        queue: &str,
    ) -> anyhow::Result<()> {
        let queues = [queue.to_owned()];
        tokio::select! {
            consuming = wait_for_consumers(broker, &queues) => {
                consuming.with_context(|| self.transcript().to_string())
            }
            status = self.child.wait() => {
                bail!("python exited ({:?}) before consuming {queue}\n{}", status, self.transcript())
            }
        }
    }

    /// Stops the process as a supervisor would: SIGTERM, then SIGKILL if it
    /// has not exited within [`GUARD`]. Fails in that second case.
    pub async fn terminate(mut self) -> anyhow::Result<Transcript> {
        let pid = self.child.id().context("the process already exited")?;
        let signalled = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !signalled.success() {
            bail!("kill -TERM {pid} failed: {signalled}");
        }
        if let Err(err) = self.wait().await {
            self.child.kill().await?;
            return Err(err.context("python ignored SIGTERM and was killed"));
        }
        Ok(self.collect().await)
    }
}

/// Copies a child's output stream into `into` until it closes.
async fn copy_into(stream: Option<impl AsyncRead + Unpin>, into: Captured, grew: Arc<Notify>) {
    let Some(mut stream) = stream else { return };
    let mut buffer = [0u8; 4096];
    while let Ok(read @ 1..) = stream.read(&mut buffer).await {
        into.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push_str(&String::from_utf8_lossy(&buffer[..read]));
        grew.notify_waiters();
    }
}
