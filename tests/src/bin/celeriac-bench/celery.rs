//! Python Celery 5 through the scripts in `tests/bench-python/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_shared::BrokerUrl;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::fixture::{GUARD, PAYLOAD_BYTES};

/// How long checking the result backend may take.
const BACKEND_CHECK: Duration = Duration::from_secs(30);

/// How Celery's worker runs.
#[derive(Debug, Clone)]
pub(crate) struct CeleryWorkerSettings {
    /// The execution pool: `threads`, `solo` or `prefork`.
    pub(crate) pool: String,
    /// Threads or processes in the pool.
    pub(crate) concurrency: usize,
    /// Prefetched messages per pool slot.
    pub(crate) prefetch_multiplier: u16,
}

/// A Celery installation and the broker it talks to.
#[derive(Debug, Clone)]
pub(crate) struct Celery {
    /// The virtualenv's interpreter, with Celery installed.
    python: PathBuf,
    url: BrokerUrl,
    worker: CeleryWorkerSettings,
    /// The result backend of the scripts and the worker; `None` is
    /// `rpc://`, which cannot join chords.
    backend: Option<String>,
}

impl Celery {
    /// Celery from `CELERIAC_PYTHON` or `scripts/celery-venv` (which
    /// installs it on first use).
    pub(crate) fn find(url: BrokerUrl, worker: CeleryWorkerSettings) -> anyhow::Result<Self> {
        let python = celeriac_tests::celery_python()?;
        let status = std::process::Command::new(&python)
            .args(["-c", "import celery"])
            .status()
            .with_context(|| format!("running {}", python.display()))?;
        if !status.success() {
            bail!("{} cannot import celery", python.display());
        }
        Ok(Self {
            python,
            url,
            worker,
            backend: None,
        })
    }

    /// A command running the venv's python in `tests/bench-python/`.
    fn python(&self, args: &[&str]) -> Command {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-python");
        let mut command = Command::new(&self.python);
        command
            .args(args)
            .current_dir(&dir)
            .env("PYTHONPATH", &dir)
            .env("CELERIAC_BROKER_URL", self.url.expose())
            .env(
                "CELERIAC_RESULT_BACKEND",
                self.backend.as_deref().unwrap_or("rpc://"),
            )
            // The bench runs as root in CI; Celery warns about that at length.
            .env(
                "PYTHONWARNINGS",
                "ignore:You're running the worker with superuser privileges",
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// The worker command for `queue`; its own process group, so that the
    /// whole pool can be signalled.
    pub(crate) fn worker_command(&self, queue: &str) -> Command {
        let settings = &self.worker;
        let name = format!("bench-{}@%h", uuid::Uuid::new_v4().simple());
        let concurrency = settings.concurrency.to_string();
        let prefetch = settings.prefetch_multiplier.to_string();
        let mut command = self.python(&[
            "-m",
            "celery",
            "-A",
            "benchtasks",
            "worker",
            "--queues",
            queue,
            "--pool",
            &settings.pool,
            "--concurrency",
            &concurrency,
            "--prefetch-multiplier",
            &prefetch,
            "--hostname",
            &name,
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]);
        command.stdout(Stdio::null()).process_group(0);
        command
    }

    /// The same installation on another broker (a throwaway vhost).
    pub(crate) fn on(&self, url: BrokerUrl) -> Self {
        Self {
            url,
            ..self.clone()
        }
    }

    /// The same installation with results in `backend` (Redis, for
    /// chords).
    pub(crate) fn with_backend(&self, backend: &str) -> Self {
        Self {
            backend: Some(backend.to_owned()),
            ..self.clone()
        }
    }

    /// Fails unless the result backend answers a PING from Celery (its
    /// Python client is installed, its server is up).
    pub(crate) async fn check_backend(&self) -> anyhow::Result<()> {
        let check = "from benchtasks import app; app.backend.client.ping()";
        let output = tokio::time::timeout(BACKEND_CHECK, self.python(&["-c", check]).output())
            .await
            .with_context(|| format!("no answer within {BACKEND_CHECK:?}"))??;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!("{}", stderr.trim().lines().last().unwrap_or("failed"));
        }
        Ok(())
    }

    /// Publishes `n` tasks to `queue` and returns the time the publishes
    /// took, as measured by the script.
    pub(crate) async fn publish(&self, queue: &str, n: u64) -> anyhow::Result<Duration> {
        self.publisher(queue, n, None).await?.finish().await
    }

    /// Starts publishing `n` tasks to `queue`, each due after `countdown`
    /// if given; returns once the first publish is about to go out.
    pub(crate) async fn publisher(
        &self,
        queue: &str,
        n: u64,
        countdown: Option<Duration>,
    ) -> anyhow::Result<Publisher> {
        let countdown = countdown.map_or(0, |c| c.as_secs()).to_string();
        let (n, payload) = (n.to_string(), PAYLOAD_BYTES.to_string());
        let mut child = self
            .python(&["publish.py", queue, &n, &payload, &countdown])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut publisher = Publisher {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        publisher.expect_line("started").await?;
        Ok(publisher)
    }

    /// Makes `warmup + calls` sequential calls on `queue` and returns the
    /// latencies of the last `calls`.
    pub(crate) async fn round_trips(
        &self,
        queue: &str,
        (warmup, calls): (usize, usize),
    ) -> anyhow::Result<Vec<Duration>> {
        let output = self
            .python(&[
                "round_trips.py",
                queue,
                &warmup.to_string(),
                &calls.to_string(),
                &PAYLOAD_BYTES.to_string(),
            ])
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "round_trips.py failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let micros: Vec<u64> = serde_json::from_slice(&output.stdout)
            .context("round_trips.py printed no latency list")?;
        Ok(micros.into_iter().map(Duration::from_micros).collect())
    }

    /// Runs `warmup + chains` chains of `steps` `bench.incr` calls on
    /// `queue`, one after another; returns the latencies of the last
    /// `chains` whole chains.
    pub(crate) async fn chains(
        &self,
        queue: &str,
        (warmup, chains): (usize, usize),
        steps: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let (warmup, chains, steps) = (warmup.to_string(), chains.to_string(), steps.to_string());
        let micros = self
            .workflow(&["chain", queue, &warmup, &chains, &steps])
            .await?;
        Ok(micros.into_iter().map(Duration::from_micros).collect())
    }

    /// Runs one chord of `size` `bench.incr` tasks with `bench.total` as
    /// its body on `queue` (needs a backend that joins chords, see
    /// [`Celery::with_backend`]); returns the time from sending it to the
    /// body's result.
    pub(crate) async fn chord(&self, queue: &str, size: usize) -> anyhow::Result<Duration> {
        let micros = self.workflow(&["chord", queue, &size.to_string()]).await?;
        let &[elapsed] = micros.as_slice() else {
            bail!(
                "workflows.py chord printed {} latencies, not one",
                micros.len()
            );
        };
        Ok(Duration::from_micros(elapsed))
    }

    /// Runs `workflows.py` with `args`; returns the latencies it printed,
    /// in microseconds.
    async fn workflow(&self, args: &[&str]) -> anyhow::Result<Vec<u64>> {
        let output = self
            .python(&[&["workflows.py"], args].concat())
            .output()
            .await?;
        if !output.status.success() {
            bail!(
                "workflows.py {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        serde_json::from_slice(&output.stdout).context("workflows.py printed no latency list")
    }
}

/// A running `publish.py`.
pub(crate) struct Publisher {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Publisher {
    async fn expect_line(&mut self, prefix: &str) -> anyhow::Result<String> {
        let line = tokio::time::timeout(GUARD, self.lines.next_line())
            .await
            .with_context(|| format!("publish.py printed no `{prefix}` within {GUARD:?}"))??
            .with_context(|| format!("publish.py exited before printing `{prefix}`"))?;
        if !line.starts_with(prefix) {
            bail!("publish.py printed `{line}`, expected `{prefix}`");
        }
        Ok(line)
    }

    /// Waits for the last confirm; returns the publishing time the script
    /// measured.
    pub(crate) async fn finish(mut self) -> anyhow::Result<Duration> {
        let line = self.expect_line("elapsed ").await?;
        let seconds: f64 = line["elapsed ".len()..].trim().parse()?;
        let status = self.child.wait().await?;
        if !status.success() {
            bail!("publish.py failed: {status}");
        }
        Ok(Duration::from_secs_f64(seconds))
    }
}
