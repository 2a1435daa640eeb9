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
//! - one plain `basic.ack` for each finished delivery behind a delivery
//!   still running, so that a long task never holds the prefetch slots of
//!   the short ones that finished after it.
//!
//! A message is never acknowledged before its own handler settled it: a
//! multiple ack only covers tags that all finished. Acks go through each
//! delivery's own [`Acker`], which lapin poisons when its channel dies, so
//! a stale tag is never acknowledged on a newer channel; the broker
//! redelivers those messages instead.

use std::collections::BTreeMap;

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

/// One delivery not yet acknowledged.
struct Unsettled {
    acker: Acker,
    finished: bool,
}

async fn run(mut events: mpsc::UnboundedReceiver<Event>) {
    let mut unsettled = BTreeMap::new();
    let mut requeue = Vec::new();
    while let Some(event) = events.recv().await {
        let mut closing = apply(event, &mut unsettled, &mut requeue);
        while let Ok(event) = events.try_recv() {
            closing |= apply(event, &mut unsettled, &mut requeue);
        }
        flush(&mut unsettled, &mut requeue).await;
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
                finished: false,
            };
            unsettled.insert(tag, entry);
        }
        Event::Finished(tag, Settlement::Ack) => {
            if let Some(entry) = unsettled.get_mut(&tag) {
                entry.finished = true;
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
/// single acks of finished deliveries behind an unfinished one.
async fn flush(unsettled: &mut BTreeMap<u64, Unsettled>, requeue: &mut Vec<Acker>) {
    for acker in requeue.drain(..) {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        report("basic.nack", acker.nack(options).await);
    }
    let mut front = None;
    while let Some(entry) = unsettled.first_entry() {
        if !entry.get().finished {
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
    let behind: Vec<u64> = unsettled
        .iter()
        .filter(|(_, entry)| entry.finished)
        .map(|(tag, _)| *tag)
        .collect();
    for tag in behind {
        if let Some(entry) = unsettled.remove(&tag) {
            report(
                "basic.ack",
                entry.acker.ack(BasicAckOptions::default()).await,
            );
        }
    }
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
