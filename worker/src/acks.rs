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

/// One delivery not yet acknowledged, settled through `A` (lapin's
/// [`Acker`]; the unit tests use `()`).
struct Unsettled<A = Acker> {
    acker: A,
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

/// Sends the nacks, then the acks [`plan`] decides on. Returns when to
/// look again for finished deliveries left waiting behind an unfinished
/// one.
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
    let plan = plan(unsettled, closing, Instant::now());
    let mut last = None;
    for _ in 0..plan.front {
        last = unsettled.pop_first().map(|(_, entry)| entry.acker);
    }
    if let Some(acker) = last {
        report(
            "basic.ack",
            acker.ack(BasicAckOptions { multiple: true }).await,
        );
    }
    for tag in plan.behind {
        if let Some(entry) = unsettled.remove(&tag) {
            report(
                "basic.ack",
                entry.acker.ack(BasicAckOptions::default()).await,
            );
        }
    }
    plan.next
}

/// The acks to send now.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// How many finished deliveries at the front one multiple ack covers
    /// (none if 0).
    front: usize,
    /// Finished deliveries behind an unfinished one, each acked alone.
    behind: Vec<u64>,
    /// When the next finished delivery left waiting is due.
    next: Option<Instant>,
}

/// Decides the acks of `unsettled` at `now`: one multiple ack for the
/// finished front; a single ack for each finished delivery behind an
/// unfinished one once it waited [`BEHIND_GRACE`], or at once when
/// `closing`. A delivery still running is never covered.
fn plan<A>(unsettled: &BTreeMap<u64, Unsettled<A>>, closing: bool, now: Instant) -> Plan {
    let front = unsettled
        .values()
        .take_while(|entry| entry.finished.is_some())
        .count();
    let mut plan = Plan {
        front,
        behind: Vec::new(),
        next: None,
    };
    for (tag, entry) in unsettled.iter().skip(front) {
        let Some(finished) = entry.finished else {
            continue;
        };
        let due = finished + BEHIND_GRACE;
        if closing || due <= now {
            plan.behind.push(*tag);
        } else {
            plan.next = Some(plan.next.map_or(due, |next: Instant| next.min(due)));
        }
    }
    plan
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsettled deliveries from (tag, finished how long before `now`).
    fn unsettled(
        now: Instant,
        entries: &[(u64, Option<Duration>)],
    ) -> BTreeMap<u64, Unsettled<()>> {
        entries
            .iter()
            .map(|&(tag, ago)| {
                let finished = ago.map(|ago| now - ago);
                (
                    tag,
                    Unsettled {
                        acker: (),
                        finished,
                    },
                )
            })
            .collect()
    }

    const JUST: Option<Duration> = Some(Duration::ZERO);
    const RUNNING: Option<Duration> = None;

    #[test]
    fn the_finished_front_shares_one_multiple_ack() {
        let now = Instant::now();
        let map = unsettled(now, &[(1, JUST), (2, JUST), (3, RUNNING)]);
        let expected = Plan {
            front: 2,
            behind: vec![],
            next: None,
        };
        assert_eq!(plan(&map, false, now), expected);
    }

    #[test]
    fn a_running_delivery_is_never_covered() {
        let now = Instant::now();
        let map = unsettled(now, &[(1, RUNNING), (2, JUST), (3, JUST)]);
        let expected = Plan {
            front: 0,
            behind: vec![],
            next: Some(now + BEHIND_GRACE),
        };
        assert_eq!(plan(&map, false, now), expected);
    }

    #[test]
    fn finished_behind_a_running_one_is_acked_alone_after_the_grace() {
        let now = Instant::now();
        let map = unsettled(now, &[(1, RUNNING), (2, Some(BEHIND_GRACE)), (3, JUST)]);
        let expected = Plan {
            front: 0,
            behind: vec![2],
            next: Some(now + BEHIND_GRACE),
        };
        assert_eq!(plan(&map, false, now), expected);
    }

    #[test]
    fn closing_acks_everything_finished_and_nothing_running() {
        let now = Instant::now();
        let map = unsettled(now, &[(1, JUST), (2, RUNNING), (3, JUST)]);
        let expected = Plan {
            front: 1,
            behind: vec![3],
            next: None,
        };
        assert_eq!(plan(&map, true, now), expected);
    }
}
