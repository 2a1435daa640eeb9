//! Handle one delivery: decode, check expiry, eta and delivery count, run,
//! then settle: acknowledge, retry through the delay, or dead-letter, and
//! answer a waiting caller. Every copy is confirmed before the original is
//! acknowledged; if a copy or result cannot be confirmed, the original is
//! requeued instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac_shared::{DeadLetter, ResultMessage, TaskMessage, delay_until, strip_delay_prefix};
use chrono::Utc;
use lapin::message::Delivery;
use lapin::types::AMQPValue;
use tracing::{Instrument, Span, error, info, warn};

use crate::acks::{Acks, Settlement};
use crate::disposition::{Disposition, Outcome, disposition};
use crate::metrics::{Metrics, UNKNOWN_TASK};
use crate::publisher::{
    DELIVERIES_HEADER, Publisher, QUORUM_DELIVERIES_HEADER, task_id, task_name,
};
use crate::tally::Tally;
use crate::{ProducerSpan, Registry, RetryPolicy, spans};

/// Everything needed to handle deliveries, shared by all in-flight tasks.
pub(crate) struct Dispatcher {
    /// The task handlers.
    pub(crate) registry: Registry,
    /// Publishes results and copies, each confirmed.
    pub(crate) publisher: Publisher,
    /// Bodies larger than this are dead-lettered unparsed.
    pub(crate) max_message_size: usize,
    /// Send a `STARTED` state before running a task that has a caller.
    pub(crate) track_started: bool,
    /// The retry policy of tasks registered without one.
    pub(crate) retry: RetryPolicy,
    /// Deliveries after which a message is dead-lettered unrun.
    pub(crate) delivery_limit: u32,
    /// This worker's name, written into dead letters.
    pub(crate) node: String,
    /// Counts tasks when the worker serves metrics.
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// Counts what heartbeats announce, always.
    pub(crate) tally: Arc<Tally>,
    /// Whether a task's process span is a child of, or linked to, the
    /// producer's publish span.
    pub(crate) producer_span: ProducerSpan,
}

/// Where a delivery came from: its queue, and the ack task of the channel
/// it arrived on.
pub(crate) struct Source {
    /// The queue's name.
    pub(crate) queue: String,
    /// Settles the channel's deliveries.
    pub(crate) acks: Acks,
}

/// What the checks before running decided.
enum Precheck {
    /// Run the task; `true` if it was delivered before.
    Run(bool),
    /// Do not run it; settle with this outcome.
    Skip(Outcome),
    /// Already settled (postponed or counted).
    Settled,
}

impl Dispatcher {
    /// Handles one delivery from `source` to the end, in a `process` span
    /// that continues the producer's trace (the handler's own spans nest
    /// in it).
    pub(crate) async fn dispatch(&self, source: &Source, delivery: Delivery) {
        let span = spans::process(&source.queue, &delivery, self.producer_span);
        let _in_flight = self.metrics.as_deref().map(Metrics::in_flight);
        let _counted = self.tally.in_flight();
        self.handle(source, delivery).instrument(span).await;
    }

    async fn handle(&self, source: &Source, delivery: Delivery) {
        let queue = source.queue.as_str();
        let started = Instant::now();
        let mut message = match TaskMessage::decode(
            &delivery.properties,
            &delivery.data,
            self.max_message_size,
        ) {
            Ok(message) => message,
            Err(err) => {
                self.count_received(None, queue);
                let outcome = Outcome::Undecodable(err);
                self.finish(source, &delivery, None, outcome, started).await;
                return;
            }
        };
        info!(
            task_id = %message.id(), task = %message.task(), retries = message.headers.retries,
            "Task {}[{}] received", message.task(), message.id()
        );
        self.count_received(Some(message.task()), queue);
        let outcome = match self.precheck(source, &delivery, &message).await {
            Precheck::Run(redelivered) => {
                self.send_started(&message).await;
                self.registry.execute(&mut message, redelivered).await
            }
            Precheck::Skip(outcome) => outcome,
            Precheck::Settled => return,
        };
        self.finish(source, &delivery, Some(&message), outcome, started)
            .await;
    }

    /// Expired tasks are not run; tasks due later are moved into the delay
    /// topology; redelivered messages are counted against the limit.
    async fn precheck(
        &self,
        source: &Source,
        delivery: &Delivery,
        message: &TaskMessage,
    ) -> Precheck {
        let queue = source.queue.as_str();
        let now = Utc::now();
        if message
            .headers
            .expires
            .is_some_and(|expires| expires <= now)
        {
            return Precheck::Skip(Outcome::Expired);
        }
        let due_in = message
            .headers
            .eta
            .and_then(|eta| delay_until(eta.to_utc(), now));
        if let Some(seconds) = due_in {
            let copied = self
                .publisher
                .delay(delivery, queue, Duration::from_secs(seconds), &[])
                .await;
            info!(task_id = %message.id(), task = %message.task(), seconds, "Task {}[{}] postponed to its eta", message.task(), message.id());
            settle(&source.acks, delivery, copied);
            return Precheck::Settled;
        }
        let header = |name: &str| {
            delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(name).cloned())
                .and_then(|v| integer(&v))
        };
        if let Some(count) = header(QUORUM_DELIVERIES_HEADER) {
            return match count >= self.delivery_limit {
                true => Precheck::Skip(Outcome::DeliveryLimit(count + 1)),
                false => Precheck::Run(true),
            };
        }
        let counted = header(DELIVERIES_HEADER).unwrap_or(0);
        if !delivery.redelivered {
            return Precheck::Run(counted > 0);
        }
        let count = counted + 1;
        if count >= self.delivery_limit {
            return Precheck::Skip(Outcome::DeliveryLimit(count + 1));
        }
        let copied = self.publisher.count_delivery(delivery, queue, count).await;
        settle(&source.acks, delivery, copied);
        Precheck::Settled
    }

    /// Decides the message's fate, publishes what that takes, answers a
    /// waiting caller, then acknowledges (or requeues on failure).
    async fn finish(
        &self,
        source: &Source,
        delivery: &Delivery,
        message: Option<&TaskMessage>,
        outcome: Outcome,
        started: Instant,
    ) {
        let queue = source.queue.as_str();
        let retries = message.map_or(0, |m| m.headers.retries);
        let task = message.map_or("", |m| m.task());
        let policy = self
            .registry
            .options(task)
            .retry
            .unwrap_or_else(|| self.retry.clone());
        let disposition = disposition(&outcome, retries, &policy);
        log_outcome(
            queue,
            message,
            &outcome,
            disposition,
            started.elapsed().as_secs_f64(),
        );
        self.observe(queue, task, &outcome, disposition, started);
        let mut settled = match disposition {
            Disposition::Ack => Ok(()),
            Disposition::Retry { delay } => {
                self.publisher.retry(delivery, queue, retries, delay).await
            }
            Disposition::DeadLetter { reason } => {
                let letter = self.dead_letter(queue, delivery, task, retries, &outcome, reason);
                self.publisher.dead_letter(delivery, &letter).await
            }
        };
        if let (Ok(()), Some((reply_to, task_id))) = (&settled, caller(delivery, message)) {
            let result = match disposition {
                Disposition::Retry { .. } => outcome.retry_message(&task_id, task),
                Disposition::Ack | Disposition::DeadLetter { .. } => {
                    outcome.result_message(&task_id, task)
                }
            };
            settled = self.publisher.reply(&reply_to, &result).await;
        }
        settle(&source.acks, delivery, settled);
    }

    fn dead_letter(
        &self,
        queue: &str,
        delivery: &Delivery,
        task: &str,
        retries: u32,
        outcome: &Outcome,
        reason: &str,
    ) -> DeadLetter {
        let failure = outcome.failure(task);
        DeadLetter {
            reason: reason.to_owned(),
            error_type: failure
                .as_ref()
                .map(|f| f.exc_type.clone())
                .unwrap_or_default(),
            error_message: failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default(),
            traceback: failure.and_then(|f| f.traceback),
            retries,
            failed_at: Utc::now(),
            worker: self.node.clone(),
            original_queue: queue.to_owned(),
            original_exchange: delivery.exchange.to_string(),
            original_routing_key: strip_delay_prefix(delivery.routing_key.as_str()).to_owned(),
        }
    }

    /// Counts a received message by task (registered names only, so that
    /// arbitrary names in messages do not create metric series).
    fn count_received(&self, task: Option<&str>, queue: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.received(self.metric_task(task.unwrap_or_default()), queue);
        }
    }

    /// Records the outcome on the process span and in the metrics.
    fn observe(
        &self,
        queue: &str,
        task: &str,
        outcome: &Outcome,
        disposition: Disposition,
        started: Instant,
    ) {
        spans::record_outcome(&Span::current(), outcome, task, disposition);
        self.tally.finished(outcome);
        if let Some(metrics) = &self.metrics {
            let task = self.metric_task(task);
            metrics.finished(task, queue, outcome, disposition, started.elapsed());
        }
    }

    fn metric_task<'a>(&self, task: &'a str) -> &'a str {
        match self.registry.contains(task) {
            true => task,
            false => UNKNOWN_TASK,
        }
    }

    async fn send_started(&self, message: &TaskMessage) {
        let Some(reply_to) = message
            .reply_to
            .as_ref()
            .filter(|_| self.track_started && !message.headers.ignore_result)
        else {
            return;
        };
        let started = ResultMessage::started(message.id());
        if let Err(err) = self.publisher.reply(reply_to, &started).await {
            warn!(task_id = %message.id(), task = %message.task(), error = %err, "could not send STARTED");
        }
    }
}

/// The reply queue and task id of a caller waiting for this message's
/// result: from the decoded message (unless `ignore_result`), or from the
/// properties of one that could not be decoded.
fn caller(delivery: &Delivery, message: Option<&TaskMessage>) -> Option<(String, String)> {
    match message {
        Some(m) if m.headers.ignore_result => None,
        Some(m) => m.reply_to.clone().map(|r| (r, m.id().to_owned())),
        None => {
            let p = &delivery.properties;
            let reply_to = p.reply_to().as_ref().filter(|r| !r.as_str().is_empty())?;
            let task_id = p.correlation_id().as_ref()?;
            Some((reply_to.to_string(), task_id.to_string()))
        }
    }
}

/// Acknowledges the delivery if everything it needed was confirmed, else
/// requeues it (at worst the task runs twice; it is never lost).
fn settle(acks: &Acks, delivery: &Delivery, confirmed: Result<(), String>) {
    let settlement = match confirmed {
        Ok(()) => Settlement::Ack,
        Err(err) => {
            let task_id = task_id(delivery).unwrap_or_default();
            let task = task_name(delivery).unwrap_or_default();
            error!(
                task_id, task, delivery_tag = delivery.delivery_tag, error = %err,
                "Task {task}[{task_id}]: publishing failed; requeueing the message"
            );
            Settlement::Requeue
        }
    };
    acks.finished(delivery.delivery_tag, settlement);
}

fn integer(value: &AMQPValue) -> Option<u32> {
    let n: i64 = match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// One line per task, as Celery's worker writes it.
pub(crate) fn log_outcome(
    queue: &str,
    message: Option<&TaskMessage>,
    outcome: &Outcome,
    disposition: Disposition,
    seconds: f64,
) {
    let Some(message) = message else {
        if let Outcome::Undecodable(err) = outcome {
            error!(queue, reason = %err, "Rejected undecodable message from {queue}: {err}; dead-lettered");
        }
        return;
    };
    let (task_id, task, label) = (message.id(), message.task(), outcome.label());
    let detail = match outcome {
        Outcome::Succeeded(_) | Outcome::Expired => String::new(),
        Outcome::Failed(err) => err.to_string(),
        Outcome::Panicked(panic) => format!("panic: {panic}"),
        Outcome::TimedOut(limit) => format!("time limit of {limit:?} exceeded"),
        Outcome::DeliveryLimit(count) => format!("delivered {count} times"),
        Outcome::UnknownTask => format!("unregistered task {task}"),
        Outcome::BadArguments(err) | Outcome::Undecodable(err) => err.to_string(),
    };
    match disposition {
        Disposition::Ack if matches!(outcome, Outcome::Expired) => {
            warn!(
                task_id,
                task,
                outcome = label,
                "Task {task}[{task_id}] expired before it started; not run"
            );
        }
        Disposition::Ack => {
            info!(
                task_id,
                task,
                outcome = label,
                seconds,
                "Task {task}[{task_id}] succeeded in {seconds:.6}s"
            );
        }
        Disposition::Retry { delay } => {
            warn!(
                task_id,
                task,
                outcome = label,
                seconds,
                retries = message.headers.retries,
                "Task {task}[{task_id}] {label} in {seconds:.6}s, retry in {delay:?}: {detail}"
            );
        }
        Disposition::DeadLetter { reason } => {
            error!(
                task_id,
                task,
                outcome = label,
                seconds,
                queue,
                "Task {task}[{task_id}] {label} in {seconds:.6}s: {detail}; dead-lettered ({reason})"
            );
        }
    }
}
