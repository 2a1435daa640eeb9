//! Reading a queue without taking anything from it.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Consumer};

use crate::Error;

/// How long a read waits for the next delivery before asking the broker
/// whether anything is left to come.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Reads a queue's messages in order while leaving them in the queue.
///
/// The browser consumes with manual acknowledgements, as an exclusive
/// consumer, on a channel of its own, and acknowledges nothing unless told
/// to ([`Browser::ack`]). It reads at most the number of messages the
/// queue held when it opened (so new arrivals cannot keep it going) and at
/// most one prefetch window (65,535) of unacknowledged messages.
/// [`Browser::close`] gives every unacknowledged message back
/// (`basic.nack` with `requeue`), and the broker puts each back at its
/// original position. If the process dies instead, its connection closes
/// and the broker does the same; dropping the browser closes its channel,
/// with the same effect.
pub(crate) struct Browser {
    /// The dedicated channel; closing it gives back everything still held.
    channel: Channel,
    /// The exclusive manual-ack consumer.
    consumer: Consumer,
    /// The queue read, for errors.
    queue: String,
    /// The ready messages when the browser opened: reading stops there.
    total: u32,
    /// Messages read so far.
    read: u32,
    /// The delivery tags of messages read and neither acknowledged nor
    /// given back.
    held: BTreeSet<u64>,
    /// The prefetch window: the broker sends no more than this many
    /// unacknowledged messages.
    window: u32,
}

impl Browser {
    /// Opens a browser on `queue` over `channel` (which it owns from now
    /// on). Fails with [`Error::UnknownQueue`] if the queue does not exist
    /// and [`Error::QueueBusy`] if it has another consumer.
    pub(crate) async fn open(channel: Channel, queue: &str) -> Result<Self, Error> {
        let name = ShortString::try_new(queue).map_err(|_| Error::UnknownQueue {
            queue: queue.to_owned(),
        })?;
        let total = ready(&channel, queue).await?;
        let window = u16::try_from(total.max(1)).unwrap_or(u16::MAX);
        channel
            .basic_qos(window, BasicQosOptions { global: false })
            .await
            .map_err(Error::amqp("basic.qos"))?;
        let options = BasicConsumeOptions {
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(name, "".into(), options, FieldTable::default())
            .await
            .map_err(
                |source| match source.to_string().contains("ACCESS_REFUSED") {
                    true => Error::QueueBusy {
                        queue: queue.to_owned(),
                    },
                    false => Error::amqp("basic.consume")(source),
                },
            )?;
        Ok(Self {
            channel,
            consumer,
            queue: queue.to_owned(),
            total,
            read: 0,
            held: BTreeSet::new(),
            window: u32::from(window),
        })
    }

    /// How many of the messages counted at the start were not read (yet).
    pub(crate) fn unread(&self) -> u32 {
        self.total.saturating_sub(self.read)
    }

    /// Whether reading stopped because the prefetch window was full of
    /// held messages, before the count taken at the start was reached.
    pub(crate) fn truncated(&self) -> bool {
        self.held_count() >= self.window && self.read < self.total
    }

    /// The next message, or `None` once the count taken at the start was
    /// read, the prefetch window is full, or the queue has nothing left
    /// (messages expired or were dropped meanwhile).
    pub(crate) async fn next(&mut self) -> Result<Option<Delivery>, Error> {
        let mut drained = false;
        while self.read < self.total && self.held_count() < self.window {
            match tokio::time::timeout(IDLE_CHECK, self.consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    self.read += 1;
                    self.held.insert(delivery.delivery_tag);
                    return Ok(Some(delivery));
                }
                Ok(Some(Err(err))) => return Err(Error::amqp("basic.consume")(err)),
                Ok(None) => {
                    return Err(Error::ConsumerEnded {
                        queue: self.queue.clone(),
                    });
                }
                // Nothing came: stop once the broker has had nothing ready
                // for two checks in a row (a delivery already on its way
                // when the first check answered still arrives).
                Err(_) if drained => return Ok(None),
                Err(_) => drained = ready(&self.channel, &self.queue).await? == 0,
            }
        }
        Ok(None)
    }

    /// Acknowledges `delivery`: the broker removes it from the queue.
    pub(crate) async fn ack(&mut self, delivery: &Delivery) -> Result<(), Error> {
        delivery
            .acker
            .ack(lapin::options::BasicAckOptions::default())
            .await
            .map_err(Error::amqp("basic.ack"))?;
        self.held.remove(&delivery.delivery_tag);
        Ok(())
    }

    fn held_count(&self) -> u32 {
        u32::try_from(self.held.len()).unwrap_or(u32::MAX)
    }

    /// Gives every held message back to the queue, in place, and closes
    /// the channel.
    pub(crate) async fn close(self) -> Result<(), Error> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await
            .map_err(Error::amqp("basic.cancel"))?;
        // `multiple` gives back every outstanding message up to the highest
        // one held; the tag named must itself be outstanding.
        if let Some(&tag) = self.held.last() {
            let options = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            self.channel
                .basic_nack(tag, options)
                .await
                .map_err(Error::amqp("basic.nack"))?;
        }
        self.channel
            .close(200, "OK".into())
            .await
            .map_err(Error::amqp("channel.close"))
    }
}

/// The number of ready messages in `queue`, from a passive declare.
async fn ready(channel: &Channel, queue: &str) -> Result<u32, Error> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let name = ShortString::try_new(queue).map_err(|_| Error::UnknownQueue {
        queue: queue.to_owned(),
    })?;
    match channel
        .queue_declare(name, options, FieldTable::default())
        .await
    {
        Ok(q) => Ok(q.message_count()),
        Err(err) if err.to_string().contains("NOT_FOUND") => Err(Error::UnknownQueue {
            queue: queue.to_owned(),
        }),
        Err(err) => Err(Error::amqp("queue.declare (passive)")(err)),
    }
}
