//! [`Control`]: kombu's `Mailbox`, client side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use celeriac_producer::Producer;
use futures::StreamExt;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Consumer};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::envelope::{Envelope, epoch_seconds};
use celeriac_shared::declare_pidbox_exchanges;

use super::{CONTROL_TIMEOUT, PIDBOX_EXCHANGE, Replies, pidbox};
use crate::Error;

/// Sends Celery remote-control commands to the workers and collects their
/// replies, over a [`Producer`]'s connection, exactly as kombu's `Mailbox`
/// (and so `celery inspect`, `app.control` and Flower) does: the command
/// goes to the fanout exchange [`PIDBOX_EXCHANGE`], each worker replies
/// `{hostname: reply}` to [`REPLY_EXCHANGE`](crate::REPLY_EXCHANGE) with
/// the command's ticket, and the replies are collected on an exclusive
/// queue of this broadcast's own until the timeout passes or every
/// expected worker replied.
///
/// The convenience methods use the destination and timeout set with
/// [`Control::with_destination`] and [`Control::with_timeout`] (default:
/// every worker, [`CONTROL_TIMEOUT`]).
///
/// ```no_run
/// use celeriac_admin::Control;
/// use celeriac_producer::{Producer, ProducerConfig};
///
/// # async fn run() -> Result<(), celeriac_admin::Error> {
/// let producer = Producer::connect(ProducerConfig::default()).await?;
/// let control = Control::new(&producer);
/// for (hostname, reply) in control.ping().await? {
///     println!("{hostname}: {reply}");
/// }
/// let revoked = control.revoke(&["5b6c...".to_owned()], false).await?;
/// println!("acknowledged by {} worker(s)", revoked.replies.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Control {
    /// Whose connection and channels are used.
    pub(super) producer: Producer,
    /// The workers the convenience methods address; `None`: every worker.
    destination: Option<Vec<String>>,
    /// How long the convenience methods wait for replies.
    timeout: Duration,
    /// The Lamport clock of the `clock` header, shared by clones.
    clock: Arc<AtomicU64>,
}

impl Control {
    /// Remote control over `producer`'s connection, addressing every
    /// worker and waiting [`CONTROL_TIMEOUT`] for replies.
    pub fn new(producer: &Producer) -> Self {
        Self {
            producer: producer.clone(),
            destination: None,
            timeout: CONTROL_TIMEOUT,
            clock: Arc::default(),
        }
    }

    /// Addresses only these workers (by hostname, `name@host`) in the
    /// convenience methods, and stops waiting once each replied. An empty
    /// list addresses every worker. Defaults to every worker.
    pub fn with_destination(mut self, destination: Vec<String>) -> Self {
        self.destination = Some(destination).filter(|d| !d.is_empty());
        self
    }

    /// Waits this long for replies in the convenience methods (and sets
    /// the commands' `expires` to now + `timeout`). Defaults to
    /// [`CONTROL_TIMEOUT`], one second, as Celery's.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The workers the convenience methods address (`None`: every worker).
    pub fn destination(&self) -> Option<&[String]> {
        self.destination.as_deref()
    }

    /// How long the convenience methods wait for replies.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `ping`: every addressed worker that is alive replies
    /// `{"ok": "pong"}`.
    pub async fn ping(&self) -> Result<Replies, Error> {
        self.inspect("ping").await
    }

    /// A read-only command without arguments (`stats`, `registered`,
    /// `active`, `reserved`, `scheduled`, `revoked`, `active_queues`,
    /// `conf`, `ping`), sent to the addressed workers.
    pub async fn inspect(&self, method: &str) -> Result<Replies, Error> {
        self.command(method, Map::new()).await
    }

    /// `enable_events`: the addressed workers start sending task events.
    pub async fn enable_events(&self) -> Result<Replies, Error> {
        self.command("enable_events", Map::new()).await
    }

    /// `disable_events`: the addressed workers stop sending task events.
    pub async fn disable_events(&self) -> Result<Replies, Error> {
        self.command("disable_events", Map::new()).await
    }

    /// `shutdown`: the workers named (every worker when `None`) finish
    /// what they run and exit. Workers do not reply to it, so this returns
    /// once the command is published.
    pub async fn shutdown(&self, destination: Option<Vec<String>>) -> Result<(), Error> {
        self.cast("shutdown", Map::new(), destination).await
    }

    /// Sends `method` with `arguments` to the addressed workers and
    /// collects their replies for [`Control::timeout`].
    pub async fn command(
        &self,
        method: &str,
        arguments: Map<String, Value>,
    ) -> Result<Replies, Error> {
        self.broadcast(
            method,
            arguments,
            self.destination.clone(),
            self.timeout,
            None,
        )
        .await
    }

    /// Broadcasts a command and collects the replies, as kombu's
    /// `Mailbox._broadcast(..., reply=True)` does.
    ///
    /// `destination` names the workers that should act (`None` or empty:
    /// every worker). Replies are collected until `timeout` has passed or
    /// `expected_replies` workers replied; `expected_replies` defaults to
    /// the number of workers in `destination`, and to "wait the whole
    /// timeout" without one. The command carries an `expires` header of
    /// now + `timeout`, so a worker that reads it later ignores it.
    pub async fn broadcast(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
        timeout: Duration,
        expected_replies: Option<usize>,
    ) -> Result<Replies, Error> {
        let destination = destination.filter(|d| !d.is_empty());
        let expected = expected_replies.or(destination.as_ref().map(Vec::len));
        let channel = self.producer.open_channel().await?;
        let collected = async {
            declare_pidbox_exchanges(&channel).await?;
            let oid = uuid::Uuid::new_v4().to_string();
            let ticket = uuid::Uuid::new_v4().to_string();
            let consumer = pidbox::reply_consumer(&channel, &oid).await?;
            let envelope = Envelope {
                method,
                arguments,
                destination,
                reply: Some((&ticket, &oid)),
            };
            self.publish(&channel, &envelope, timeout).await?;
            Ok(self.collect(consumer, &ticket, timeout, expected).await)
        }
        .await;
        // Closing the channel deletes the exclusive reply queue.
        let _ = channel.close(200, "OK".into()).await;
        collected
    }

    /// Broadcasts a command that wants no reply (kombu's
    /// `reply=False`), such as `shutdown`.
    pub async fn cast(
        &self,
        method: &str,
        arguments: Map<String, Value>,
        destination: Option<Vec<String>>,
    ) -> Result<(), Error> {
        let channel = self.producer.open_channel().await?;
        let sent = async {
            declare_pidbox_exchanges(&channel).await?;
            let envelope = Envelope {
                method,
                arguments,
                destination: destination.filter(|d| !d.is_empty()),
                reply: None,
            };
            self.publish(&channel, &envelope, self.timeout).await
        }
        .await;
        let _ = channel.close(200, "OK".into()).await;
        sent
    }

    async fn publish(
        &self,
        channel: &Channel,
        envelope: &Envelope<'_>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let clock = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        let expires = epoch_seconds() + timeout.as_secs_f64();
        let (body, properties) = envelope.encode(clock, expires)?;
        debug!(method = envelope.method, "broadcasting control command");
        channel
            .basic_publish(
                PIDBOX_EXCHANGE.into(),
                "".into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(Error::amqp("basic.publish"))?;
        Ok(())
    }

    /// The replies carrying `ticket` (or no ticket, as kombu counts them)
    /// until `timeout` has passed or `expected` workers replied.
    async fn collect(
        &self,
        mut consumer: Consumer,
        ticket: &str,
        timeout: Duration,
        expected: Option<usize>,
    ) -> Replies {
        let mut replies = Replies::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while expected.is_none_or(|expected| replies.len() < expected) {
            let delivery = match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(err))) => {
                    warn!(error = %err, "the reply consumer failed; replies so far kept");
                    break;
                }
                Ok(None) | Err(_) => break,
            };
            let headers = delivery.properties.headers().as_ref();
            self.adjust_clock(pidbox::clock(headers));
            if let Some(reply) =
                pidbox::read_reply(headers, &delivery.data, ticket, epoch_seconds())
            {
                replies.extend(reply);
            }
        }
        replies
    }

    /// Lamport: our clock becomes max(ours, theirs) + 1 on a reply.
    fn adjust_clock(&self, theirs: Option<u64>) {
        if let Some(theirs) = theirs {
            let _ = self
                .clock
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |ours| {
                    Some(ours.max(theirs) + 1)
                });
        }
    }
}
