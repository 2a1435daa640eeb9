//! Consumes a named reply queue and hands each result to the service's
//! handler, acking it only after the handler returned: results survive
//! the restart of the replica that sent their tasks, since any replica's
//! listener receives them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use celeriac_shared::ResultMessage;
use futures_util::StreamExt;
use futures_util::future::{self, Either};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::replies::Pending;
use crate::result_fate::{Received, ResultFate};
use crate::{Error, Producer};

/// Results a listener holds unacknowledged at once. They are handled one
/// at a time; the rest wait, prefetched, and go back to the queue if this
/// replica dies.
const PREFETCH: u16 = 32;
/// The pause before a result the handler failed on is requeued, so that a
/// handler that keeps failing (its database is down) does not spin.
const REQUEUE_PAUSE: Duration = Duration::from_millis(200);
/// The first pause before consuming again after the connection was lost.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest such pause: the pause doubles after each failed attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Consumes the producer's named reply queue
/// ([`ProducerConfig::reply_queue`](crate::ProducerConfig::reply_queue())),
/// calling the handler given to [`Producer::on_result`] with every final
/// result (`SUCCESS`, `FAILURE`, `REVOKED`), one at a time.
///
/// Each result is acknowledged only after the handler returned `Ok`; a
/// handler that returns an error or panics gets the result again (it is
/// requeued after a short pause, for this replica or another), and a
/// replica that dies mid-handler leaves its unacknowledged results to the
/// others. Delivery is therefore at least once: the handler should be
/// idempotent. Intermediate states are acknowledged without calling the
/// handler; a body that is no result message is rejected (dead-lettered
/// if a policy gives the queue a dead-letter exchange, else dropped).
///
/// A result for a task that a [`TaskHandle`](crate::TaskHandle) of this
/// process waits for is also handed to that handle. Results are shared out
/// among the replicas, so a result may reach another replica's handler
/// and never this handle: with a named reply queue, rely on the handler.
///
/// After a lost connection the listener consumes again, with backoff,
/// until it is stopped. Dropping it stops it at once: the result in hand
/// is redelivered, even though its handler, already running, may still
/// finish;
/// [`ResultListener::stop`] lets the handler in progress finish first.
#[must_use = "a dropped listener stops consuming"]
pub struct ResultListener {
    /// The named reply queue consumed.
    queue: String,
    /// Tells the consume loop to stop after the result in hand.
    stop: Option<oneshot::Sender<()>>,
    /// The consume loop, aborted on drop.
    task: JoinHandle<()>,
}

/// Why one consume session ended.
enum SessionEnd {
    /// [`ResultListener::stop`] was called.
    Stopped,
    /// The consumer failed or the broker cancelled it.
    Lost,
}

impl ResultListener {
    /// Starts consuming `producer`'s named reply queue, failing if it has
    /// none or the first subscription fails.
    pub(crate) async fn start<F, Fut, E>(producer: Producer, handler: F) -> Result<Self, Error>
    where
        F: Fn(ResultMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let queue = producer
            .replies()
            .named()
            .map(|named| named.name.clone())
            .ok_or(Error::NoNamedReplyQueue)?;
        let first = subscribe(&producer).await?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(producer, Arc::new(handler), stopped, first));
        Ok(Self {
            queue,
            stop: Some(stop),
            task,
        })
    }

    /// The named reply queue this listener consumes.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Stops consuming: the result being handled is handled and acked,
    /// then the channel is closed and the results prefetched but not
    /// handled go back to the queue.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for ResultListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for ResultListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultListener")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// Declares the named reply queue and consumes it with manual acks.
async fn subscribe(producer: &Producer) -> Result<(Channel, Consumer), Error> {
    let named = producer.replies().named().ok_or(Error::NoNamedReplyQueue)?;
    let channel = producer.channels().open().await?;
    named.declare(&channel).await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions { global: false })
        .await
        .map_err(Error::amqp("basic.qos (named reply queue)"))?;
    let consumer = channel
        .basic_consume(
            named.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("basic.consume (named reply queue)"))?;
    debug!(queue = %named.name, "consuming named reply queue");
    Ok((channel, consumer))
}

/// Consume sessions, one after another with backoff, until stopped.
async fn run<F, Fut, E>(
    producer: Producer,
    handler: Arc<F>,
    mut stopped: oneshot::Receiver<()>,
    first: (Channel, Consumer),
) where
    F: Fn(ResultMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let pending = Arc::clone(&producer.replies().pending);
    let mut next = Some(first);
    let mut backoff = MIN_BACKOFF;
    loop {
        let subscribed = match next.take() {
            Some(first) => Ok(first),
            None => subscribe(&producer).await,
        };
        match subscribed {
            Ok((channel, consumer)) => {
                backoff = MIN_BACKOFF;
                let end = session(consumer, &pending, &handler, &mut stopped).await;
                let _ = channel.close(200, "OK".into()).await;
                if let SessionEnd::Stopped = end {
                    return;
                }
                warn!("named reply queue consumer lost; consuming again");
            }
            Err(err) => warn!(error = %err, "cannot consume the named reply queue; trying again"),
        }
        let pause = std::pin::pin!(tokio::time::sleep(backoff));
        if let Either::Left(_) = future::select(&mut stopped, pause).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Handles deliveries until the consumer ends or the listener is stopped.
/// A stop request is seen between results, never during a handler.
async fn session<F, Fut, E>(
    mut consumer: Consumer,
    pending: &Pending,
    handler: &Arc<F>,
    stopped: &mut oneshot::Receiver<()>,
) -> SessionEnd
where
    F: Fn(ResultMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    loop {
        // `select` polls its first future first: a stop request wins.
        let next = match future::select(&mut *stopped, consumer.next()).await {
            Either::Left(_) => return SessionEnd::Stopped,
            Either::Right((next, _)) => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let received = receive(&delivery, pending, handler).await;
                settle(&delivery, ResultFate::of(received)).await;
            }
            Some(Err(err)) => {
                warn!(error = %err, "named reply queue consumer failed");
                return SessionEnd::Lost;
            }
            None => return SessionEnd::Lost,
        }
    }
}

/// Decodes one delivery and, for a final result, hands it to a waiting
/// handle of this process (if any) and to the handler.
async fn receive<F, Fut, E>(delivery: &Delivery, pending: &Pending, handler: &Arc<F>) -> Received
where
    F: Fn(ResultMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let result = match ResultMessage::decode(&delivery.data) {
        Ok(result) => result,
        Err(err) => {
            warn!(error = %err, "undecodable reply on the named reply queue; rejected");
            return Received::Undecodable;
        }
    };
    let task_id = result.task_id.clone();
    if !result.is_ready() {
        debug!(task_id = %task_id, state = ?result.status, "intermediate state");
        return Received::Intermediate;
    }
    let waiting = delivery.properties.correlation_id().as_ref();
    pending.deliver(
        waiting.map_or(task_id.as_str(), |id| id.as_str()),
        result.clone(),
    );
    // Spawned, so that a panicking handler fails this result only.
    match tokio::spawn(handler(result)).await {
        Ok(Ok(())) => Received::Handled,
        Ok(Err(err)) => {
            warn!(task_id = %task_id, error = %err, "result handler failed; the result is requeued");
            Received::HandlerFailed
        }
        Err(err) => {
            warn!(task_id = %task_id, error = %err, "result handler panicked; the result is requeued");
            Received::HandlerPanicked
        }
    }
}

/// Carries out `fate`. A failed ack or nack leaves the result
/// unacknowledged: the broker redelivers it when the channel closes.
async fn settle(delivery: &Delivery, fate: ResultFate) {
    let settled = match fate {
        ResultFate::Ack => delivery.ack(BasicAckOptions::default()).await,
        ResultFate::Requeue => {
            tokio::time::sleep(REQUEUE_PAUSE).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            delivery.nack(requeue).await
        }
        ResultFate::Reject => {
            let reject = BasicRejectOptions { requeue: false };
            delivery.reject(reject).await
        }
    };
    if let Err(err) = settled {
        warn!(error = %err, ?fate, "cannot settle a result; the broker redelivers it");
    }
}
