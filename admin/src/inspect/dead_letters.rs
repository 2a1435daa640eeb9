//! Operator access to dead letters: list, find, replay, purge.

use std::collections::HashSet;

use celeriac_shared::{DeadLetterTopology, check_confirm};
use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;

use super::browser::Browser;
use super::replay_copy::replay_properties;
use super::replay_error::ReplayError;
use celeriac_producer::Producer;

use crate::{
    DeadLetterEntry, Error, Progress, PurgeSummary, ReplayFailure, ReplaySummary, Selection,
};

/// Reads and manages the dead-letter queues (`<queue>.dead`) of work
/// queues, through a [`Producer`]'s connection.
///
/// Every method takes the *work* queues (`celery`, not `celery.dead`) and
/// reads their dead-letter queues in order with a browser that leaves
/// every message in place unless the method removes it on purpose (see
/// `docs/dead-letters.md`): listing never loses, duplicates or reorders a
/// dead letter, even if the process is killed halfway. A dead-letter queue
/// that does not exist is [`Error::UnknownQueue`]; one that another
/// process is reading is [`Error::QueueBusy`].
///
/// ```no_run
/// use celeriac_admin::{DeadLetters, Selection};
/// use celeriac_producer::{Producer, ProducerConfig};
///
/// # async fn run() -> Result<(), celeriac_admin::Error> {
/// let producer = Producer::connect(ProducerConfig::default()).await?;
/// let dead = DeadLetters::new(&producer);
/// let queues = ["celery".to_owned()];
/// for entry in dead.list(&queues, &Selection::task("reports.*")).await? {
///     println!("{:?} {}", entry.task_id, entry.short_error());
/// }
/// let summary = dead.replay(&queues, &Selection::task("reports.*"), |_| {}).await?;
/// println!("replayed {}", summary.replayed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetters {
    /// Whose connection, channels and timeouts are used.
    producer: Producer,
}

impl DeadLetters {
    /// Dead-letter access over `producer`'s connection.
    pub fn new(producer: &Producer) -> Self {
        Self {
            producer: producer.clone(),
        }
    }

    /// How many dead letters `queue` has, or `None` if its dead-letter
    /// queue does not exist.
    pub async fn count(&self, queue: &str) -> Result<Option<u32>, Error> {
        let dead = DeadLetterTopology::queue_name(queue);
        Ok(self.producer.queue_stats(&dead).await?.map(|s| s.messages))
    }

    /// The selected dead letters of `queues`, queue by queue, each in its
    /// queue's order, up to the selection's limit. Nothing is removed.
    pub async fn list(
        &self,
        queues: &[String],
        selection: &Selection,
    ) -> Result<Vec<DeadLetterEntry>, Error> {
        let mut found = Vec::new();
        for queue in queues {
            if selection.is_full(found.len()) {
                break;
            }
            let mut browser = self.browse(queue).await?;
            let mut position = 0;
            while let Some(delivery) = browser.next().await? {
                let entry = entry(queue, position, &delivery);
                position += 1;
                if selection.matches(&entry) {
                    found.push(entry);
                    if selection.is_full(found.len()) {
                        break;
                    }
                }
            }
            browser.close().await?;
        }
        Ok(found)
    }

    /// The first dead letter of `task_id` in `queues`, if any. Nothing is
    /// removed.
    pub async fn find(
        &self,
        queues: &[String],
        task_id: &str,
    ) -> Result<Option<DeadLetterEntry>, Error> {
        let selection = Selection {
            limit: Some(1),
            ..Selection::task_ids([task_id])
        };
        Ok(self.list(queues, &selection).await?.into_iter().next())
    }

    /// Publishes each selected dead letter back to its original exchange
    /// and routing key (mandatory, confirmed) with `retries` reset and the
    /// replay recorded in its headers, and only then removes it from its
    /// dead-letter queue. A dead letter that cannot be published stays
    /// where it is, so an interruption at any point leaves each message in
    /// the work queue, in the dead-letter queue, or (at worst) in both.
    /// `progress` is called after each dead letter read.
    pub async fn replay(
        &self,
        queues: &[String],
        selection: &Selection,
        mut progress: impl FnMut(Progress),
    ) -> Result<ReplaySummary, Error> {
        let mut run = Run::new(self.total(queues).await?);
        for queue in queues {
            if run.is_full(selection) {
                break;
            }
            self.replay_queue(queue, selection, &mut run, &mut progress)
                .await?;
        }
        run.replay.not_found = run.missing(selection);
        Ok(run.replay)
    }

    /// Replays the selected dead letters of one queue.
    async fn replay_queue(
        &self,
        queue: &str,
        selection: &Selection,
        run: &mut Run,
        progress: &mut impl FnMut(Progress),
    ) -> Result<(), Error> {
        let mut browser = self.browse(queue).await?;
        let mut position = 0;
        while let Some(delivery) = browser.next().await? {
            let entry = entry(queue, position, &delivery);
            position += 1;
            run.done += 1;
            if !selection.matches(&entry) {
                run.replay.skipped += 1;
            } else if let Err(error) = self.republish(&entry, &delivery).await {
                run.seen(&entry);
                run.replay.failed.push(ReplayFailure {
                    queue: queue.to_owned(),
                    task_id: entry.task_id.clone(),
                    error: error.to_string(),
                });
            } else {
                browser.ack(&delivery).await?;
                run.seen(&entry);
                run.replay.replayed += 1;
                *run.replay.queues.entry(queue.to_owned()).or_default() += 1;
            }
            progress(run.progress());
            if run.is_full(selection) {
                break;
            }
        }
        run.replay.unread += u64::from(browser.unread());
        browser.close().await
    }

    /// Deletes the selected dead letters of `queues` and says how many.
    pub async fn purge(
        &self,
        queues: &[String],
        selection: &Selection,
    ) -> Result<PurgeSummary, Error> {
        let mut summary = PurgeSummary::default();
        for queue in queues {
            let mut browser = self.browse(queue).await?;
            let mut position = 0;
            while let Some(delivery) = browser.next().await? {
                let entry = entry(queue, position, &delivery);
                position += 1;
                if !selection.matches(&entry) || selection.is_full(summary.purged) {
                    summary.kept += 1;
                    continue;
                }
                browser.ack(&delivery).await?;
                summary.purged += 1;
                *summary.queues.entry(queue.clone()).or_default() += 1;
            }
            summary.unread += u64::from(browser.unread());
            browser.close().await?;
        }
        Ok(summary)
    }

    /// A browser on `queue`'s dead-letter queue.
    async fn browse(&self, queue: &str) -> Result<Browser, Error> {
        let channel = self.producer.open_channel().await?;
        Browser::open(channel, &DeadLetterTopology::queue_name(queue)).await
    }

    /// The dead letters in `queues` now; an absent dead-letter queue is an
    /// error.
    async fn total(&self, queues: &[String]) -> Result<u64, Error> {
        let mut total = 0;
        for queue in queues {
            let count = self
                .count(queue)
                .await?
                .ok_or_else(|| Error::UnknownQueue {
                    queue: DeadLetterTopology::queue_name(queue),
                })?;
            total += u64::from(count);
        }
        Ok(total)
    }

    /// Publishes the replayed copy of `delivery` and waits for the
    /// broker's confirm; the error says why it was not accepted.
    async fn republish(
        &self,
        entry: &DeadLetterEntry,
        delivery: &Delivery,
    ) -> Result<(), ReplayError> {
        let (exchange, routing_key) = entry
            .replay_destination()
            .ok_or(ReplayError::NoDestination)?;
        let key = ShortString::try_new(routing_key.as_str())
            .map_err(|_| ReplayError::RoutingKeyTooLong(routing_key.clone()))?;
        let properties =
            replay_properties(&delivery.properties, entry.replay_count + 1, Utc::now());
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let publish = async {
            let channel = self.producer.confirm_channel().await?;
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    key,
                    options,
                    &delivery.data,
                    properties,
                )
                .await
                .map_err(Error::amqp("basic.publish"))?;
            confirm.await.map_err(Error::amqp("publisher confirm"))
        };
        let timeout = self.producer.config().send_timeout;
        let confirmation = match tokio::time::timeout(timeout, publish).await {
            Ok(Ok(confirmation)) => confirmation,
            Ok(Err(err)) => return Err(ReplayError::Broker(Box::new(err))),
            Err(_) => return Err(ReplayError::Unconfirmed(timeout)),
        };
        check_confirm(confirmation).map_err(|refusal| ReplayError::Refused {
            exchange,
            routing_key,
            refusal,
        })
    }
}

/// The bookkeeping of one replay.
struct Run {
    /// What is reported back.
    replay: ReplaySummary,
    /// Task ids that matched, for the ids that were asked for but absent.
    seen: HashSet<String>,
    /// Dead letters read in all queues.
    done: u64,
    /// Dead letters in all queues at the start.
    total: u64,
}

impl Run {
    fn new(total: u64) -> Self {
        Self {
            replay: ReplaySummary::default(),
            seen: HashSet::new(),
            done: 0,
            total,
        }
    }

    fn seen(&mut self, entry: &DeadLetterEntry) {
        if let Some(id) = &entry.task_id {
            self.seen.insert(id.clone());
        }
    }

    /// Whether the selection's limit is reached (failures count).
    fn is_full(&self, selection: &Selection) -> bool {
        selection.is_full(self.replay.replayed + self.replay.failed.len())
    }

    fn progress(&self) -> Progress {
        Progress {
            done: self.done,
            total: self.total.max(self.done),
        }
    }

    fn missing(&self, selection: &Selection) -> Vec<String> {
        let mut missing: Vec<String> = Vec::new();
        for id in &selection.task_ids {
            if !self.seen.contains(id) && !missing.contains(id) {
                missing.push(id.clone());
            }
        }
        missing
    }
}

fn entry(queue: &str, position: u32, delivery: &Delivery) -> DeadLetterEntry {
    DeadLetterEntry::decode(queue, position, &delivery.properties, &delivery.data)
}
