//! The revoked task ids a worker knows, read from the revocation stream
//! (see `celeriac_shared::revocation`) and from Celery's `revoke` control
//! command, bounded by [`REVOCATION_TTL`] and [`MAX_REVOKED`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use celeriac_shared::{
    MAX_REVOKED, REVOCATION_STREAM, REVOCATION_TTL, Revocation, check_confirm,
    declare_revocation_stream,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, Consumer};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::Error;

/// The revoked ids, oldest first, and the running tasks that a
/// terminating revoke cancels.
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When each id was revoked.
    ids: HashMap<String, DateTime<Utc>>,
    /// The ids in the order they were revoked, to forget the oldest.
    order: VecDeque<String>,
    /// The running tasks, each with what cancels it.
    running: HashMap<String, Arc<Notify>>,
}

impl Revoked {
    /// Takes in a revocation; cancels its running tasks if it terminates.
    pub(crate) fn add(&self, revocation: &Revocation) {
        if !revocation.holds_at(Utc::now()) {
            return;
        }
        let mut state = self.lock();
        for id in &revocation.task_ids {
            if state.ids.insert(id.clone(), revocation.at).is_none() {
                state.order.push_back(id.clone());
            }
            let running = state.running.get(id).filter(|_| revocation.terminate);
            if let Some(cancel) = running {
                info!(task_id = %id, "terminating revoked task");
                cancel.notify_one();
            }
        }
        while state.order.len() > MAX_REVOKED {
            if let Some(oldest) = state.order.pop_front() {
                state.ids.remove(&oldest);
            }
        }
    }

    /// Whether `task_id` is revoked (and the revocation still holds).
    pub(crate) fn contains(&self, task_id: &str) -> bool {
        let state = self.lock();
        let ttl = chrono::Duration::from_std(REVOCATION_TTL).unwrap_or(chrono::Duration::MAX);
        state
            .ids
            .get(task_id)
            .is_some_and(|at| *at + ttl > Utc::now())
    }

    /// The revoked ids still held, for the `revoked` control command.
    pub(crate) fn list(&self) -> Vec<String> {
        self.lock().order.iter().cloned().collect()
    }

    /// Registers a running task; the returned notify fires when a
    /// terminating revoke names it.
    pub(crate) fn running(&self, task_id: &str) -> Arc<Notify> {
        let cancel = Arc::new(Notify::new());
        self.lock()
            .running
            .insert(task_id.to_owned(), Arc::clone(&cancel));
        cancel
    }

    /// The task finished.
    pub(crate) fn done(&self, task_id: &str) {
        self.lock().running.remove(task_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Follows the revocation stream for one session.
pub(crate) struct RevocationFollower {
    /// Publishes revocations that came as control commands.
    publisher: Channel,
    consumer_channel: Channel,
    task: JoinHandle<()>,
}

impl RevocationFollower {
    /// Declares the stream, reads it from its start up to a marker this
    /// worker appends (so every revocation made before now is known), then
    /// follows it in the background.
    pub(crate) async fn start(
        connection: &Connection,
        revoked: Arc<Revoked>,
        node: &str,
        within: Duration,
    ) -> Result<Self, Error> {
        let consumer_channel = open(connection).await?;
        declare_revocation_stream(&consumer_channel).await?;
        consumer_channel
            .basic_qos(1000, BasicQosOptions { global: false })
            .await
            .map_err(Error::amqp("basic.qos"))?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-stream-offset".into(),
            AMQPValue::LongString(LongString::from("first")),
        );
        let mut consumer = consumer_channel
            .basic_consume(
                REVOCATION_STREAM.into(),
                "".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .map_err(Error::amqp("basic.consume"))?;
        let publisher = open(connection).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Error::amqp("confirm.select"))?;
        let marker = format!("{node}:{}", uuid::Uuid::new_v4());
        append(&publisher, &Revocation::marker(marker.as_str()))
            .await
            .map_err(Error::amqp("basic.publish"))?;
        let caught_up = catch_up(&mut consumer, &revoked, &marker);
        match tokio::time::timeout(within, caught_up).await {
            Ok(Ok(count)) => debug!(count, "revocations read"),
            Ok(Err(err)) => return Err(Error::amqp("basic.consume")(err)),
            Err(_) => {
                return Err(Error::Stalled { after: within });
            }
        }
        let task = tokio::spawn(follow(consumer, revoked));
        Ok(Self {
            publisher,
            consumer_channel,
            task,
        })
    }

    /// Appends a revocation (from a control command) to the stream.
    pub(crate) fn publisher(&self) -> Channel {
        self.publisher.clone()
    }

    /// Stops following and closes the channels.
    pub(crate) async fn stop(self) {
        self.task.abort();
        for channel in [&self.consumer_channel, &self.publisher] {
            let _ = channel.close(200, "worker shutdown".into()).await;
        }
    }
}

async fn open(connection: &Connection) -> Result<Channel, Error> {
    connection
        .create_channel()
        .await
        .map_err(Error::amqp("channel.open"))
}

/// Appends `revocation` to the stream and waits for the broker's confirm.
pub(crate) async fn append(channel: &Channel, revocation: &Revocation) -> Result<(), lapin::Error> {
    let Ok((body, properties)) = revocation.encode() else {
        return Ok(());
    };
    let confirm = channel
        .basic_publish(
            "".into(),
            REVOCATION_STREAM.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?;
    if let Err(refused) = check_confirm(confirm.await?) {
        warn!(error = %refused, "revocation not appended to the stream");
    }
    Ok(())
}

/// Reads until this worker's marker; how many revocations were read.
async fn catch_up(
    consumer: &mut Consumer,
    revoked: &Revoked,
    marker: &str,
) -> Result<usize, lapin::Error> {
    let mut count = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let _ = delivery.ack(BasicAckOptions::default()).await;
        let Ok(revocation) = Revocation::decode(&delivery.data) else {
            continue;
        };
        if revocation.marker.as_deref() == Some(marker) {
            return Ok(count);
        }
        revoked.add(&revocation);
        count += 1;
    }
    Ok(count)
}

async fn follow(mut consumer: Consumer, revoked: Arc<Revoked>) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let _ = delivery.ack(BasicAckOptions::default()).await;
        match Revocation::decode(&delivery.data) {
            Ok(revocation) if revocation.marker.is_none() => {
                info!(task_ids = ?revocation.task_ids, terminate = revocation.terminate, "tasks revoked");
                revoked.add(&revocation);
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "malformed revocation; ignored"),
        }
    }
}
