//! Operator inspection of the broker: dead letters (list, show, replay,
//! purge) and the delay ladder (what waits, roughly when it is due).
//!
//! Everything here reads queues with the browser of `browser.rs`, which
//! leaves every message in its queue, in its order, unless an operation
//! removes it on purpose.

mod browser;
mod dead_letter_entry;
mod dead_letters;
mod delay_report;
mod delayed_tasks;
mod replay_copy;
mod replay_error;
mod selection;
mod summaries;

pub use dead_letter_entry::DeadLetterEntry;
pub use dead_letters::DeadLetters;
pub use delay_report::{DelayLevel, DelayReport, DelayedTask, QueueDelays};
pub use delayed_tasks::DelayedTasks;
pub use selection::Selection;
pub use summaries::{Progress, PurgeSummary, ReplayFailure, ReplaySummary};
