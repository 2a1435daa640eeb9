//! Consume celeriac tasks from RabbitMQ.
//!
//! A [`Worker`] runs typed handlers for the tasks it has registered,
//! consuming one or more queues with at most `concurrency` tasks at once
//! (per-consumer prefetch, so quorum queues work). Every message is
//! acknowledged only after its handler finished and its result (if anyone
//! waits) was confirmed by the broker; a message the worker cannot use is
//! dead-lettered with the reason and logged, and the worker carries on.
//!
//! Failures decide the message's fate (see [`TaskError`]): expected ones
//! are retried through a broker-side delay with backoff, permanent ones and
//! exhausted retries go to the queue's dead-letter queue `<queue>.dead`
//! with the error in their headers. Tasks with a future `eta` wait in the
//! broker (Celery 5.5's delay topology), never in worker memory.
//!
//! [`WorkerConfig::rate_limits`] limits how many tasks of one name start
//! per second, minute or hour, on each worker or across all of them (a
//! token queue on the broker, refilled by one elected worker); a task
//! over its limit goes back through the same delay topology, unrun.
//!
//! ```no_run
//! use celeriac_shared::Task;
//! use celeriac_worker::{TaskContext, TaskError, Worker, WorkerConfig};
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
//! async fn add(args: AddArgs, _ctx: TaskContext) -> Result<i64, TaskError> {
//!     args.x.checked_add(args.y).ok_or_else(|| TaskError::reject("overflow"))
//! }
//!
//! # async fn run() -> Result<(), celeriac_worker::Error> {
//! let worker = Worker::new(WorkerConfig::default()).register::<Add, _, _>(add);
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Each delivery is handled in a `process <exchange>:<routing key>` span
//! that continues the producer's trace from the message's `traceparent`
//! header (as a child, or a link: [`ProducerSpan`]); the handler's own
//! `tracing` spans nest in it, and failures are recorded on it. With
//! [`WorkerConfig::metrics_addr`] set, the worker serves Prometheus
//! metrics, `/healthz` and `/readyz`.
//!
//! Every [`WorkerConfig::heartbeat_interval`] (2 s by default) the worker
//! publishes a Celery `worker-heartbeat` event to the `celeryev` exchange
//! with its queues, concurrency and counts, `worker-online` when it
//! connects and `worker-offline` when it shuts down, so the celeriac
//! dashboard and Celery's monitors (Flower) list it.
//!
//! The [`EagerSender`] runs the same handlers in-process, for unit tests of
//! application code and for debugging a failing task synchronously.

mod acks;
mod active_tasks;
mod chord_join;
mod config;
mod consumers;
mod context;
mod control;
mod dispatch;
mod eager;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod health;
mod heartbeat;
mod intake;
mod metrics;
mod metrics_server;
mod outcome;
mod pacer;
mod plan;
mod publish_error;
mod publisher;
mod rate_limiter;
mod rate_limits;
mod refiller;
mod registry;
mod retry;
mod revocations;
mod session;
mod spans;
mod tally;
mod task_error;
mod task_events;
mod token_bucket;
mod unique_keys;
mod worker;
mod workflow;

pub use config::WorkerConfig;
pub use context::TaskContext;
pub use eager::EagerSender;
pub use error::Error;
pub use registry::{Registry, TaskOptions};
pub use retry::{Backoff, RetryPolicy};
pub use spans::ProducerSpan;
pub use task_error::TaskError;
pub use worker::Worker;
