//! Joins celeriac chords on RabbitMQ alone (see `celeriac_shared::chord`).
//!
//! Each check opens a channel of its own and looks at the chord's results
//! queue:
//!
//! - the queue is gone: the chord was joined before (a worker that joined
//!   it died after deleting the queue, before acknowledging the join);
//! - it holds fewer messages than the header has tasks: results are
//!   missing, the join goes back into the delay ladder;
//! - otherwise the results are read without acknowledging them. If every
//!   header task has a final result, the join is complete: the caller
//!   sends the body, then [`ChordJoiner::finish`] deletes the queue, then
//!   the join is acknowledged. If one is missing (duplicates, intermediate
//!   states), the channel is closed, which gives every result back.
//!
//! A worker killed at any point leaves the results in the queue (they were
//! never acknowledged) and the join unacknowledged, so another worker
//! checks again: the body runs at least once and is never lost. Nothing is
//! held unacknowledged between checks, so `consumer_timeout` never strikes.

use std::collections::HashMap;
use std::sync::Arc;

use celeriac_shared::{ChordJoin, ResultMessage, is_not_found};
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

/// Opens the channels chord checks run on.
pub(crate) struct ChordJoiner {
    /// The worker's connection.
    pub(crate) connection: Arc<Connection>,
}

/// What a check found.
pub(crate) enum Joined {
    /// Results are still missing: check again later.
    Waiting,
    /// The chord was joined before: its results queue is gone (a worker
    /// deleted it and died before acknowledging the join).
    Done,
    /// Every header task has a final result, in header order. The results
    /// stay unacknowledged on `channel` until [`ChordJoiner::finish`].
    Complete {
        /// The header tasks' results, in header order.
        results: Vec<ResultMessage>,
        /// The channel holding them.
        channel: Channel,
    },
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
        let mut by_id: HashMap<String, ResultMessage> = HashMap::with_capacity(wanted);
        let gets = queue.message_count();
        for _ in 0..gets {
            let Some(message) = channel
                .basic_get(
                    join.results_queue.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await
                .map_err(fail("basic.get"))?
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
        let results: Option<Vec<ResultMessage>> =
            join.header.iter().map(|id| by_id.remove(id)).collect();
        match results {
            Some(results) => Ok(Joined::Complete { results, channel }),
            None => {
                close(&channel).await;
                Ok(Joined::Waiting)
            }
        }
    }

    /// After the body was sent: deletes the results queue (with the
    /// results this channel holds) and closes the channel.
    pub(crate) async fn finish(&self, join: &ChordJoin, channel: Channel) -> Result<(), JoinError> {
        let deleted = channel
            .queue_delete(
                join.results_queue.as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        close(&channel).await;
        deleted.map(|_| ()).map_err(|source| JoinError {
            chord_id: join.chord_id.clone(),
            operation: "queue.delete",
            source,
        })
    }
}

async fn close(channel: &Channel) {
    let _ = channel.close(200, "chord checked".into()).await;
}
