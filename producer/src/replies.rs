//! The producer's reply queue: one exclusive queue per producer, results
//! matched to waiting handles by correlation id (= task id); or, when the
//! configuration names one, a [`NamedReplyQueue`] shared by the service's
//! replicas and consumed by a [`ResultListener`](crate::ResultListener).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use celeriac_shared::{ResultLost, ResultMessage};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::{Mutex, oneshot};
use tracing::{debug, warn};

use crate::Error;
use crate::channels::Channels;
use crate::named_reply_queue::NamedReplyQueue;

/// What a waiting handle receives: a final result, or why none will come.
pub(crate) type Delivered = Result<ResultMessage, ResultLost>;

/// The handles waiting for results, by task id.
///
/// A result that arrives before anyone awaits it waits in its oneshot
/// channel; a dropped handle removes its entry, so the map never holds more
/// than the handles alive.
///
/// Each registration carries a token, so that a handle dropped after a
/// newer send reused its task id cannot remove the newer one's slot.
#[derive(Default)]
pub(crate) struct Pending {
    waiting: SyncMutex<HashMap<String, Slot>>,
    /// The next registration token.
    tokens: AtomicU64,
}

/// One waiting handle's slot.
struct Slot {
    token: u64,
    /// The reply queue (by generation) its result goes to.
    generation: u64,
    sender: oneshot::Sender<Delivered>,
}

impl Pending {
    /// Registers `task_id`; must happen before its message is published.
    /// A task id that is already waiting is refused: its result could not
    /// be told apart.
    /// `generation` is the reply queue the result is to come back on.
    pub(crate) fn register(
        &self,
        task_id: &str,
        generation: u64,
    ) -> Option<(u64, oneshot::Receiver<Delivered>)> {
        let (sender, receiver) = oneshot::channel();
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self.lock();
        if waiting.contains_key(task_id) {
            return None;
        }
        let slot = Slot {
            token,
            generation,
            sender,
        };
        waiting.insert(task_id.to_owned(), slot);
        Some((token, receiver))
    }

    /// Moves the registration `token` of `task_id` to reply queue
    /// `generation` (its send is tried again after a reconnect).
    pub(crate) fn retarget(&self, task_id: &str, token: u64, generation: u64) {
        if let Some(slot) = self.lock().get_mut(task_id)
            && slot.token == token
        {
            slot.generation = generation;
        }
    }

    /// Forgets the registration `token` of `task_id` (its handle was
    /// dropped or its send failed).
    pub(crate) fn forget(&self, task_id: &str, token: u64) {
        let mut waiting = self.lock();
        if waiting.get(task_id).is_some_and(|slot| slot.token == token) {
            waiting.remove(task_id);
        }
    }

    /// How many handles are waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Hands `result` to the handle waiting for its task, if any.
    pub(crate) fn deliver(&self, task_id: &str, result: ResultMessage) {
        match self.lock().remove(task_id) {
            Some(slot) => {
                let _ = slot.sender.send(Ok(result));
            }
            None => debug!(task_id, "result for a task nobody waits for; dropped"),
        }
    }

    /// Fails every handle waiting on reply queue `generation`: their
    /// results went with it.
    fn fail_generation(&self, generation: u64, reason: &ResultLost) {
        let mut waiting = self.lock();
        let lost: Vec<String> = waiting
            .iter()
            .filter(|(_, slot)| slot.generation == generation)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            if let Some(slot) = waiting.remove(&id) {
                let _ = slot.sender.send(Err(reason.clone()));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The reply queue and its consumer, (re)declared on first need.
pub(crate) struct Replies {
    /// Handles waiting for results.
    pub(crate) pending: Arc<Pending>,
    /// The current reply queue, or `None` before first use and after its
    /// consumer stopped (connection lost).
    current: Mutex<Option<ReplyQueue>>,
    /// The generation of the next reply queue.
    generations: AtomicU64,
    /// The configured shared reply queue, used instead of an exclusive
    /// one; its results are consumed by a `ResultListener`, not here.
    named: Option<NamedReplyQueue>,
}

struct ReplyQueue {
    name: String,
    /// Tells this queue apart from the ones before and after it.
    generation: u64,
    channel: Channel,
}

impl Replies {
    /// Replies over an exclusive queue, or over `named` when given.
    pub(crate) fn new(named: Option<NamedReplyQueue>) -> Self {
        Self {
            pending: Arc::new(Pending::default()),
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            named,
        }
    }

    /// The configured shared reply queue, if any.
    pub(crate) fn named(&self) -> Option<&NamedReplyQueue> {
        self.named.as_ref()
    }

    /// The reply queue's name and generation, declaring it and starting
    /// its consumer if there is none yet or the last one was lost.
    pub(crate) async fn queue(&self, channels: &Channels) -> Result<(String, u64), Error> {
        let mut current = self.current.lock().await;
        if let Some(queue) = current.as_ref().filter(|q| q.channel.status().connected()) {
            return Ok((queue.name.clone(), queue.generation));
        }
        let channel = channels.open().await?;
        if let Some(named) = &self.named {
            // Declared again whenever its channel was lost: the broker may
            // have lost its definitions. The generation changes, but no
            // generation of a named queue is ever failed: its results wait
            // in the queue, whoever consumes it.
            named.declare(&channel).await?;
            let generation = self.generations.fetch_add(1, Ordering::Relaxed);
            debug!(queue = %named.name, "declared named reply queue");
            *current = Some(ReplyQueue {
                name: named.name.clone(),
                generation,
                channel,
            });
            return Ok((named.name.clone(), generation));
        }
        let name = format!("celeriac.reply.{}", uuid::Uuid::new_v4());
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(name.as_str().into(), options, FieldTable::default())
            .await
            .map_err(Error::amqp("queue.declare (reply queue)"))?;
        let consume = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                consume,
                FieldTable::default(),
            )
            .await
            .map_err(Error::amqp("basic.consume (reply queue)"))?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::clone(&self.pending);
        tokio::spawn(consume_replies(consumer, pending, generation));
        debug!(queue = %name, "declared reply queue");
        *current = Some(ReplyQueue {
            name: name.clone(),
            generation,
            channel,
        });
        Ok((name, generation))
    }
}

/// Delivers each result to its handle until the consumer ends, then fails
/// the handles still waiting on this queue: their results went with it.
async fn consume_replies(mut consumer: Consumer, pending: Arc<Pending>, generation: u64) {
    let reason = loop {
        match consumer.next().await {
            Some(Ok(delivery)) => {
                let Some(task_id) = delivery.properties.correlation_id().clone() else {
                    warn!("reply without correlation_id; dropped");
                    continue;
                };
                match ResultMessage::decode(&delivery.data) {
                    Ok(result) if result.is_ready() => pending.deliver(task_id.as_str(), result),
                    Ok(result) => {
                        debug!(task_id = %task_id, state = ?result.status, "intermediate state")
                    }
                    Err(err) => {
                        warn!(task_id = %task_id, error = %err, "undecodable reply; dropped")
                    }
                }
            }
            Some(Err(err)) => break ResultLost::ConsumerFailed(Arc::new(err)),
            None => break ResultLost::ConsumerStopped,
        }
    };
    warn!(%reason, waiting = pending.len(), "reply queue lost; failing waiting calls");
    pending.fail_generation(generation, &reason);
}
