//! A RabbitMQ node of a test's own, on free ports with its data in a
//! temporary folder, so that a test can stop, kill and restart it, or give
//! it a TLS listener, without disturbing the shared broker other tests use.
//!
//! It runs Debian's RabbitMQ scripts from `/usr/lib/rabbitmq/bin` (or
//! `CELERIAC_RABBITMQ_BIN`) as the current user, with `HOME` in the node's
//! folder so that its Erlang cookie is its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_shared::BrokerUrl;
use tokio::process::Command;

/// Where Debian's package keeps the scripts that run as the calling user
/// (the ones in `/usr/sbin` switch to the `rabbitmq` user).
const DEFAULT_BIN: &str = "/usr/lib/rabbitmq/bin";

/// How long the node may take to boot: several boot at once when their
/// tests run in parallel, on a machine busy with builds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// How many nodes [`ScratchBroker::start_with`] tries before it gives up.
const BOOT_ATTEMPTS: u32 = 3;

/// The files of a TLS listener: the CA that signed the server's
/// certificate, the certificate and its key, all PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// A private RabbitMQ node; stopped and deleted on drop.
#[derive(Debug)]
pub struct ScratchBroker {
    /// Everything of the node lives here.
    dir: PathBuf,
    /// `scratch-<id>@localhost`.
    node: String,
    /// The plain AMQP port.
    port: u16,
    /// The AMQP-over-TLS port, if the node has a TLS listener.
    tls_port: Option<u16>,
    /// The Erlang distribution port, for `rabbitmqctl`.
    dist_port: u16,
}

impl ScratchBroker {
    /// Boots a node with a plain AMQP listener on 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Boots a node with a plain and, given `tls`, a TLS listener. A node
    /// that does not boot is deleted and another one tried, on other
    /// ports, up to 3 times in all (`BOOT_ATTEMPTS`): a port found free can be
    /// taken before the node binds it. The error carries the last node's
    /// log.
    pub async fn start_with(tls: Option<&TlsFiles>) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            let broker = Self::create(tls)?;
            match broker.boot().await {
                Ok(()) => return Ok(broker),
                Err(err) if attempt < BOOT_ATTEMPTS => {
                    eprintln!(
                        "a scratch broker did not boot (attempt {attempt}); trying other ports: \
                         {err:#}\n{}",
                        broker.log_tail()
                    );
                    attempt += 1;
                }
                Err(err) => {
                    return Err(err.context(format!("the node's log:\n{}", broker.log_tail())));
                }
            }
        }
    }

    /// A node of its own folder and ports, configured, not started.
    fn create(tls: Option<&TlsFiles>) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("celeriac-broker-{}", &id[..12]));
        std::fs::create_dir_all(&dir)?;
        let broker = Self {
            node: format!("scratch-{}@localhost", &id[..12]),
            port: free_port()?,
            tls_port: tls.map(|_| free_port()).transpose()?,
            dist_port: free_port()?,
            dir,
        };
        broker.write_config(tls)?;
        Ok(broker)
    }

    /// The last lines of the node's logs, for an error.
    fn log_tail(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.dir.join("log")) else {
            return "(no log)".to_owned();
        };
        let mut tail = String::new();
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(30);
            tail.push_str(&format!("--- {} ---\n", entry.path().display()));
            tail.push_str(&lines[from..].join("\n"));
            tail.push('\n');
        }
        tail
    }

    /// The plain AMQP URL of the default vhost.
    pub fn url(&self) -> BrokerUrl {
        BrokerUrl::new(format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port))
    }

    /// The `amqps://` URL of the default vhost, if the node has TLS.
    pub fn tls_url(&self) -> Option<BrokerUrl> {
        let port = self.tls_port?;
        Some(BrokerUrl::new(format!(
            "amqps://guest:guest@127.0.0.1:{port}/%2f"
        )))
    }

    /// Starts the node's Erlang VM and waits until RabbitMQ runs in it.
    pub async fn boot(&self) -> anyhow::Result<()> {
        let status = self
            .script("rabbitmq-server")
            .arg("-detached")
            .status()
            .await
            .context("starting rabbitmq-server")?;
        if !status.success() {
            bail!("rabbitmq-server -detached failed: {status}");
        }
        let timeout = BOOT_TIMEOUT.as_secs().to_string();
        let pid_file = self.dir.join("pid");
        self.ctl(&["wait", path_str(&pid_file)?, "--timeout", &timeout])
            .await
    }

    /// Stops the RabbitMQ application (the VM stays): every connection is
    /// closed with `CONNECTION_FORCED` and the port stops answering.
    pub async fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"]).await
    }

    /// Starts the RabbitMQ application again after [`Self::stop_app`].
    pub async fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"]).await
    }

    /// Kills the node's VM with SIGKILL, as a crash would; [`Self::boot`]
    /// starts it again with its data.
    pub async fn kill(&self) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.dir.join("pid"))?;
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -KILL {} failed", pid.trim());
        }
        // The VM is gone once its pid no longer exists.
        let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
        let deadline = tokio::time::Instant::now() + BOOT_TIMEOUT;
        while proc.exists() {
            if tokio::time::Instant::now() > deadline {
                bail!("the broker's VM did not die");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Runs `rabbitmqctl` against this node.
    pub async fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .script("rabbitmqctl")
            .args(["-n", &self.node, "-q"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running rabbitmqctl")?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn script(&self, name: &str) -> Command {
        let bin = std::env::var("CELERIAC_RABBITMQ_BIN").unwrap_or_else(|_| DEFAULT_BIN.into());
        let dir = &self.dir;
        let mut command = Command::new(Path::new(&bin).join(name));
        command
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("RABBITMQ_GENERATED_CONFIG_DIR", dir.join("generated"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", dir.join("plugins-expand"))
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command
    }

    fn write_config(&self, tls: Option<&TlsFiles>) -> anyhow::Result<()> {
        let mut config = format!("listeners.tcp.local = 127.0.0.1:{}\n", self.port);
        if let (Some(files), Some(port)) = (tls, self.tls_port) {
            config.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                path_str(&files.ca_cert)?,
                path_str(&files.cert)?,
                path_str(&files.key)?,
            ));
        }
        std::fs::write(self.dir.join("rabbitmq.conf"), config)?;
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n")?;
        Ok(())
    }
}

impl Drop for ScratchBroker {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid.trim()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now, below Linux's default range of
/// ephemeral ports (32768 and up), so that the outgoing connections of
/// other tests do not take it before the node binds it.
fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let port = PORTS.start + u16::from_le_bytes([bytes[0], bytes[1]]) % PORTS.len() as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where [`free_port`] looks first: above the shared broker's and
/// `scripts/cluster`'s ports (distribution ports 25672 and 25681–25683
/// included), below the ephemeral ones.
const PORTS: std::ops::Range<u16> = 26000..32000;

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}
