//! Handle one delivery: decode it, ask [`plan`] what to do, run the
//! handler when the plan says so, and carry out the final plan: publish a
//! retry, postponed, counted or dead-letter copy, answer a waiting caller,
//! acknowledge. Every copy is confirmed before the original is
//! acknowledged; if a copy or result cannot be confirmed, the original is
//! requeued instead.

use std::sync::Arc;
use std::time::Instant;

use celeriac_shared::{
    DELIVERIES_HEADER, DeadLetter, QUORUM_DELIVERIES_HEADER, ResultMessage, TaskMessage,
    integer_header, strip_delay_prefix,
};
use chrono::Utc;
use lapin::message::Delivery;
use tracing::{Instrument, Span, error, info, warn};

use crate::acks::{Acks, Settlement};
use crate::metrics::{Metrics, UNKNOWN_TASK};
use crate::outcome::Outcome;
use crate::plan::{Deliveries, Disposition, Facts, Plan, plan};
use crate::publish_error::PublishError;
use crate::publisher::{Publisher, task_id, task_name};
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

    /// Plans, runs the handler if the plan says so, plans again with its
    /// outcome, and carries out the final plan.
    async fn handle(&self, source: &Source, delivery: Delivery) {
        let queue = source.queue.as_str();
        let started = Instant::now();
        let decoded =
            TaskMessage::decode(&delivery.properties, &delivery.data, self.max_message_size);
        let (mut message, mut outcome) = match decoded {
            Ok(message) => (Some(message), None),
            Err(err) => (None, Some(Outcome::Undecodable(err))),
        };
        self.count_received(message.as_ref().map(TaskMessage::task), queue);
        if let Some(message) = &message {
            info!(
                task_id = %message.id(), task = %message.task(), retries = message.headers.retries,
                "Task {}[{}] received", message.task(), message.id()
            );
        }
        let task = message.as_ref().map_or("", |m| m.task()).to_owned();
        let policy = self
            .registry
            .options(&task)
            .retry
            .unwrap_or_else(|| self.retry.clone());
        let deliveries = deliveries(&delivery);
        loop {
            let facts = Facts {
                message: message.as_ref(),
                caller: caller(&delivery, message.as_ref()),
                now: Utc::now(),
                deliveries,
                delivery_limit: self.delivery_limit,
                policy: &policy,
                outcome: outcome.as_ref(),
            };
            match plan(&facts) {
                Plan::Run { redelivered } => {
                    let Some(message) = message.as_mut() else {
                        unreachable!("only a decoded message is run")
                    };
                    self.send_started(message).await;
                    outcome = Some(self.registry.execute(message, redelivered).await);
                }
                Plan::Skip(skipped) => outcome = Some(skipped),
                plan => {
                    let finished = outcome.map(|outcome| (outcome, started));
                    self.carry_out(source, &delivery, message.as_ref(), plan, finished)
                        .await;
                    return;
                }
            }
        }
    }

    /// Publishes what `plan` takes, answers a waiting caller, then
    /// acknowledges the delivery, or requeues it when the broker did not
    /// confirm a publish: the one place a publish failure is decided.
    async fn carry_out(
        &self,
        source: &Source,
        delivery: &Delivery,
        message: Option<&TaskMessage>,
        plan: Plan,
        finished: Option<(Outcome, Instant)>,
    ) {
        let queue = source.queue.as_str();
        let task = message.map_or("", |m| m.task());
        let retries = message.map_or(0, |m| m.headers.retries);
        if let (Some((outcome, started)), Some(disposition)) = (&finished, plan.disposition()) {
            let seconds = started.elapsed().as_secs_f64();
            log_outcome(queue, message, outcome, disposition, seconds);
            self.observe(queue, task, outcome, disposition, *started);
        }
        let (published, reply) = match plan {
            Plan::Ack { reply } => (Ok(()), reply),
            Plan::Retry { delay, reply } => {
                let copied = self.publisher.retry(delivery, queue, retries, delay).await;
                (copied, reply)
            }
            Plan::DeadLetter { reason, reply } => {
                let outcome = finished.as_ref().map(|(outcome, _)| outcome);
                let letter = self.dead_letter(queue, delivery, task, retries, outcome, reason);
                (self.publisher.dead_letter(delivery, &letter).await, reply)
            }
            Plan::Postpone { delay } => {
                let copied = self.publisher.delay(delivery, queue, delay, &[]).await;
                if copied.is_ok() {
                    let seconds = delay.as_secs();
                    info!(task_id = %task_id(delivery).unwrap_or_default(), task, seconds, "Task {task}[{}] postponed to its eta", task_id(delivery).unwrap_or_default());
                }
                (copied, None)
            }
            Plan::Requeue { deliveries } => {
                let copied = self
                    .publisher
                    .count_delivery(delivery, queue, deliveries)
                    .await;
                (copied, None)
            }
            Plan::Run { .. } | Plan::Skip(_) => unreachable!("handled before carrying out"),
        };
        let confirmed = match (published, reply) {
            (Ok(()), Some(reply)) => self.publisher.reply(&reply.reply_to, &reply.result).await,
            (published, _) => published,
        };
        settle(&source.acks, delivery, confirmed);
    }

    fn dead_letter(
        &self,
        queue: &str,
        delivery: &Delivery,
        task: &str,
        retries: u32,
        outcome: Option<&Outcome>,
        reason: &str,
    ) -> DeadLetter {
        let failure = outcome.and_then(|outcome| outcome.failure(task));
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
fn caller<'a>(
    delivery: &'a Delivery,
    message: Option<&'a TaskMessage>,
) -> Option<(&'a str, &'a str)> {
    match message {
        Some(m) if m.headers.ignore_result => None,
        Some(m) => m.reply_to.as_deref().map(|r| (r, m.id())),
        None => {
            let p = &delivery.properties;
            let reply_to = p.reply_to().as_ref().filter(|r| !r.as_str().is_empty())?;
            let task_id = p.correlation_id().as_ref()?;
            Some((reply_to.as_str(), task_id.as_str()))
        }
    }
}

/// What the delivery and its headers say about earlier deliveries.
fn deliveries(delivery: &Delivery) -> Deliveries {
    let headers = delivery.properties.headers().as_ref();
    let header = |name: &str| integer_header(headers, name).and_then(|n| u32::try_from(n).ok());
    Deliveries {
        redelivered: delivery.redelivered,
        quorum_count: header(QUORUM_DELIVERIES_HEADER),
        counted: header(DELIVERIES_HEADER).unwrap_or(0),
    }
}

/// Acknowledges the delivery if everything it needed was confirmed, else
/// requeues it (at worst the task runs twice; it is never lost).
fn settle(acks: &Acks, delivery: &Delivery, confirmed: Result<(), PublishError>) {
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
