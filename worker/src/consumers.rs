//! One session's queue consumers: those it starts with, and those the
//! `add_consumer` and `cancel_consumer` control commands add and cancel
//! while it runs.
//!
//! Each queue is consumed on a channel of its own with per-consumer
//! prefetch and its own ack task. A new consumer's deliveries reach the
//! session's pump through a channel; a cancelled consumer's stream ends
//! without ending the session, and its channel stays open until the
//! session closes so that its in-flight tasks are still acknowledged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use celeriac_shared::{DeadLetterTopology, DelayTopology};
use futures::StreamExt;
use futures::stream::BoxStream;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use tokio::sync::mpsc;

use crate::acks::{AckTask, Acks};
use crate::dispatch::Source;
use crate::{Error, WorkerConfig};

/// One queue's deliveries, each with where it came from; the last item
/// has `None`: the consumer ended (cancelled, or its channel closed).
pub(crate) type DeliveryStream =
    BoxStream<'static, (Arc<Source>, Option<Result<Delivery, lapin::Error>>)>;

/// One queue's consumer, kept to cancel it and send its last acks.
pub(crate) struct QueueConsumer {
    /// The queue.
    pub(crate) queue: String,
    /// Its channel.
    pub(crate) channel: Channel,
    /// Its consumer tag.
    pub(crate) tag: ShortString,
    /// Its ack task.
    pub(crate) acks: AckTask,
}

/// The consumers of one session.
pub(crate) struct Consumers {
    connection: Arc<Connection>,
    config: WorkerConfig,
    list: Mutex<Vec<QueueConsumer>>,
    /// Queues whose consumer was cancelled on purpose: the end of their
    /// stream does not end the session.
    cancelled: Mutex<HashSet<String>>,
    /// Hands the streams of added consumers to the pump.
    added: mpsc::UnboundedSender<DeliveryStream>,
}

impl Consumers {
    /// Starts a consumer on each of the configured queues; returns the
    /// consumers, their deliveries and where added consumers' deliveries
    /// arrive.
    pub(crate) async fn start(
        connection: &Arc<Connection>,
        config: &WorkerConfig,
    ) -> Result<
        (
            Self,
            Vec<DeliveryStream>,
            mpsc::UnboundedReceiver<DeliveryStream>,
        ),
        Error,
    > {
        let mut list = Vec::new();
        let mut streams = Vec::new();
        for queue in config.consumed_queues() {
            let (consumer, stream) = open(connection, config, &queue).await?;
            list.push(consumer);
            streams.push(stream);
        }
        let (added, arrivals) = mpsc::unbounded_channel();
        let consumers = Self {
            connection: Arc::clone(connection),
            config: config.clone(),
            list: Mutex::new(list),
            cancelled: Mutex::default(),
            added,
        };
        Ok((consumers, streams, arrivals))
    }

    /// Declares `queue` (with its dead-letter queue and delay binding) and
    /// consumes it; `false` if it is consumed already.
    pub(crate) async fn add(&self, queue: &str) -> Result<bool, Error> {
        if self.queues().iter().any(|q| q == queue) {
            return Ok(false);
        }
        declare_queue(&self.connection, &self.config, queue).await?;
        let (consumer, stream) = open(&self.connection, &self.config, queue).await?;
        self.lock_list().push(consumer);
        self.lock_cancelled().remove(queue);
        let _ = self.added.send(stream);
        Ok(true)
    }

    /// Stops consuming `queue`; `false` if it was not consumed.
    pub(crate) async fn cancel(&self, queue: &str) -> Result<bool, Error> {
        let consumer = {
            let list = self.lock_list();
            list.iter()
                .find(|c| c.queue == queue && !self.lock_cancelled().contains(queue))
                .map(|c| (c.channel.clone(), c.tag.clone()))
        };
        let Some((channel, tag)) = consumer else {
            return Ok(false);
        };
        self.lock_cancelled().insert(queue.to_owned());
        channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
            .map_err(Error::amqp("basic.cancel"))?;
        Ok(true)
    }

    /// Whether `queue`'s consumer was cancelled on purpose.
    pub(crate) fn was_cancelled(&self, queue: &str) -> bool {
        self.lock_cancelled().contains(queue)
    }

    /// The queues consumed now.
    pub(crate) fn queues(&self) -> Vec<String> {
        let cancelled = self.lock_cancelled().clone();
        self.lock_list()
            .iter()
            .map(|c| c.queue.clone())
            .filter(|q| !cancelled.contains(q))
            .collect()
    }

    /// The consumers' channels, for `/readyz`.
    pub(crate) fn channels(&self) -> Vec<Channel> {
        self.lock_list().iter().map(|c| c.channel.clone()).collect()
    }

    /// Takes every consumer out, to stop and close them.
    pub(crate) fn take(&self) -> Vec<QueueConsumer> {
        std::mem::take(&mut *self.lock_list())
    }

    fn lock_list(&self) -> std::sync::MutexGuard<'_, Vec<QueueConsumer>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_cancelled(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.cancelled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Unacknowledged deliveries per consumer.
pub(crate) fn prefetch(config: &WorkerConfig) -> u16 {
    config
        .prefetch
        .unwrap_or_else(|| u16::try_from(config.concurrency).unwrap_or(u16::MAX))
}

/// Declares a queue added at run time as the session declares its own.
async fn declare_queue(
    connection: &Connection,
    config: &WorkerConfig,
    queue: &str,
) -> Result<(), Error> {
    let channel = connection
        .create_channel()
        .await
        .map_err(Error::amqp("channel.open"))?;
    let declared = async {
        config.topology.queue_def(queue).declare(&channel).await?;
        DelayTopology::bind_queue(&channel, queue).await?;
        let retention = config.topology.dead_letter_retention(queue);
        let queue_type = config.topology.queue_type(queue);
        DeadLetterTopology::declare_with(&channel, queue, &retention, queue_type).await
    }
    .await;
    let _ = channel.close(200, "OK".into()).await;
    Ok(declared?)
}

/// Consumes `queue` on a channel of its own.
async fn open(
    connection: &Connection,
    config: &WorkerConfig,
    queue: &str,
) -> Result<(QueueConsumer, DeliveryStream), Error> {
    let channel = connection
        .create_channel()
        .await
        .map_err(Error::amqp("channel.open"))?;
    channel
        .basic_qos(prefetch(config), BasicQosOptions { global: false })
        .await
        .map_err(Error::amqp("basic.qos"))?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("basic.consume"))?;
    let (acks, ack_task) = Acks::spawn();
    let queue_consumer = QueueConsumer {
        queue: queue.to_owned(),
        channel,
        tag: consumer.tag(),
        acks: ack_task,
    };
    let source = Arc::new(Source {
        queue: queue.to_owned(),
        acks,
    });
    let ended = futures::stream::once({
        let source = Arc::clone(&source);
        async move { (source, None) }
    });
    let deliveries = consumer.map(move |d| (Arc::clone(&source), Some(d)));
    Ok((queue_consumer, deliveries.chain(ended).boxed()))
}
