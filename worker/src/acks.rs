//! Coalesced acknowledgements for one consumer channel.
//!
//! Acknowledging each delivery with its own `basic.ack` costs the broker a
//! frame per message and halves a worker's drain rate; RabbitMQ lets one
//! `basic.ack` with `multiple` set acknowledge every delivery up to a tag.
//! [`Acks`] runs one task per consumer channel that learns of each delivery
//! in the order the broker sent it and of each settlement as handlers
//! finish, drains everything already queued, and then sends:
//!
//! - one `basic.nack(requeue)` per message to give back (individually, so
//!   nothing else is touched);
//! - one `basic.ack(multiple)` for the longest run of finished deliveries
//!   at the front of the channel's unsettled ones;
//! - one plain `basic.ack` for each finished delivery that has waited
//!   [`BEHIND_GRACE`] behind a delivery still running, so that a long task
//!   never holds the prefetch slots of the short ones that finished after
//!   it. The grace lets the usual case, a front task finishing a moment
//!   later, end in one multiple ack instead of a frame per delivery (which
//!   costs the broker more than anything else in a drain).
//!
//! A message is never acknowledged before its own handler settled it: a
//! multiple ack only covers tags that all finished. Acks go through each
//! delivery's own [`Acker`], which lapin poisons when its channel dies, so
//! a stale tag is never acknowledged on a newer channel; the broker
//! redelivers those messages instead.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// How a finished delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Done with: acknowledge it.
    Ack,
    /// Give it back to the queue (its copy or result was not confirmed).
    Requeue,
}

/// What the ack task hears about.
enum Event {
    /// The broker sent this delivery; sent in delivery order.
    Received(u64, Acker),
    /// The handler of this delivery finished.
    Finished(u64, Settlement),
    /// Flush what is finished and stop.
    Close,
}

/// The sending side of one channel's ack task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Acks {
    events: mpsc::UnboundedSender<Event>,
}

/// The running ack task, to wait for its last acks on shutdown.
pub(crate) struct AckTask {
    events: mpsc::UnboundedSender<Event>,
    task: JoinHandle<()>,
}

impl Acks {
    /// Starts the ack task of one consumer channel.
    pub(crate) fn spawn() -> (Self, AckTask) {
        let (events, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(receiver));
        let task = AckTask {
            events: events.clone(),
            task,
        };
        (Self { events }, task)
    }

    /// Records a delivery; must be called in the order of delivery, before
    /// its handler can finish.
    pub(crate) fn received(&self, tag: u64, acker: Acker) {
        let _ = self.events.send(Event::Received(tag, acker));
    }

    /// Settles a delivery recorded with [`Acks::received`].
    pub(crate) fn finished(&self, tag: u64, settlement: Settlement) {
        if self.events.send(Event::Finished(tag, settlement)).is_err() {
            warn!(
                delivery_tag = tag,
                "ack task gone; the broker redelivers the message"
            );
        }
    }
}

impl AckTask {
    /// Sends the acks of everything finished so far and waits for the task
    /// to end. Deliveries still unsettled stay unacknowledged: the broker
    /// requeues them when the channel closes.
    pub(crate) async fn close(self) {
        let _ = self.events.send(Event::Close);
        let _ = self.task.await;
    }
}

/// How long a finished delivery waits behind an unfinished one before it
/// is acknowledged on its own.
pub(crate) const BEHIND_GRACE: Duration = Duration::from_millis(20);

/// One delivery not yet acknowledged.
struct Unsettled {
    acker: Acker,
    /// When its handler finished, if it did.
    finished: Option<Instant>,
}

async fn run(mut events: mpsc::UnboundedReceiver<Event>) {
    let mut unsettled = BTreeMap::new();
    let mut requeue = Vec::new();
    let mut wake_at: Option<Instant> = None;
    loop {
        let event = match wake_at {
            None => events.recv().await,
            Some(at) => match tokio::time::timeout_at(at.into(), events.recv()).await {
                Ok(event) => event,
                Err(_) => {
                    wake_at = flush(&mut unsettled, &mut requeue, false).await;
                    continue;
                }
            },
        };
        let Some(event) = event else { break };
        let mut closing = apply(event, &mut unsettled, &mut requeue);
        while let Ok(event) = events.try_recv() {
            closing |= apply(event, &mut unsettled, &mut requeue);
        }
        wake_at = flush(&mut unsettled, &mut requeue, closing).await;
        if closing {
            break;
        }
    }
}

/// Applies one event; true if it asks the task to stop.
fn apply(event: Event, unsettled: &mut BTreeMap<u64, Unsettled>, requeue: &mut Vec<Acker>) -> bool {
    match event {
        Event::Received(tag, acker) => {
            let entry = Unsettled {
                acker,
                finished: None,
            };
            unsettled.insert(tag, entry);
        }
        Event::Finished(tag, Settlement::Ack) => {
            if let Some(entry) = unsettled.get_mut(&tag) {
                entry.finished = Some(Instant::now());
            }
        }
        Event::Finished(tag, Settlement::Requeue) => {
            if let Some(entry) = unsettled.remove(&tag) {
                requeue.push(entry.acker);
            }
        }
        Event::Close => return true,
    }
    false
}

/// Sends the nacks, then the multiple ack for the finished front, then the
/// single acks of finished deliveries that waited [`BEHIND_GRACE`] behind
/// an unfinished one (all of them when `closing`). Returns when to look
/// again for those still waiting.
async fn flush(
    unsettled: &mut BTreeMap<u64, Unsettled>,
    requeue: &mut Vec<Acker>,
    closing: bool,
) -> Option<Instant> {
    for acker in requeue.drain(..) {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        report("basic.nack", acker.nack(options).await);
    }
    let mut front = None;
    while let Some(entry) = unsettled.first_entry() {
        if entry.get().finished.is_none() {
            break;
        }
        front = Some(entry.remove().acker);
    }
    if let Some(acker) = front {
        report(
            "basic.ack",
            acker.ack(BasicAckOptions { multiple: true }).await,
        );
    }
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    let mut behind = Vec::new();
    for (tag, entry) in unsettled.iter() {
        let Some(finished) = entry.finished else {
            continue;
        };
        let due = finished + BEHIND_GRACE;
        if closing || due <= now {
            behind.push(*tag);
        } else {
            next = Some(next.map_or(due, |next| next.min(due)));
        }
    }
    for tag in behind {
        if let Some(entry) = unsettled.remove(&tag) {
            report(
                "basic.ack",
                entry.acker.ack(BasicAckOptions::default()).await,
            );
        }
    }
    next
}

fn report(method: &str, sent: Result<bool, lapin::Error>) {
    match sent {
        Ok(true) => {}
        Ok(false) => debug!(method, "channel gone; the broker redelivers the messages"),
        Err(err) => {
            warn!(method, error = %err, "could not settle; the broker redelivers the messages")
        }
    }
}
