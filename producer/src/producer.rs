//! The producer: route, encode, publish with confirms.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Span, debug};

use crate::attempts::{Attempts, Next};
use crate::broker_manager::BrokerManager;
use crate::channels::{Channels, Pool};
use crate::claim::{Claim, claim};
use crate::declarations::{Declarations, declare};
use crate::named_reply_queue::NamedReplyQueue;
use crate::replies::Replies;
use crate::reply_slot::ReplySlot;
use crate::tracing_span;
use crate::{Error, Group, ProducerConfig, ResultListener, TaskHandle};
use celeriac_shared::{
    BrokerRotation, CallError, ConfirmError, DELAY_ENTRY_EXCHANGE, DelayTopology, Destination,
    ResultMessage, SendOptions, Sender, Task, TaskMessage, check_confirm, delay_until,
    encode_arguments, is_not_found,
};
use chrono::Utc;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A queue's counts, from a passive declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery.
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Publishes tasks. Cheap to clone; clones share connections, channels and
/// the reply queue.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProducerConfig,
    channels: Channels,
    replies: Replies,
    /// What this producer declared, so each queue is declared once.
    declarations: Declarations,
    /// The `origin` header: `gen<pid>@<host>` as Celery writes it.
    origin: String,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("broker_url", &self.inner.config.broker_url)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Connects to the broker (failing fast if it does not answer) and
    /// returns a producer.
    pub async fn connect(config: ProducerConfig) -> Result<Self, Error> {
        let rotation = BrokerRotation::new(&config.broker_url)?;
        let manager = BrokerManager::new(
            rotation,
            config.connection_name.clone(),
            config.connect_timeout,
        );
        let limit = Some(config.connect_timeout);
        // Each address gets its own connect timeout (in the manager), so a
        // connection's creation as a whole is bounded by their sum.
        let timeouts = deadpool::managed::Timeouts {
            wait: limit,
            create: None,
            recycle: limit,
        };
        let pool = Pool::builder(manager)
            .max_size(config.connections.max(1))
            .timeouts(timeouts)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(Error::Pool)?;
        let channels = Channels::new(
            pool,
            config.broker_url.clone(),
            config.channels,
            config.connect_timeout,
        );
        let inner = Inner {
            channels,
            replies: Replies::new(named_reply_queue(&config)),
            declarations: Declarations::default(),
            origin: origin(),
            config,
        };
        let producer = Self {
            inner: Arc::new(inner),
        };
        let timeout = producer.inner.config.send_timeout;
        with_timeout("connect", timeout, producer.inner.channels.get()).await?;
        Ok(producer)
    }

    /// Sends a typed task; returns once the broker confirmed it. The
    /// handle's [`TaskHandle::wait`] gets the result.
    pub async fn send<T: Task>(&self, args: &T::Args) -> Result<TaskHandle<T::Output>, Error> {
        self.send_with::<T>(args, SendOptions::default()).await
    }

    /// Sends a typed task with per-call options.
    pub async fn send_with<T: Task>(
        &self,
        args: &T::Args,
        options: SendOptions,
    ) -> Result<TaskHandle<T::Output>, Error> {
        let (args, kwargs) = encode_arguments(args)?;
        self.send_raw(T::NAME, args, kwargs, options).await
    }

    /// Sends a task by name with raw JSON arguments (to call tasks written
    /// in Python, or from the CLI). The handle yields the result as `O`
    /// (use [`serde_json::Value`] when the type is not known).
    ///
    /// While the broker is away (restarting, unreachable, the connection
    /// lost), the send is tried again with backoff until
    /// [`ProducerConfig::send_timeout`]; it returns `Ok` only once the
    /// broker confirmed the message, else [`Error::Unconfirmed`].
    ///
    /// With [`SendOptions::unique`], the key is claimed first: when
    /// another task holds it, nothing is published and the handle names
    /// the holder ([`TaskHandle::is_duplicate`]); when the holder cannot
    /// be read within the send timeout, [`Error::HolderUnknown`]. If the
    /// send fails after the key was claimed, the key stays held until the
    /// task releases it (if it was published after all) or its TTL runs
    /// out; sending again with the same [`SendOptions::task_id`] publishes
    /// again, since the key's holder is that id.
    pub async fn send_raw<O: serde::de::DeserializeOwned>(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Result<TaskHandle<O>, Error> {
        let mut message = TaskMessage::new(task, args, kwargs);
        options.apply(&mut message, Utc::now());
        if let Some(unique) = &options.unique {
            self.check_size(&message)?;
            let timeout = self.inner.config.send_timeout;
            let claimed = claim(&self.inner.channels, unique, message.id(), timeout).await?;
            if let Claim::Held(holder) = claimed {
                debug!(task, holder = %holder, key = unique.key(), "uniqueness key held; not sent");
                return Ok(TaskHandle::duplicate(holder, task.to_owned()));
            }
        }
        let slot = (!options.ignore_result).then_some(ReplySlot::Message);
        self.send_message(message, options.queue.as_deref(), slot)
            .await
    }

    /// Sends a built message to `queue` (or its routed queue), tried
    /// again through broker restarts until the send timeout; with a
    /// `slot`, the producer's reply queue is written there and the handle
    /// waits for that result.
    pub(crate) async fn send_message<O: serde::de::DeserializeOwned>(
        &self,
        mut message: TaskMessage,
        queue: Option<&str>,
        slot: Option<ReplySlot>,
    ) -> Result<TaskHandle<O>, Error> {
        message.headers.origin = Some(self.inner.origin.clone());
        let mut attempts = Attempts::new(message.id(), self.inner.config.send_timeout);
        let mut handle = None;
        loop {
            let attempt = self.attempt(&mut message, queue, slot, &mut handle);
            let Err(err) = attempts.run(attempt).await else {
                break;
            };
            if attempts.after(err).await? == Next::Redeclare {
                self.inner.declarations.forget().await;
            }
        }
        Ok(handle.unwrap_or_else(|| {
            TaskHandle::new(message.id().to_owned(), message.task().to_owned(), None)
        }))
    }

    /// One attempt at sending: the reply queue (declared again if the last
    /// one was lost, the handle moved to it), then the publish.
    async fn attempt<O: serde::de::DeserializeOwned>(
        &self,
        message: &mut TaskMessage,
        queue: Option<&str>,
        slot: Option<ReplySlot>,
        handle: &mut Option<TaskHandle<O>>,
    ) -> Result<(), Error> {
        if let Some(slot) = slot {
            let (reply_queue, generation) = self.inner.replies.queue(&self.inner.channels).await?;
            slot.place(message, &reply_queue);
            match handle {
                Some(handle) => handle.retarget(generation),
                None => {
                    let task_id = slot.task_id(message);
                    *handle = Some(self.register(task_id, message.task(), generation)?);
                }
            }
        }
        self.publish(message, queue).await
    }

    /// A handle waiting for the result of `task_id` on reply queue
    /// `generation`.
    fn register<O: serde::de::DeserializeOwned>(
        &self,
        task_id: String,
        task: &str,
        generation: u64,
    ) -> Result<TaskHandle<O>, Error> {
        let pending = Arc::clone(&self.inner.replies.pending);
        let (token, receiver) =
            pending
                .register(&task_id, generation)
                .ok_or_else(|| Error::DuplicateTaskId {
                    task_id: task_id.clone(),
                })?;
        let slot = Some((receiver, pending, token));
        Ok(TaskHandle::new(task_id, task.to_owned(), slot))
    }

    /// Starts a [`ResultListener`] on the producer's named reply queue
    /// ([`ProducerConfig::reply_queue`](ProducerConfig::reply_queue())):
    /// `handler` gets every final result that reaches this replica, and
    /// each is acknowledged only once `handler` returned `Ok` (an error or
    /// a panic requeues it). Fails with [`Error::NoNamedReplyQueue`]
    /// without a named reply queue, or when the first subscription fails.
    ///
    /// ```no_run
    /// use celeriac_producer::{Producer, ProducerConfig};
    /// use celeriac_shared::ResultMessage;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ProducerConfig::default().reply_queue("stocks-service.replies");
    /// let producer = Producer::connect(config).await?;
    /// let listener = producer
    ///     .on_result(|result: ResultMessage| async move {
    ///         println!("{} is {:?}", result.task_id, result.status);
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await?;
    /// # listener.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn on_result<F, Fut, E>(&self, handler: F) -> Result<ResultListener, Error>
    where
        F: Fn(ResultMessage) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        ResultListener::start(self.clone(), handler).await
    }

    /// The reply queue state, for the result listener.
    pub(crate) fn replies(&self) -> &Replies {
        &self.inner.replies
    }

    /// The producer's channels, for the result listener.
    pub(crate) fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    /// Sends a typed task and waits up to `timeout` for its output.
    pub async fn call<T: Task>(
        &self,
        args: &T::Args,
        timeout: Duration,
    ) -> Result<T::Output, CallError> {
        let handle = self.send::<T>(args).await.map_err(send_error)?;
        handle.wait(timeout).await
    }

    /// Sends one task per item of `args` (concurrently, each confirmed)
    /// and returns the [`Group`] of their handles, in input order.
    pub async fn map<T: Task>(
        &self,
        args: impl IntoIterator<Item = T::Args>,
    ) -> Result<Group<T::Output>, Error> {
        Group::send::<T>(self, args).await
    }

    /// Publishes an encoded message to its queue's exchange (or, when its
    /// eta is in the future, through the broker-side delay topology) and
    /// waits for the broker's confirm. `queue` overrides the routing rules.
    ///
    /// The publish is a PRODUCER span `publish <exchange>:<routing key>`,
    /// a child of the current span, whose trace context travels in the
    /// message's `traceparent` (and `tracestate`, `baggage`) headers.
    ///
    /// A body over [`ProducerConfig::max_message_size`] is refused with
    /// [`celeriac_shared::Error::Oversize`] before anything is sent or
    /// declared.
    pub async fn publish(&self, message: &TaskMessage, queue: Option<&str>) -> Result<(), Error> {
        // Not entered: entering would start the OpenTelemetry span before
        // routing names it. It is timed from here to its drop all the same.
        let span = tracing_span::publish(message);
        let published = self.publish_in(message, queue, &span).await;
        tracing_span::record_result(&span, &published);
        published
    }

    async fn publish_in(
        &self,
        message: &TaskMessage,
        queue: Option<&str>,
        span: &Span,
    ) -> Result<(), Error> {
        let config = &self.inner.config;
        let now = Utc::now();
        let (body, properties) = message.encode(now)?;
        self.check_body(&body)?;
        let queue = config.router.queue_for(message.task(), queue);
        let queue_def = config.topology.queue_def(queue);
        let (channels, declarations) = (&self.inner.channels, &self.inner.declarations);
        declarations.ensure_queue(channels, &queue_def).await?;
        if message.headers.eta.is_some() {
            declarations
                .ensure_delay(channels, &config.delay, queue)
                .await?;
        }
        let delay = message
            .headers
            .eta
            .and_then(|eta| delay_until(eta.to_utc(), now));
        let destination = match delay {
            Some(seconds) => {
                let routing_key = DelayTopology::routing_key(seconds, queue)?;
                Destination {
                    exchange: DELAY_ENTRY_EXCHANGE.to_owned(),
                    routing_key,
                }
            }
            None => queue_def.destination(),
        };
        tracing_span::record_destination(span, &destination);
        let properties = tracing_span::inject(span, properties);
        let channel = self.inner.channels.get().await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = channel
            .basic_publish(
                destination.exchange.as_str().into(),
                destination.routing_key.as_str().into(),
                options,
                &body,
                properties,
            )
            .await
            .map_err(Error::amqp("basic.publish"))?;
        let confirmation = confirm.await.map_err(Error::amqp("publisher confirm"))?;
        check_confirm(confirmation).map_err(|refusal| {
            let task_id = message.id().to_owned();
            match refusal {
                ConfirmError::Unroutable { reply_text, .. } => Error::Unroutable {
                    task_id,
                    exchange: destination.exchange,
                    routing_key: destination.routing_key,
                    reply_text,
                },
                ConfirmError::Nacked | ConfirmError::NotRequested => {
                    Channels::retire(&channel);
                    Error::Nacked { task_id }
                }
            }
        })
    }

    /// Refuses a message that would not be published: it does not encode,
    /// or its body is over [`ProducerConfig::max_message_size`]. Checked
    /// before a uniqueness key is claimed, so that a send that cannot
    /// succeed holds no key.
    fn check_size(&self, message: &TaskMessage) -> Result<(), Error> {
        let (body, _) = message.encode(Utc::now())?;
        self.check_body(&body)
    }

    fn check_body(&self, body: &[u8]) -> Result<(), Error> {
        let limit = self.inner.config.max_message_size;
        if body.len() > limit {
            return Err(celeriac_shared::Error::Oversize {
                size: body.len(),
                limit,
            }
            .into());
        }
        Ok(())
    }

    /// Declares every queue of the topology and the default queue.
    pub async fn declare_topology(&self) -> Result<(), Error> {
        let config = &self.inner.config;
        for queue in config.topology.queues() {
            declare(&self.inner.channels, queue).await?;
        }
        self.declare_queue(config.router.default_queue()).await
    }

    /// Declares queue `name` (its listed definition, or Celery's default
    /// shape), its exchange and binding. Idempotent.
    pub async fn declare_queue(&self, name: &str) -> Result<(), Error> {
        declare(
            &self.inner.channels,
            &self.inner.config.topology.queue_def(name),
        )
        .await
    }

    /// Message and consumer counts of `queue`, or `None` if it does not
    /// exist.
    pub async fn queue_stats(&self, queue: &str) -> Result<Option<QueueStats>, Error> {
        let channel = self.inner.channels.open().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let name = lapin::types::ShortString::try_new(queue).map_err(|_| {
            celeriac_shared::Error::InvalidName {
                kind: "queue",
                name: queue.chars().take(64).collect(),
            }
        })?;
        match channel
            .queue_declare(name, options, FieldTable::default())
            .await
        {
            Ok(q) => {
                let _ = channel.close(200, "OK".into()).await;
                Ok(Some(QueueStats {
                    messages: q.message_count(),
                    consumers: q.consumer_count(),
                }))
            }
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(Error::amqp("queue.declare (passive)")(err)),
        }
    }

    /// The producer's configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// A fresh plain channel of its own on the producer's connection, for
    /// tools that speak AMQP themselves (the inspections of
    /// `celeriac-admin`). The caller closes it.
    pub async fn open_channel(&self) -> Result<lapin::Channel, Error> {
        self.inner.channels.open().await
    }

    /// One of the producer's shared confirm-mode channels, for tools that
    /// republish messages themselves. Do not close it.
    pub async fn confirm_channel(&self) -> Result<lapin::Channel, Error> {
        self.inner.channels.get().await
    }
}

impl Sender for Producer {
    async fn send_task_raw(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        mut options: SendOptions,
    ) -> Result<String, CallError> {
        options.ignore_result = true;
        let handle = self
            .send_raw::<Box<RawValue>>(task, args, kwargs, options)
            .await
            .map_err(send_error)?;
        Ok(handle.id().to_owned())
    }

    async fn call_task_raw(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
        timeout: Duration,
    ) -> Result<Box<RawValue>, CallError> {
        let handle = self
            .send_raw::<Box<RawValue>>(task, args, kwargs, options)
            .await
            .map_err(send_error)?;
        handle.wait(timeout).await
    }
}

fn send_error(err: Error) -> CallError {
    match err {
        Error::Codec(codec) => CallError::Codec(codec),
        other => CallError::Send(Box::new(other)),
    }
}

async fn with_timeout<T>(
    operation: &'static str,
    after: Duration,
    future: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(after, future)
        .await
        .map_err(|_| Error::Timeout { operation, after })?
}

/// The configured named reply queue, if any.
fn named_reply_queue(config: &ProducerConfig) -> Option<NamedReplyQueue> {
    let name = config.reply_queue.clone()?;
    Some(NamedReplyQueue::new(name, config.reply_queue_type))
}

/// `gen<pid>@<host>`, Celery's `origin` format.
fn origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("gen{}@{}", std::process::id(), host)
}
