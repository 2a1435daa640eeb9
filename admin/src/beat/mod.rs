//! Periodic tasks: `celeriac beat`.
//!
//! [`Beat`] sends the tasks of a [`Schedule`](crate::schedule::Schedule)
//! when they fall due. Several beats on one schedule elect one leader over
//! RabbitMQ; the leader keeps each entry's last tick on the broker
//! ([`TickRecord`]) in the same transaction as the tasks it sends.

#[allow(clippy::module_inception)]
mod beat;
mod beat_error;
mod tick_record;

pub use beat::Beat;
pub use beat_error::BeatError;
pub use tick_record::TickRecord;
