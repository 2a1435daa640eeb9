//! The local 3-node RabbitMQ cluster of `scripts/cluster`, for failover
//! tests: started (or found running) by the script, its nodes' connections
//! listed and its nodes killed through it, and stopped when the test ends,
//! passed or failed.

use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_shared::BrokerUrl;

/// How long `scripts/cluster start` may take: the nodes boot in about 30 to
/// 55 s. Each wait inside the script gives up sooner
/// ([`NODE_TIMEOUT`]) with its own error and the node's log.
const START_TIMEOUT: Duration = Duration::from_secs(150);

/// `CELERIAC_CLUSTER_TIMEOUT` for the script: seconds each of its waits
/// (a node's boot, a join, a stop) may take.
const NODE_TIMEOUT: &str = "100";

/// How long `kill` and `stop` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for another test process to let go of the cluster.
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The first AMQP port: node N listens on `5680 + N`.
const BASE_PORT: u16 = 5680;

/// A running 3-node cluster, stopped (`scripts/cluster stop`) on drop.
pub struct Cluster {
    /// The nodes' AMQP URLs, comma-separated, node 1 first.
    url: BrokerUrl,
    /// The nodes killed so far, not asked anything any more.
    killed: Vec<usize>,
    /// An exclusive lock on a file of the machine's temporary folder,
    /// held until the cluster is stopped: the cluster's ports are the
    /// machine's, so two test processes (of this checkout or another)
    /// must never run it at once.
    _lock: File,
}

impl Cluster {
    /// Waits for any other test process to let go of the cluster, then
    /// runs `scripts/cluster start` (which starts and joins whatever node
    /// is down, or only prints the URLs when all three run) and returns
    /// the cluster. Fails with the script's own error when the nodes
    /// cannot start, e.g. when `rabbitmq-server` cannot run here.
    pub async fn start() -> anyhow::Result<Self> {
        let lock = lock().await?;
        let output = script(&["start"], START_TIMEOUT).await?;
        let urls = String::from_utf8(output.stdout)?;
        let urls = urls
            .lines()
            .last()
            .context("scripts/cluster start printed no URLs")?;
        Ok(Self {
            url: BrokerUrl::new(urls.trim()),
            killed: Vec::new(),
            _lock: lock,
        })
    }

    /// The three nodes' addresses, node 1 first.
    pub fn url(&self) -> BrokerUrl {
        self.url.clone()
    }

    /// The three nodes' addresses starting at node `first` (1 to 3), so
    /// that clients given different lists connect to different nodes.
    pub fn url_from(&self, first: usize) -> BrokerUrl {
        let urls: Vec<&str> = self.url.expose().split(',').collect();
        let start = (first - 1) % urls.len();
        let rotated: Vec<&str> = urls[start..]
            .iter()
            .chain(&urls[..start])
            .copied()
            .collect();
        BrokerUrl::new(rotated.join(","))
    }

    /// Node `node`'s address (1 to 3) alone: a client given only this one
    /// cannot fail over.
    pub fn node_url(&self, node: usize) -> BrokerUrl {
        let urls: Vec<&str> = self.url.expose().split(',').collect();
        BrokerUrl::new(urls[(node - 1) % urls.len()])
    }

    /// The node (1 to 3) that leads quorum queue `queue` of the default
    /// vhost, as a node not killed sees it.
    pub fn leader_of(&self, queue: &str) -> anyhow::Result<usize> {
        let output = rabbitmqctl(self.asked()?, &["list_queues", "name", "leader"])?;
        let leader = output
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| *name == queue)
            .with_context(|| format!("no queue {queue} in {output:?}"))?
            .1
            .trim();
        (1..=3)
            .find(|node| leader == format!("celeriac-c{node}@localhost"))
            .with_context(|| format!("queue {queue} has no leader in the cluster: {leader:?}"))
    }

    /// The nodes (1 to 3) that the connections its client named `name`
    /// are on, one entry per connection, as a node not killed lists them.
    pub fn nodes_of(&self, name: &str) -> anyhow::Result<Vec<usize>> {
        let output = rabbitmqctl(
            self.asked()?,
            &[
                "list_connections",
                "--timeout",
                "30",
                "port",
                "client_properties",
            ],
        )?;
        let needle = format!("{{\"connection_name\",\"{name}\"}}");
        let mut nodes = Vec::new();
        for line in output.lines().filter(|line| line.contains(&needle)) {
            let port: u16 = line
                .split('\t')
                .next()
                .and_then(|port| port.trim().parse().ok())
                .with_context(|| format!("no port in {line:?}"))?;
            nodes.push(usize::from(port - BASE_PORT));
        }
        Ok(nodes)
    }

    /// A node that was not killed, to ask about the cluster.
    fn asked(&self) -> anyhow::Result<usize> {
        (1..=3)
            .find(|node| !self.killed.contains(node))
            .context("every node was killed")
    }

    /// Starts node `node` again (`scripts/cluster restart`: stopped cleanly
    /// first if it runs) and returns once it runs in the cluster.
    pub async fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        script(&["restart", &node.to_string()], START_TIMEOUT).await?;
        self.killed.retain(|killed| *killed != node);
        Ok(())
    }

    /// SIGKILLs node `node`'s Erlang VM (`scripts/cluster kill`), as a
    /// crash would, and returns once the process is gone.
    pub async fn kill(&mut self, node: usize) -> anyhow::Result<()> {
        script(&["kill", &node.to_string()], COMMAND_TIMEOUT).await?;
        self.killed.push(node);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Synchronous: this may run while a failed test unwinds. The
        // script gives up on each node after NODE_TIMEOUT and kills it.
        let stopped = Command::new(script_path())
            .arg("stop")
            .env("CELERIAC_CLUSTER_TIMEOUT", NODE_TIMEOUT)
            .stdin(Stdio::null())
            .output();
        match stopped {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "scripts/cluster stop failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(err) => eprintln!("cannot run scripts/cluster stop: {err}"),
        }
    }
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster")
}

/// Runs `scripts/cluster` with `args` for at most `limit`; its stdout, or
/// an error with what it printed on stderr.
async fn script(args: &[&str], limit: Duration) -> anyhow::Result<Output> {
    let mut command = tokio::process::Command::new(script_path());
    command
        .args(args)
        .env("CELERIAC_CLUSTER_TIMEOUT", NODE_TIMEOUT)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if std::env::var_os("CELERIAC_CLUSTER_MANAGEMENT").is_none() {
        // The management plugin is not needed and slows every boot.
        command.env("CELERIAC_CLUSTER_MANAGEMENT", "0");
    }
    let output = tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("scripts/cluster {args:?} did not finish within {limit:?}"))?
        .with_context(|| format!("cannot run scripts/cluster {args:?}"))?;
    if !output.status.success() {
        bail!(
            "scripts/cluster {args:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Takes the machine-wide cluster lock, waiting up to [`LOCK_TIMEOUT`].
async fn lock() -> anyhow::Result<File> {
    let path = std::env::temp_dir().join("celeriac-cluster.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let deadline = tokio::time::Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "another test process held {} for {LOCK_TIMEOUT:?}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rabbitmqctl` against node `node` of the cluster, with the cluster's
/// Erlang cookie (in its folder, found through `HOME`, as the script
/// does); what it printed, without headers.
fn rabbitmqctl(node: usize, args: &[&str]) -> anyhow::Result<String> {
    let dir = match std::env::var_os("CELERIAC_CLUSTER_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/cluster"),
    };
    let bin = std::env::var_os("CELERIAC_RABBITMQ_BIN")
        .map_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"), PathBuf::from);
    let output = Command::new(bin.join("rabbitmqctl"))
        .args(["-n", &format!("celeriac-c{node}@localhost")])
        .args(args)
        .args(["-q", "--no-table-headers"])
        .env("HOME", &dir)
        .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
        .stdin(Stdio::null())
        .output()
        .context("cannot run rabbitmqctl")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {args:?} on node {node} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
