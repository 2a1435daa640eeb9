//! Broker administration through `rabbitmqctl`: throwaway vhosts and
//! force-closed connections.

use std::process::Command;

use anyhow::{Context, bail};

use celeriac_shared::BrokerUrl;

use crate::{broker_url_for_vhost, unique};

/// A throwaway RabbitMQ vhost, for tests where a fixed name such as the
/// `celery` queue is the point. Deleted on drop.
pub struct Vhost {
    /// The vhost's name.
    pub name: String,
}

impl Vhost {
    /// Creates a vhost and gives the default user all permissions on it
    /// (through `rabbitmqctl`, which must run on this machine).
    pub fn create() -> anyhow::Result<Self> {
        let name = unique("celeriac-test");
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])?;
        Ok(Self { name })
    }

    /// The broker URL of this vhost.
    pub fn url(&self) -> BrokerUrl {
        broker_url_for_vhost(&self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// Force-closes every broker connection whose client named it `name`, as a
/// network failure or an operator would. Returns how many were closed.
pub fn close_connections_named(name: &str) -> anyhow::Result<usize> {
    let output = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .context("rabbitmqctl is not installed")?;
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    let mut closed = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let (true, Some(pid)) = (line.contains(&needle), line.split('\t').next()) {
            rabbitmqctl(&["close_connection", pid, "closed by a celeriac test"])?;
            closed += 1;
        }
    }
    Ok(closed)
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("rabbitmqctl is not installed")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
