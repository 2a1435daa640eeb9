//! celeriac's chord: a group of header tasks whose results, once all are
//! in, are passed in order to a body task, joined on RabbitMQ alone.
//!
//! The producer declares a results queue for the chord and sends every
//! header task with `reply_to` = that queue, so Rust and Python (`rpc://`)
//! workers alike publish their results there. Then it sends one
//! [`ChordJoin`] task to [`CHORD_QUEUE`]. A worker that joins chords takes
//! it, counts the results queue and, while results are missing, puts the
//! join back into the delay ladder (nothing is held unacknowledged while
//! the header runs). Once every header task has a final result, it sends
//! the body with the results in header order (or the first failure to the
//! body's caller), acknowledges the join and deletes the results queue.
//! See docs/architecture.md, "How a chord joins".

use std::time::Duration;

use serde::{Deserialize, Serialize};

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::{Signature, expire_unused};

/// The task name of a chord's join.
pub const CHORD_JOIN_TASK: &str = "celeriac.chord_join";

/// The durable queue joins wait in, consumed by every worker that joins
/// chords.
pub const CHORD_QUEUE: &str = "celeriac.chords";

/// The header that counts how often a join found results missing.
pub const CHORD_CHECKS_HEADER: &str = "x-celeriac-chord-checks";

/// How long an abandoned results queue lives without being used
/// (`x-expires`): a join uses it at least every [`MAX_CHECK_INTERVAL`].
pub const RESULTS_QUEUE_EXPIRES: Duration = Duration::from_secs(24 * 3600);

/// How long a chord's lock queue ([`ChordJoin::check_lock`]) left behind
/// by a check whose channel broke lives unused (`x-expires`). Expiring
/// while its check still runs is harmless: that check holds the results
/// unacknowledged, so any other finds too few.
pub const CHECK_LOCK_EXPIRES: Duration = Duration::from_secs(60);

/// The longest wait between two checks of a join.
pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The results queue of chord `chord_id`.
pub fn results_queue(chord_id: &str) -> String {
    format!("celeriac.chord.{chord_id}")
}

/// How long a join that found results missing `checks` times waits before
/// it looks again: 1 s for the first ten checks, then doubling up to
/// [`MAX_CHECK_INTERVAL`].
pub fn check_interval(checks: u32) -> Duration {
    let doublings = checks.saturating_sub(10).min(8);
    Duration::from_secs(1u64 << doublings).min(MAX_CHECK_INTERVAL)
}

/// The keyword arguments of a [`CHORD_JOIN_TASK`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChordJoin {
    /// The chord's id (its header tasks' `group_id`).
    pub chord_id: String,
    /// Where the header tasks' results arrive.
    pub results_queue: String,
    /// The header tasks' ids, in order: the order of the body's results.
    pub header: Vec<String>,
    /// The body, frozen: its `task_id`, `reply_to` and `queue` are set.
    pub body: Signature,
}

impl ChordJoin {
    /// The exclusive queue a worker declares while it reads the results:
    /// one check at a time across workers. Two checks reading side by
    /// side would each get part of the results and find the rest missing,
    /// again and again if they keep meeting.
    pub fn check_lock(&self) -> String {
        format!("{}.check", self.results_queue)
    }

    /// Takes the chord's lock on `channel`'s connection: declares
    /// [`ChordJoin::check_lock`] exclusive, expiring after
    /// [`CHECK_LOCK_EXPIRES`] unused. RabbitMQ refuses it to any other
    /// connection while this one holds it (`RESOURCE_LOCKED`, which also
    /// closes `channel`) and deletes it with this connection.
    pub async fn declare_check_lock(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        };
        let mut arguments = FieldTable::default();
        expire_unused(&mut arguments, CHECK_LOCK_EXPIRES);
        channel
            .queue_declare(self.check_lock().as_str().into(), exclusive, arguments)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_start_every_second_and_back_off_to_ten() {
        assert_eq!(check_interval(0), Duration::from_secs(1));
        assert_eq!(check_interval(10), Duration::from_secs(1));
        assert_eq!(check_interval(11), Duration::from_secs(2));
        assert_eq!(check_interval(13), Duration::from_secs(8));
        assert_eq!(check_interval(u32::MAX), MAX_CHECK_INTERVAL);
    }
}
