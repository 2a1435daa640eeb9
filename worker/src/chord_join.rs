//! Joins celeriac chords on RabbitMQ alone (see `celeriac_shared::chord`).
//!
//! Each check opens a channel of its own and looks at the chord's results
//! queue:
//!
//! - the queue is gone: the chord was joined before (a worker that joined
//!   it died after deleting the queue, before acknowledging the join);
//! - it holds fewer messages than the header has tasks: results are
//!   missing, the join goes back into the delay ladder;
//! - otherwise the check takes the chord's lock, then reads the results
//!   without acknowledging them. If every header task has a final result,
//!   the join is complete: the caller sends the body, then
//!   [`ChordJoiner::finish`] deletes the queue, then the join is
//!   acknowledged. If one is missing (duplicates, intermediate states),
//!   the channel is closed, which gives every result back.
//!
//! The lock lets one check at a time read a chord's results. A join can
//! exist twice (a worker killed after putting it back into the delay
//! ladder, before acknowledging it), and the two copies travel the ladder
//! side by side. Reading together, each got part of the results and found
//! the rest missing, every time they met: the chord never joined. The
//! lock is held in two places: in this worker (a set of chord ids, as its
//! checks share one connection) and across workers (an exclusive queue,
//! [`ChordJoin::check_lock`], which RabbitMQ drops with the connection of
//! a worker that dies holding it). A check lets go only after it gave the
//! results back. A check that finds the lock taken waits like one that
//! finds results missing.
//!
//! A worker killed at any point leaves the results in the queue (they were
//! never acknowledged) and the join unacknowledged, so another worker
//! checks again: the body runs at least once and is never lost. Nothing is
//! held unacknowledged between checks, so `consumer_timeout` never strikes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use celeriac_shared::{ChordJoin, ResultMessage, is_not_found, is_resource_locked};
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

/// Opens the channels chord checks run on.
pub(crate) struct ChordJoiner {
    /// The worker's connection.
    connection: Arc<Connection>,
    /// The chords this worker is reading the results of.
    reading: Arc<Mutex<HashSet<String>>>,
}

/// What a check found.
pub(crate) enum Joined {
    /// Results are still missing, or another check is reading them:
    /// check again later.
    Waiting,
    /// The chord was joined before: its results queue is gone (a worker
    /// deleted it and died before acknowledging the join).
    Done,
    /// Every header task has a final result, in header order. The results
    /// stay unacknowledged on `channel`, and the lock held, until
    /// [`ChordJoiner::finish`].
    Complete {
        /// The header tasks' results, in header order.
        results: Vec<ResultMessage>,
        /// The channel holding them.
        channel: Channel,
        /// The lock, held until the results queue is deleted.
        lock: Lock,
    },
}

/// This worker's hold on a chord's lock, released when dropped. The
/// check that took it deletes the lock queue first; RabbitMQ deletes it
/// anyway when the worker's connection closes.
pub(crate) struct Lock {
    chord_id: String,
    reading: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let mut reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        reading.remove(&self.chord_id);
    }
}

/// Why a check could not look at the results queue; the join is checked
/// again later.
#[derive(Debug, thiserror::Error)]
#[error("checking chord {chord_id}: AMQP {operation} failed: {source}")]
pub(crate) struct JoinError {
    chord_id: String,
    operation: &'static str,
    #[source]
    source: lapin::Error,
}

impl ChordJoiner {
    /// Checks chords over `connection`.
    pub(crate) fn new(connection: Arc<Connection>) -> Self {
        Self {
            connection,
            reading: Arc::default(),
        }
    }

    /// Looks at `join`'s results queue.
    pub(crate) async fn check(&self, join: &ChordJoin) -> Result<Joined, JoinError> {
        let fail = |operation| {
            let chord_id = join.chord_id.clone();
            move |source| JoinError {
                chord_id,
                operation,
                source,
            }
        };
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(fail("channel.open"))?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(
                join.results_queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await;
        let queue = match declared {
            Ok(queue) => queue,
            Err(err) if is_not_found(&err) => return Ok(Joined::Done),
            Err(err) => return Err(fail("queue.declare")(err)),
        };
        let wanted = join.header.len();
        if (queue.message_count() as usize) < wanted {
            close(&channel).await;
            return Ok(Joined::Waiting);
        }
        let Some(lock) = self
            .lock(join, &channel)
            .await
            .map_err(fail("queue.declare"))?
        else {
            return Ok(Joined::Waiting);
        };
        match read(join, &channel, queue.message_count()).await {
            Ok(Some(results)) => Ok(Joined::Complete {
                results,
                channel,
                lock,
            }),
            missing => {
                self.give_back(join, channel, lock).await;
                missing.map(|_| Joined::Waiting).map_err(fail("basic.get"))
            }
        }
    }

    /// Takes `join`'s lock: in this worker, then across workers on
    /// `channel`. `None` when another check holds it (the broker has then
    /// closed `channel`).
    async fn lock(
        &self,
        join: &ChordJoin,
        channel: &Channel,
    ) -> Result<Option<Lock>, lapin::Error> {
        let claimed = {
            let mut reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
            reading.insert(join.chord_id.clone())
        };
        if !claimed {
            close(channel).await;
            return Ok(None);
        }
        let lock = Lock {
            chord_id: join.chord_id.clone(),
            reading: Arc::clone(&self.reading),
        };
        match join.declare_check_lock(channel).await {
            Ok(()) => Ok(Some(lock)),
            Err(err) if is_resource_locked(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// After the body was sent: deletes the results queue (with the
    /// results this channel holds), then lets go as [`Self::give_back`].
    pub(crate) async fn finish(
        &self,
        join: &ChordJoin,
        channel: Channel,
        lock: Lock,
    ) -> Result<(), JoinError> {
        let deleted = channel
            .queue_delete(
                join.results_queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        self.give_back(join, channel, lock).await;
        deleted.map(|_| ()).map_err(|source| JoinError {
            chord_id: join.chord_id.clone(),
            operation: "queue.delete",
            source,
        })
    }

    /// Gives the results back (closes their channel), then lets go of the
    /// lock: a result is missing, or the body could not be sent. In that
    /// order, so no other check reads while the results are out.
    pub(crate) async fn give_back(&self, join: &ChordJoin, channel: Channel, lock: Lock) {
        close(&channel).await;
        self.unlock(join).await;
        drop(lock);
    }

    /// Deletes `join`'s lock queue on a channel of its own (the results'
    /// channel may have been closed by an error), best effort: a lock
    /// queue left behind expires ([`CHECK_LOCK_EXPIRES`](celeriac_shared::CHECK_LOCK_EXPIRES)) or goes with this
    /// worker's connection, and meanwhile keeps out only other workers'
    /// checks.
    async fn unlock(&self, join: &ChordJoin) {
        let Ok(channel) = self.connection.create_channel().await else {
            return;
        };
        let _ = channel
            .queue_delete(
                join.check_lock().as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        close(&channel).await;
    }
}

/// Reads every ready result of `join` (`count` of them) on `channel`,
/// unacknowledged. The header tasks' final results in header order, or
/// `None` when one is missing.
async fn read(
    join: &ChordJoin,
    channel: &Channel,
    count: u32,
) -> Result<Option<Vec<ResultMessage>>, lapin::Error> {
    let mut by_id: HashMap<String, ResultMessage> = HashMap::with_capacity(join.header.len());
    for _ in 0..count {
        let Some(message) = channel
            .basic_get(
                join.results_queue.as_str().into(),
                BasicGetOptions::default(),
            )
            .await?
        else {
            break;
        };
        let Ok(result) = ResultMessage::decode(&message.delivery.data) else {
            continue;
        };
        let id = message
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map_or_else(|| result.task_id.clone(), ToString::to_string);
        if result.is_ready() {
            by_id.entry(id).or_insert(result);
        }
    }
    Ok(join.header.iter().map(|id| by_id.remove(id)).collect())
}

async fn close(channel: &Channel) {
    let _ = channel.close(200, "chord checked".into()).await;
}
