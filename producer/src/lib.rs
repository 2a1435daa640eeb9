//! Publish celeriac tasks to RabbitMQ.
//!
//! A [`Producer`] routes each task to its queue (Celery-style rules), encodes
//! it in Celery's protocol v2, publishes it with `mandatory` set and returns
//! only after the broker confirmed it. Many sends run concurrently over a
//! few confirm-mode channels, so confirms are pipelined rather than one
//! round trip per message.
//!
//! Results come back over one exclusive reply queue per producer, as with
//! Celery's `rpc://` backend: [`Producer::send`] returns a [`TaskHandle`]
//! whose [`TaskHandle::wait`] yields the typed output or the worker's
//! [`TaskFailure`](celeriac_shared::TaskFailure). [`Producer::map`] sends a
//! batch and gathers it as a [`Group`].
//!
//! A service that runs as several replicas can name a reply queue instead
//! ([`ProducerConfig::reply_queue`](ProducerConfig::reply_queue())): a
//! durable queue shared by every replica, consumed by a [`ResultListener`]
//! that [`Producer::on_result`] starts with the service's handler. A
//! result is acknowledged only after the handler returned, so a replica
//! that restarts while its tasks run loses none of their results: another
//! replica (or its own restart) handles them.
//!
//! A send with [`SendOptions::unique`](celeriac_shared::SendOptions::unique)
//! publishes only if no other task holds its key; otherwise the handle
//! names the holder ([`TaskHandle::is_duplicate`]). See
//! [`UniqueLock`](celeriac_shared::UniqueLock).
//!
//! Operator tools (dead-letter and delay inspection, the dashboard, the
//! `celeriac` CLI) live in `celeriac-admin`, so a service that only
//! publishes compiles none of them.
//!
//! Each publish is a `publish <exchange>:<routing key>` span (a child of
//! the caller's current `tracing` span) whose W3C trace context goes into
//! the message's `traceparent` header, so the worker's processing joins
//! the caller's trace. Without an OpenTelemetry layer installed the span is
//! disabled and costs nothing.
//!
//! ```no_run
//! use std::time::Duration;
//! use celeriac_producer::{Producer, ProducerConfig};
//! use celeriac_shared::Task;
//!
//! struct Add;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct AddArgs { x: i64, y: i64 }
//! impl Task for Add {
//!     const NAME: &'static str = "demo.add";
//!     type Args = AddArgs;
//!     type Output = i64;
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let producer = Producer::connect(ProducerConfig::default()).await?;
//! let sum = producer.call::<Add>(&AddArgs { x: 2, y: 3 }, Duration::from_secs(10)).await?;
//! assert_eq!(sum, 5);
//! # Ok(()) }
//! ```

mod attempts;
mod broker_manager;
mod canvas;
mod channels;
mod claim;
mod config;
mod declarations;
mod error;
mod group;
mod handle;
mod named_reply_queue;
mod producer;
mod replies;
mod reply_slot;
mod result_fate;
mod result_listener;
mod tracing_span;

pub use config::ProducerConfig;
pub use error::Error;
pub use group::Group;
pub use handle::TaskHandle;
pub use producer::{Producer, QueueStats};
pub use result_listener::ResultListener;
