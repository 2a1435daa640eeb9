//! Celery's remote control over kombu's pidbox, so `celery inspect`,
//! `app.control` and Flower see and steer celeriac workers.
//!
//! Commands arrive on the fanout exchange `celery.pidbox`, through the
//! worker's own exclusive queue `<hostname>.celery.pidbox`; each is a JSON
//! object `{"method", "arguments", "destination", "pattern", "matcher",
//! "ticket", "reply_to": {"exchange", "routing_key"}}` with `clock` and
//! `expires` headers. A command for other workers (`destination`,
//! `pattern`) or past its `expires` is ignored. A reply `{hostname: reply}`
//! goes to `reply_to` with the `ticket` header, as kombu's `Node` sends it.
//! Commands run on a task of their own, never in the way of task acks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use celeriac_shared::{
    PIDBOX_EXCHANGE, QueueDef, Revocation, TimeLimit, Topology, amqp_str, declare_pidbox_exchanges,
    pidbox_queue_arguments,
};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::active_tasks::ActiveTasks;
use crate::consumers::Consumers;
use crate::revocations::{Revoked, append};
use crate::tally::Tally;
use crate::task_events::EventSwitch;
use crate::{Error, Registry};

/// What the control commands read and steer.
pub(crate) struct Panel {
    /// The worker's node name.
    pub(crate) hostname: String,
    /// The registered task names, sorted.
    pub(crate) registered: Vec<String>,
    /// The handlers, whose time limits `time_limit` changes.
    pub(crate) registry: Registry,
    /// The queue shapes, for `active_queues`.
    pub(crate) topology: Topology,
    /// The session's consumers, which `add_consumer` and
    /// `cancel_consumer` change; `None` in unit tests.
    pub(crate) consumers: Option<Arc<Consumers>>,
    /// At most this many tasks at once.
    pub(crate) concurrency: usize,
    /// The prefetch per consumer.
    pub(crate) prefetch: u16,
    /// The running tasks.
    pub(crate) active: Arc<ActiveTasks>,
    /// Whether task events are on.
    pub(crate) events: EventSwitch,
    /// The counts.
    pub(crate) tally: Arc<Tally>,
    /// Asks the worker to shut down.
    pub(crate) stop: Arc<Notify>,
    /// When the worker started.
    pub(crate) started: Instant,
    /// The clock of control replies.
    pub(crate) clock: AtomicU64,
    /// The revoked task ids.
    pub(crate) revoked: Arc<Revoked>,
    /// Appends revocations to the stream (confirm mode); `None` in unit
    /// tests.
    pub(crate) revocations: Option<Channel>,
}

/// A control command, as kombu's `Mailbox` sends it.
#[derive(Debug, Deserialize)]
struct Command {
    method: String,
    #[serde(default)]
    arguments: Map<String, Value>,
    #[serde(default)]
    destination: Option<Vec<String>>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    reply_to: Option<ReplyTo>,
}

/// Where a reply goes.
#[derive(Debug, Deserialize)]
struct ReplyTo {
    exchange: String,
    routing_key: String,
}

/// The running control consumer of one session.
pub(crate) struct Control {
    channel: Channel,
    task: JoinHandle<()>,
}

impl Control {
    /// Declares the pidbox exchanges and this worker's queue and starts
    /// answering commands.
    pub(crate) async fn start(connection: &Connection, panel: Arc<Panel>) -> Result<Self, Error> {
        let channel = connection
            .create_channel()
            .await
            .map_err(Error::amqp("channel.open"))?;
        let consumer = declare_and_consume(&channel, &panel.hostname).await?;
        let replies = channel.clone();
        let task = tokio::spawn(serve(consumer, replies, panel));
        Ok(Self { channel, task })
    }

    /// Stops answering and closes the channel.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.channel.close(200, "worker shutdown".into()).await;
    }
}

async fn declare_and_consume(channel: &Channel, hostname: &str) -> Result<Consumer, Error> {
    declare_pidbox_exchanges(channel).await?;
    let queue = format!("{hostname}.{PIDBOX_EXCHANGE}");
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, pidbox_queue_arguments())
        .await
        .map_err(Error::amqp("queue.declare"))?;
    channel
        .queue_bind(
            queue.as_str().into(),
            PIDBOX_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("queue.bind"))?;
    let options = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..BasicConsumeOptions::default()
    };
    channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("basic.consume"))
}

async fn serve(mut consumer: Consumer, channel: Channel, panel: Arc<Panel>) {
    while let Some(delivery) = consumer.next().await {
        let Ok(delivery) = delivery else { break };
        if expired(delivery.properties.headers().as_ref()) {
            continue;
        }
        let command: Command = match serde_json::from_slice(&delivery.data) {
            Ok(command) => command,
            Err(err) => {
                warn!(error = %err, "malformed control message; ignored");
                continue;
            }
        };
        if !panel.is_for_me(&command) {
            continue;
        }
        info!(method = %command.method, "control command {}", command.method);
        if let Some(revocation) = (command.method == "revoke")
            .then(|| revocation(&command.arguments))
            .flatten()
        {
            panel.revoked.add(&revocation);
            let appended = match &panel.revocations {
                Some(channel) => append(channel, &revocation).await,
                None => Ok(()),
            };
            if let Err(err) = appended {
                warn!(error = %err, "revocation not appended to the stream");
            }
        }
        let reply = match command.method.as_str() {
            "add_consumer" | "cancel_consumer" => Some(
                panel
                    .change_consumers(&command.method, &command.arguments)
                    .await,
            ),
            _ => panel.handle(&command.method, &command.arguments),
        };
        if let (Some(reply), Some(reply_to)) = (reply, &command.reply_to) {
            panel
                .send_reply(&channel, reply_to, command.ticket.as_deref(), reply)
                .await;
        }
    }
}

/// Whether the `expires` header (seconds since the epoch) has passed.
fn expired(headers: Option<&FieldTable>) -> bool {
    let Some(value) = headers.and_then(|h| h.inner().get("expires")) else {
        return false;
    };
    let expires = match value {
        AMQPValue::Double(seconds) => *seconds,
        AMQPValue::Float(seconds) => f64::from(*seconds),
        other => match celeriac_shared::amqp_integer(other) {
            Some(seconds) => seconds as f64,
            None => amqp_str(other)
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::MAX),
        },
    };
    let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    expires < now
}

impl Panel {
    /// Whether `command` names this worker (or every worker).
    fn is_for_me(&self, command: &Command) -> bool {
        if let Some(destination) = command.destination.as_ref().filter(|d| !d.is_empty()) {
            return destination.contains(&self.hostname);
        }
        match &command.pattern {
            Some(pattern) => wildmatch::WildMatch::new(pattern).matches(&self.hostname),
            None => true,
        }
    }

    /// Runs a command; its reply, or `None` for `shutdown`.
    fn handle(&self, method: &str, arguments: &Map<String, Value>) -> Option<Value> {
        let reply = match method {
            "ping" => json!({"ok": "pong"}),
            "stats" => self.stats(),
            "registered" => json!(self.registered),
            "active" => json!(self.active.list(&self.hostname)),
            "reserved" | "scheduled" => json!([]),
            "revoked" => json!(self.revoked.list()),
            "revoke" => match revocation(arguments) {
                Some(revocation) => {
                    json!({"ok": format!("tasks {} flagged as revoked", revocation.task_ids.join(", "))})
                }
                None => json!({"error": "revoke needs a task_id"}),
            },
            "active_queues" => {
                let queues = self
                    .consumers
                    .as_ref()
                    .map(|c| c.queues())
                    .unwrap_or_default();
                let defs = queues
                    .iter()
                    .map(|q| queue_info(&self.topology.queue_def(q)));
                json!(defs.collect::<Vec<_>>())
            }
            "conf" => json!({
                "worker_concurrency": self.concurrency,
                "worker_prefetch_multiplier": 1,
                "worker_send_task_events": self.events.is_on(),
                "celeriac_version": env!("CARGO_PKG_VERSION"),
            }),
            "time_limit" => self.time_limit(arguments),
            "enable_events" => toggle(&self.events, true),
            "disable_events" => toggle(&self.events, false),
            "shutdown" => {
                warn!("shutdown requested by remote control");
                self.stop.notify_one();
                return None;
            }
            "heartbeat" | "clock" => json!({"clock": self.clock.load(Ordering::Relaxed)}),
            other => {
                warn!(method = other, ?arguments, "unknown control command");
                json!({"error": format!("KeyError('{other}')")})
            }
        };
        Some(reply)
    }

    /// `add_consumer(queue)` and `cancel_consumer(queue)`, with Celery's
    /// replies.
    async fn change_consumers(&self, method: &str, arguments: &Map<String, Value>) -> Value {
        let Some(queue) = arguments.get("queue").and_then(Value::as_str) else {
            return json!({"error": format!("{method} needs a queue")});
        };
        let Some(consumers) = &self.consumers else {
            return json!({"error": "no consumers"});
        };
        let changed = match method {
            "add_consumer" => consumers.add(queue).await,
            _ => consumers.cancel(queue).await,
        };
        match (method, changed) {
            ("add_consumer", Ok(true)) => json!({"ok": format!("add consumer {queue}")}),
            ("add_consumer", Ok(false)) => json!({"ok": format!("already consuming from {queue}")}),
            (_, Ok(_)) => json!({"ok": format!("no longer consuming from {queue}")}),
            (_, Err(err)) => {
                warn!(queue, error = %err, "{method} failed");
                json!({"error": err.to_string()})
            }
        }
    }

    /// `time_limit(task_name, hard, soft)`: changes a task's limits for
    /// as long as the worker runs.
    fn time_limit(&self, arguments: &Map<String, Value>) -> Value {
        let seconds = |name: &str| {
            arguments
                .get(name)
                .and_then(Value::as_f64)
                .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        };
        let limits = TimeLimit {
            hard: seconds("hard"),
            soft: seconds("soft"),
        };
        let task = arguments
            .get("task_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.registry.change_limits(task, limits) {
            true => {
                info!(task, ?limits, "time limits changed by remote control");
                json!({"ok": "time limits set successfully"})
            }
            false => json!({"error": "unknown task"}),
        }
    }

    /// The `stats` reply, in the shape Celery's `inspect stats` prints and
    /// Flower reads.
    fn stats(&self) -> Value {
        let counts = self.tally.counts();
        json!({
            "total": {},
            "pid": std::process::id(),
            "clock": self.clock.load(Ordering::Relaxed).to_string(),
            "uptime": self.started.elapsed().as_secs(),
            "pool": {
                "implementation": "celeriac:tokio",
                "max-concurrency": self.concurrency,
                "processes": [std::process::id()],
                "max-tasks-per-child": "N/A",
                "put-guarded-by-semaphore": false,
                "timeouts": [0, 0],
            },
            "prefetch_count": self.prefetch,
            "broker": {"transport": "amqp"},
            "rusage": {},
            "celeriac": {
                "processed": counts.processed,
                "failed": counts.failed,
                "in_flight": counts.in_flight,
                "active": self.active.len(),
            },
        })
    }

    async fn send_reply(
        &self,
        channel: &Channel,
        to: &ReplyTo,
        ticket: Option<&str>,
        reply: Value,
    ) {
        let body = json!({ self.hostname.clone(): reply });
        let Ok(body) = serde_json::to_vec(&body) else {
            return;
        };
        let mut headers = FieldTable::default();
        if let Some(ticket) = ticket {
            headers.insert(
                "ticket".into(),
                AMQPValue::LongString(LongString::from(ticket)),
            );
        }
        let clock = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        headers.insert(
            "clock".into(),
            AMQPValue::LongLongInt(i64::try_from(clock).unwrap_or(0)),
        );
        let properties = BasicProperties::default()
            .with_content_type(celeriac_shared::CONTENT_TYPE.into())
            .with_content_encoding(celeriac_shared::CONTENT_ENCODING.into())
            .with_delivery_mode(1)
            .with_headers(headers);
        let sent = channel
            .basic_publish(
                to.exchange.as_str().into(),
                to.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await;
        if let Err(err) = sent {
            warn!(error = %err, "control reply not sent");
        }
    }
}

/// The revocation in a `revoke` command's arguments: `task_id` (one id or
/// a list) and `terminate`.
fn revocation(arguments: &Map<String, Value>) -> Option<Revocation> {
    let task_ids: Vec<String> = match arguments.get("task_id")? {
        Value::String(id) => vec![id.clone()],
        Value::Array(ids) => ids
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    let terminate = arguments
        .get("terminate")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (!task_ids.is_empty()).then(|| Revocation::new(task_ids, terminate))
}

fn toggle(events: &EventSwitch, on: bool) -> Value {
    let (word, was) = (if on { "enabled" } else { "disabled" }, events.set(on));
    match was == on {
        true => json!({"ok": format!("task events already {word}")}),
        false => {
            info!("task events {word} by remote control");
            json!({"ok": format!("task events {word}")})
        }
    }
}

/// A queue as kombu's `Queue.as_dict(recurse=True)` describes it.
fn queue_info(queue: &QueueDef) -> Value {
    let exchange = queue.exchange_def();
    let kind = format!("{:?}", exchange.kind).to_lowercase();
    json!({
        "name": queue.name,
        "exchange": {
            "name": exchange.name,
            "type": kind,
            "arguments": null,
            "durable": true,
            "passive": false,
            "auto_delete": false,
            "delivery_mode": null,
            "no_declare": false,
        },
        "routing_key": queue.binding_key(),
        "queue_arguments": null,
        "binding_arguments": null,
        "consumer_arguments": null,
        "durable": queue.durable,
        "exclusive": false,
        "auto_delete": false,
        "no_ack": false,
        "alias": null,
        "bindings": [],
        "no_declare": null,
        "expires": null,
        "message_ttl": null,
        "max_length": null,
        "max_length_bytes": null,
        "max_priority": queue.max_priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel() -> Panel {
        Panel {
            hostname: "w1@host".into(),
            registered: vec!["demo.add".into()],
            registry: Registry::new(),
            topology: Topology::default(),
            consumers: None,
            concurrency: 4,
            prefetch: 4,
            active: Arc::default(),
            events: EventSwitch::new(false),
            tally: Arc::default(),
            stop: Arc::default(),
            started: Instant::now(),
            clock: AtomicU64::new(0),
            revoked: Arc::default(),
            revocations: None,
        }
    }

    #[test]
    fn commands_for_other_workers_are_ignored() {
        let panel = panel();
        let command = |destination: Option<Vec<String>>, pattern: Option<&str>| Command {
            method: "ping".into(),
            arguments: Map::new(),
            destination,
            pattern: pattern.map(str::to_owned),
            ticket: None,
            reply_to: None,
        };
        assert!(panel.is_for_me(&command(None, None)));
        assert!(panel.is_for_me(&command(Some(vec!["w1@host".into()]), None)));
        assert!(!panel.is_for_me(&command(Some(vec!["w2@host".into()]), None)));
        assert!(panel.is_for_me(&command(None, Some("w1@*"))));
        assert!(!panel.is_for_me(&command(None, Some("w2@*"))));
    }

    #[test]
    fn a_command_past_its_expires_header_is_ignored() {
        let now = chrono::Utc::now().timestamp() as f64;
        let table = |value: AMQPValue| {
            let mut table = FieldTable::default();
            table.insert("expires".into(), value);
            table
        };
        assert!(expired(Some(&table(AMQPValue::Double(now - 5.0)))));
        assert!(!expired(Some(&table(AMQPValue::Double(now + 60.0)))));
        assert!(!expired(None));
    }

    #[test]
    fn replies_have_celerys_shapes() {
        let panel = panel();
        let reply = |method| panel.handle(method, &Map::new()).unwrap();
        assert_eq!(reply("ping"), json!({"ok": "pong"}));
        assert_eq!(reply("registered"), json!(["demo.add"]));
        assert_eq!(reply("active_queues"), json!([]));
        assert_eq!(queue_info(&QueueDef::new("celery"))["name"], "celery");
        assert_eq!(reply("enable_events"), json!({"ok": "task events enabled"}));
        assert!(panel.events.is_on());
        assert_eq!(reply("nope"), json!({"error": "KeyError('nope')"}));
        assert!(panel.handle("shutdown", &Map::new()).is_none());
    }
}
