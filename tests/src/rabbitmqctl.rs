//! Broker administration through `rabbitmqctl`: throwaway vhosts and
//! users, and force-closed connections.

use std::collections::HashMap;
use std::process::Command;

use anyhow::{Context, bail};

use celeriac_shared::BrokerUrl;

use crate::{broker_url, broker_url_for_vhost, unique};

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

    /// Sets policy `name` on this vhost's queues matching `pattern`, with
    /// `definition` (JSON, e.g. `{"max-length":0}`).
    pub fn set_policy(&self, name: &str, pattern: &str, definition: &str) -> anyhow::Result<()> {
        rabbitmqctl(&[
            "set_policy",
            "-p",
            &self.name,
            "--apply-to",
            "queues",
            name,
            pattern,
            definition,
        ])
    }

    /// The type (`classic`, `quorum`, `stream`) and the arguments, as
    /// `rabbitmqctl` prints them, of every queue of this vhost, by name.
    pub fn queue_types(&self) -> anyhow::Result<HashMap<String, (String, String)>> {
        let output = Command::new("rabbitmqctl")
            .args(["list_queues", "-p", &self.name, "name", "type", "arguments"])
            .args(["-q", "--no-table-headers"])
            .output()
            .context("rabbitmqctl is not installed")?;
        if !output.status.success() {
            bail!(
                "rabbitmqctl list_queues failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let mut queues = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let mut fields = line.splitn(3, '\t');
            if let (Some(name), Some(kind)) = (fields.next(), fields.next()) {
                let arguments = fields.next().unwrap_or_default().to_owned();
                queues.insert(name.to_owned(), (kind.to_owned(), arguments));
            }
        }
        Ok(queues)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

/// A throwaway RabbitMQ user with a password nobody else uses, allowed on
/// its own throwaway vhost only: for tests that look for the password in
/// output. Deleted, with its vhost, on drop.
pub struct BrokerUser {
    /// The user's name.
    pub name: String,
    /// The user's password: `secret-<uuid>`, distinctive enough to grep.
    pub password: String,
    /// The vhost the user may use.
    pub vhost: Vhost,
}

impl BrokerUser {
    /// Creates a vhost and a user with all permissions on it.
    pub fn create() -> anyhow::Result<Self> {
        let vhost = Vhost::create()?;
        let name = unique("celeriac-user");
        let password = unique("secret");
        rabbitmqctl(&["add_user", &name, &password])?;
        let user = Self {
            name,
            password,
            vhost,
        };
        let name = user.name.as_str();
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &user.vhost.name,
            name,
            ".*",
            ".*",
            ".*",
        ])?;
        Ok(user)
    }

    /// The test broker's URL as this user, on its vhost.
    pub fn url(&self) -> BrokerUrl {
        self.url_with(&self.password, &self.vhost.name)
    }

    /// The test broker's URL as this user, with any password and vhost.
    pub fn url_with(&self, password: &str, vhost: &str) -> BrokerUrl {
        let base = broker_url();
        let base = base.expose();
        let start = base.find("://").map_or(0, |i| i + 3);
        let end = base[start..].find('/').map_or(base.len(), |i| start + i);
        let host = base[start..end].rsplit('@').next().unwrap_or_default();
        let scheme = &base[..start];
        BrokerUrl::new(format!("{scheme}{}:{password}@{host}/{vhost}", self.name))
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_user", &self.name]);
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
