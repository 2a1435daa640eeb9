//! The producer: route, encode, publish with confirms.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use celeriac_shared::{
    CallError, DELAY_ENTRY_EXCHANGE, DelayTopology, Destination, SendOptions, Sender, Task,
    TaskMessage, delay_until, encode_arguments,
};
use chrono::Utc;
use deadpool_lapin::{Pool, Runtime};
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Confirmation, ConnectionProperties};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tracing::{Span, debug};

use crate::channels::Channels;
use crate::replies::Replies;
use crate::tracing_span;
use crate::{Error, Group, ProducerConfig, TaskHandle};

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
    /// Queues already declared by this producer, so each is declared once.
    declared: Mutex<HashSet<String>>,
    /// Whether the delay topology was declared, and the queues already
    /// bound to its delivery exchange.
    delayed: Mutex<(bool, HashSet<String>)>,
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
        let pool_config = deadpool_lapin::Config {
            url: Some(config.broker_url.expose().to_owned()),
            pool: Some(deadpool_lapin::PoolConfig::new(config.connections.max(1))),
        };
        let name = config.connection_name.clone();
        let pool: Pool = pool_config
            .create_pool(
                move || ConnectionProperties::default().with_connection_name(name.as_str().into()),
                Runtime::Tokio1,
            )
            .map_err(Error::Pool)?;
        let channels = Channels::new(pool, config.broker_url.clone(), config.channels);
        let inner = Inner {
            channels,
            replies: Replies::new(),
            declared: Mutex::new(HashSet::new()),
            delayed: Mutex::new((false, HashSet::new())),
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
    pub async fn send_raw<O: serde::de::DeserializeOwned>(
        &self,
        task: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        options: SendOptions,
    ) -> Result<TaskHandle<O>, Error> {
        let mut message = TaskMessage::new(task, args, kwargs);
        options.apply(&mut message, Utc::now());
        message.headers.origin = Some(self.inner.origin.clone());
        let timeout = self.inner.config.send_timeout;
        let slot = if options.ignore_result {
            None
        } else {
            let queue = with_timeout("reply queue declare", timeout, self.reply_queue()).await?;
            message.reply_to = Some(queue);
            let pending = Arc::clone(&self.inner.replies.pending);
            let (token, receiver) =
                pending
                    .register(message.id())
                    .ok_or_else(|| Error::DuplicateTaskId {
                        task_id: message.id().to_owned(),
                    })?;
            Some((receiver, pending, token))
        };
        let handle = TaskHandle::new(message.id().to_owned(), task.to_owned(), slot);
        let publish = self.publish(&message, options.queue.as_deref());
        with_timeout("send", timeout, publish).await?;
        Ok(handle)
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
        let queue = config.router.queue_for(message.task(), queue);
        let queue_def = config.topology.queue_def(queue);
        self.ensure_declared(&queue_def).await?;
        if message.headers.eta.is_some() {
            self.ensure_delay(queue).await?;
        }
        let now = Utc::now();
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
        let (body, properties) = message.encode(now)?;
        tracing_span::record_destination(span, &destination);
        let properties = tracing_span::inject(span, properties);
        if body.len() > config.max_message_size {
            return Err(celeriac_shared::Error::Oversize {
                size: body.len(),
                limit: config.max_message_size,
            }
            .into());
        }
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
        let task_id = message.id().to_owned();
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(Error::Unroutable {
                    task_id,
                    exchange: destination.exchange,
                    routing_key: destination.routing_key,
                    reply_text: returned.reply_text.to_string(),
                })
            }
            Confirmation::Nack(None) | Confirmation::NotRequested => Err(Error::Nacked { task_id }),
        }
    }

    /// Declares every queue of the topology and the default queue.
    pub async fn declare_topology(&self) -> Result<(), Error> {
        let config = &self.inner.config;
        for queue in config.topology.queues() {
            self.declare(queue).await?;
        }
        self.declare_queue(config.router.default_queue()).await
    }

    /// Declares queue `name` (its listed definition, or Celery's default
    /// shape), its exchange and binding. Idempotent.
    pub async fn declare_queue(&self, name: &str) -> Result<(), Error> {
        self.declare(&self.inner.config.topology.queue_def(name))
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

    async fn reply_queue(&self) -> Result<String, Error> {
        self.inner.replies.queue(&self.inner.channels).await
    }

    async fn ensure_declared(&self, queue: &celeriac_shared::QueueDef) -> Result<(), Error> {
        if self.inner.declared.lock().await.contains(&queue.name) {
            return Ok(());
        }
        self.declare(queue).await
    }

    /// Declares the delay topology once and binds `queue` to its delivery
    /// exchange once.
    async fn ensure_delay(&self, queue: &str) -> Result<(), Error> {
        let mut delayed = self.inner.delayed.lock().await;
        if delayed.0 && delayed.1.contains(queue) {
            return Ok(());
        }
        let channel = self.inner.channels.open().await?;
        if !delayed.0 {
            self.inner.config.delay.declare(&channel).await?;
            delayed.0 = true;
        }
        DelayTopology::bind_queue(&channel, queue).await?;
        let _ = channel.close(200, "OK".into()).await;
        delayed.1.insert(queue.to_owned());
        Ok(())
    }

    async fn declare(&self, queue: &celeriac_shared::QueueDef) -> Result<(), Error> {
        let channel = self.inner.channels.open().await?;
        queue.declare(&channel).await?;
        let _ = channel.close(200, "OK".into()).await;
        debug!(queue = %queue.name, "declared queue");
        self.inner.declared.lock().await.insert(queue.name.clone());
        Ok(())
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

fn is_not_found(err: &lapin::Error) -> bool {
    err.to_string().contains("NOT_FOUND")
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
