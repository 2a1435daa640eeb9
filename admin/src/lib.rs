//! Operate celeriac: inspect and repair what waits on the broker.
//!
//! [`DeadLetters`] lists, shows, replays and purges dead letters;
//! [`DelayedTasks`] shows what waits in the delay ladder, as the
//! `celeriac dlq` and `celeriac retries` commands do. [`Dashboard`] serves
//! the same in a browser (`celeriac dashboard`), with queue counts and
//! rates, the workers' heartbeats and a throughput chart. [`Control`]
//! speaks Celery's remote control (`ping`, `inspect`, `revoke`,
//! `shutdown`, ...) to Rust and Python workers alike, as the
//! `celeriac inspect`, `celeriac revoke` and `celeriac control` commands
//! do. [`output`] renders them as the CLI prints them.
//!
//! Everything here builds on a [`Producer`](celeriac_producer::Producer)'s
//! connection; a service that only publishes depends on
//! `celeriac-producer` alone and compiles none of this.

pub mod beat;
mod control;
mod error;
mod inspect;
pub mod output;
pub mod schedule;
mod web;

pub use control::{CONTROL_TIMEOUT, Control, PIDBOX_EXCHANGE, REPLY_EXCHANGE, Replies, Revoked};
pub use error::Error;
pub use inspect::{
    DeadLetterEntry, DeadLetters, DelayLevel, DelayReport, DelayedTask, DelayedTasks, Progress,
    PurgeSummary, QueueDelays, ReplayFailure, ReplaySummary, Selection,
};
pub use web::{Dashboard, DashboardConfig, Running};
