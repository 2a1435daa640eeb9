//! The deliveries of every queue a session consumes, as one stream.
//!
//! `futures`' `SelectAll` would do, but it wraps each consumer in a task of
//! its own with its own waker: every delivery then costs a second wake and
//! a queue operation, a few percent of a worker's CPU in a drain. A
//! session consumes a handful of queues, so polling each in turn is
//! cheaper.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};

use crate::consumers::DeliveryStream;

/// Deliveries from all consumed queues, each with where it came from; a
/// queue's stream leaves once it has ended.
pub(crate) struct Intake {
    streams: Vec<DeliveryStream>,
    /// The stream polled first next time, so that a busy queue cannot
    /// keep the others waiting.
    next: usize,
}

impl Intake {
    /// The deliveries of `streams`.
    pub(crate) fn new(streams: Vec<DeliveryStream>) -> Self {
        Self { streams, next: 0 }
    }

    /// Adds the deliveries of a queue consumed from now on.
    pub(crate) fn push(&mut self, stream: DeliveryStream) {
        self.streams.push(stream);
    }

    /// Whether no queue is consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

impl Stream for Intake {
    type Item = <DeliveryStream as Stream>::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut polled = 0;
        while polled < this.streams.len() {
            let i = this.next % this.streams.len();
            match this.streams[i].poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => {
                    this.next = i + 1;
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => {
                    drop(this.streams.swap_remove(i));
                }
                Poll::Pending => {
                    this.next = i + 1;
                    polled += 1;
                }
            }
        }
        if this.streams.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::stream;

    use super::*;
    use crate::acks::Acks;
    use crate::dispatch::Source;

    fn ending(queue: &str) -> DeliveryStream {
        let (acks, _task) = Acks::spawn();
        let source = Arc::new(Source {
            queue: queue.to_owned(),
            acks,
        });
        stream::iter([(source, None)]).boxed()
    }

    #[tokio::test]
    async fn takes_every_stream_in_turn_and_drops_those_that_ended() {
        let mut intake = Intake::new(vec![ending("a"), ending("b")]);
        intake.push(ending("c"));
        let mut queues = Vec::new();
        while let Some((source, _)) = intake.next().await {
            queues.push(source.queue.clone());
        }
        queues.sort();
        assert_eq!(queues, ["a", "b", "c"]);
        assert!(intake.is_empty());
    }
}
