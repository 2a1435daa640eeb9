//! The beat: sends a schedule's tasks on time, one leader among replicas.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use celeriac_producer::Producer;
use celeriac_shared::{Leader, Leadership, TOKEN_RENEWAL, TaskMessage};
use chrono::{DateTime, Utc};
use lapin::Channel;
use lapin::options::BasicPublishOptions;
use tracing::{info, warn};
use uuid::Uuid;

use super::{BeatError, TickRecord};
use crate::schedule::{Entry, Schedule};

/// The first pause before standing again after a transient failure; it
/// doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A stop signal the beat polls between steps.
type Stop<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

/// Sends the tasks of a [`Schedule`] when they fall due, as plain Celery
/// messages, so that Rust and Python workers alike run them.
///
/// Run any number of beats on one schedule (the same `name`): they elect
/// a leader over RabbitMQ ([`Leadership`], on queue
/// `celeriac.beat.<name>.leader`) and only the leader sends; when it dies,
/// another takes over as soon as the broker notices.
///
/// Each entry's last tick sent lives on the broker, in a [`TickRecord`]
/// (queue `celeriac.beat.<name>.ticks`). The leader publishes a tick's
/// task and the updated record in one AMQP transaction: both reach their
/// queues, or neither does. A new leader reads the record and goes on from
/// there, so across a failover no tick is sent twice and none is skipped.
///
/// Ticks missed while no beat ran (every beat down, or a failover longer
/// than the gap between two ticks) are not sent in a burst: the latest
/// missed tick of each entry is sent once, as soon as a leader runs. An
/// entry a beat sees for the first time starts at its next tick.
///
/// Each task's id is derived from the schedule's name, the entry's name
/// and the tick, so a tick's task has the same id whichever beat sends it.
pub struct Beat {
    producer: Producer,
    schedule: Schedule,
    name: String,
}

impl std::fmt::Debug for Beat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Beat")
            .field("name", &self.name)
            .field("entries", &self.schedule.entries().len())
            .finish_non_exhaustive()
    }
}

/// How a term ended without an error.
enum Ended {
    Stopped,
}

impl Beat {
    /// The default schedule name.
    pub const DEFAULT_NAME: &'static str = "default";

    /// A beat for `schedule`, sending through `producer`'s connection,
    /// under the schedule name [`Beat::DEFAULT_NAME`].
    pub fn new(producer: Producer, schedule: Schedule) -> Self {
        Self {
            producer,
            schedule,
            name: Self::DEFAULT_NAME.to_owned(),
        }
    }

    /// Names the schedule: beats of one name elect one leader and share
    /// one tick record; beats of different names run independently.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The election's queue of schedule `schedule`.
    pub fn leader_queue(schedule: &str) -> String {
        format!("celeriac.beat.{schedule}.leader")
    }

    /// The tick record's queue of schedule `schedule`.
    pub fn record_queue(schedule: &str) -> String {
        format!("celeriac.beat.{schedule}.ticks")
    }

    /// The id of the task that the tick `tick` of entry `entry` of schedule
    /// `schedule` sends: the same from any beat.
    pub fn task_id(schedule: &str, entry: &str, tick: DateTime<Utc>) -> String {
        let key = format!("celeriac.beat:{schedule}:{entry}:{}", tick.to_rfc3339());
        Uuid::new_v5(&Uuid::NAMESPACE_URL, key.as_bytes()).to_string()
    }

    /// Stands for leadership and, while leading, sends the schedule's
    /// tasks, until `stop` completes. Broker failures and lost leadership
    /// are waited out (the beat stands again); an error is returned only
    /// for what waiting cannot mend, such as a queue declared with other
    /// arguments or a tick record the beat cannot read.
    pub async fn run(&self, stop: impl Future<Output = ()> + Send) -> Result<(), BeatError> {
        let mut stop = std::pin::pin!(stop);
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.term(stop.as_mut()).await {
                Ok(Ended::Stopped) => return Ok(()),
                Err(err) if err.is_transient() => {
                    warn!(error = %celeriac_shared::ErrorChain(&err), retry_in = ?backoff, "beat: not leading; standing again");
                }
                Err(err) => return Err(err),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.as_mut() => return Ok(()),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One wait for leadership and, once won, one term as leader.
    async fn term(&self, mut stop: Stop<'_>) -> Result<Ended, BeatError> {
        let channel = self.producer.open_channel().await?;
        let leadership = Leadership::new(Self::leader_queue(&self.name));
        info!(schedule = %self.name, queue = %leadership.queue(), "beat: standing for leadership");
        let mut leader = tokio::select! {
            leader = leadership.lead(channel) => leader?,
            () = stop.as_mut() => return Ok(Ended::Stopped),
        };
        match self.lead(&mut leader, stop).await {
            Ok(ended) => {
                leader.resign().await;
                Ok(ended)
            }
            Err(err) => {
                leader.resign().await;
                Err(err)
            }
        }
    }

    /// Sends ticks as they fall due while leadership lasts.
    async fn lead(&self, leader: &mut Leader, mut stop: Stop<'_>) -> Result<Ended, BeatError> {
        let record_queue = Self::record_queue(&self.name);
        let channel = self.producer.open_channel().await?;
        TickRecord::declare(&channel, &record_queue).await?;
        self.declare_destinations().await?;
        let mut record = TickRecord::read(&channel, &record_queue).await?;
        channel
            .tx_select()
            .await
            .map_err(BeatError::amqp("tx.select"))?;
        info!(schedule = %self.name, entries = self.schedule.entries().len(), "beat: leading");
        let now = Utc::now();
        let forgotten = record.last.len();
        let entries = self.schedule.entries();
        record
            .last
            .retain(|name, _| entries.iter().any(|e| &e.name == name));
        let mut changed = record.last.len() != forgotten;
        for entry in entries {
            if !record.last.contains_key(&entry.name) {
                record.last.insert(entry.name.clone(), now);
                changed = true;
            }
        }
        self.send_due(&channel, &mut record, now, changed).await?;
        let mut renewal =
            tokio::time::interval_at(tokio::time::Instant::now() + TOKEN_RENEWAL, TOKEN_RENEWAL);
        loop {
            let wait = self
                .next_tick(&record)
                .map(|tick| (tick - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                // No entry has a next tick: wait for a stop or a loss.
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    self.send_due(&channel, &mut record, Utc::now(), false).await?;
                }
                err = leader.lost() => return Err(err.into()),
                _ = renewal.tick() => leader.renew().await?,
                () = stop.as_mut() => return Ok(Ended::Stopped),
            }
        }
    }

    /// The earliest next tick of any entry.
    fn next_tick(&self, record: &TickRecord) -> Option<DateTime<Utc>> {
        self.schedule
            .entries()
            .iter()
            .filter_map(|entry| {
                let last = record.last.get(&entry.name)?;
                entry.cadence.next_after(*last)
            })
            .min()
    }

    /// Declares the queue of every entry, each on a channel of its own (a
    /// refused declaration closes its channel), naming the entry when it
    /// fails.
    async fn declare_destinations(&self) -> Result<(), BeatError> {
        let config = self.producer.config();
        let mut declared = HashSet::new();
        for entry in self.schedule.entries() {
            let options = entry.send_options();
            let queue = config
                .router
                .queue_for(&entry.task, options.queue.as_deref());
            if !declared.insert(queue.to_owned()) {
                continue;
            }
            let channel = self.producer.open_channel().await?;
            let queue_def = config.topology.queue_def(queue);
            queue_def
                .declare(&channel)
                .await
                .map_err(|source| BeatError::Destination {
                    entry: entry.name.clone(),
                    queue: queue.to_owned(),
                    source,
                })?;
            let _ = channel.close(200, "OK".into()).await;
        }
        Ok(())
    }

    /// Sends the latest due tick of every entry whose next tick is due,
    /// and the record that accounts for them, in one transaction.
    async fn send_due(
        &self,
        channel: &Channel,
        record: &mut TickRecord,
        now: DateTime<Utc>,
        mut changed: bool,
    ) -> Result<(), BeatError> {
        let mut sent = Vec::new();
        for entry in self.schedule.entries() {
            let Some(&last) = record.last.get(&entry.name) else {
                continue;
            };
            let Some(tick) = entry.cadence.latest_due(last, now) else {
                continue;
            };
            if entry
                .cadence
                .next_after(last)
                .is_some_and(|first| first < tick)
            {
                warn!(entry = %entry.name, since = %last, %tick, "beat: ticks were missed while no beat led; sending the latest once");
            }
            let task_id = self.publish(channel, entry, tick, now).await?;
            record.last.insert(entry.name.clone(), tick);
            sent.push((entry, tick, task_id));
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        let (body, properties) = record.encode();
        channel
            .basic_publish(
                "".into(),
                Self::record_queue(&self.name).as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(BeatError::amqp("basic.publish (tick record)"))?;
        channel
            .tx_commit()
            .await
            .map_err(BeatError::amqp("tx.commit"))?;
        for (entry, tick, task_id) in sent {
            info!(entry = %entry.name, task = %entry.task, %tick, %task_id, "beat: sent");
        }
        Ok(())
    }

    /// Publishes one tick's task (inside the transaction); returns its id.
    async fn publish(
        &self,
        channel: &Channel,
        entry: &Entry,
        tick: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<String, BeatError> {
        let config = self.producer.config();
        let mut options = entry.send_options();
        let task_id = Self::task_id(&self.name, &entry.name, tick);
        options.task_id = Some(task_id.clone());
        let mut message = TaskMessage::new(&entry.task, entry.args.clone(), entry.kwargs.clone());
        options.apply(&mut message, now);
        message.headers.origin = Some(format!("celeriac-beat@{}", self.name));
        let queue = config
            .router
            .queue_for(&entry.task, options.queue.as_deref());
        let destination = config.topology.queue_def(queue).destination();
        let (body, properties) = message.encode(now)?;
        if body.len() > config.max_message_size {
            return Err(celeriac_shared::Error::Oversize {
                size: body.len(),
                limit: config.max_message_size,
            }
            .into());
        }
        channel
            .basic_publish(
                destination.exchange.as_str().into(),
                destination.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(BeatError::amqp("basic.publish (task)"))?;
        Ok(task_id)
    }
}
