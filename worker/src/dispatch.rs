//! Handle one delivery: decode it, ask [`plan`] what to do, run the
//! handler when the plan says so (and its rate limit lets it), and carry
//! out the final plan: publish a retry, postponed, rate-limited, counted or
//! dead-letter copy, answer a waiting caller, acknowledge. Every copy is
//! confirmed before the original is acknowledged; if a copy or result
//! cannot be confirmed, the original is requeued instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac_shared::{
    CHORD_CHECKS_HEADER, CHORD_JOIN_TASK, ChordJoin, DELIVERIES_HEADER, DeadLetter,
    QUORUM_DELIVERIES_HEADER, ResultMessage, Router, Signature, TaskFailure, TaskMessage,
    Uniqueness, check_interval, decode_arguments, integer_header, strip_delay_prefix,
};
use chrono::Utc;
use lapin::message::Delivery;
use lapin::types::AMQPValue;
use serde_json::Value;
use tracing::{Instrument, Span, error, info, warn};

use crate::acks::{Acks, Settlement};
use crate::active_tasks::ActiveTasks;
use crate::chord_join::{ChordJoiner, Joined};
use crate::metrics::{Metrics, UNKNOWN_TASK};
use crate::outcome::Outcome;
use crate::plan::{Deliveries, Disposition, Facts, Plan, plan, releases_key};
use crate::publish_error::PublishError;
use crate::publisher::{Publisher, task_id, task_name};
use crate::rate_limiter::{Admission, RateLimiter};
use crate::revocations::Revoked;
use crate::tally::Tally;
use crate::task_events::TaskEvents;
use crate::unique_keys::UniqueKeys;
use crate::workflow::{self, Route, WorkflowError};
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
    /// Routes workflow steps whose signature names no queue.
    pub(crate) router: Router,
    /// Joins celeriac chords, when this worker does.
    pub(crate) joiner: Option<ChordJoiner>,
    /// Sends task events when they are on.
    pub(crate) events: TaskEvents,
    /// The tasks running now, for the `active` control command.
    pub(crate) active: Arc<ActiveTasks>,
    /// The revoked task ids.
    pub(crate) revoked: Arc<Revoked>,
    /// Admits rate-limited tasks: a token from the worker's bucket or
    /// the broker's token queue.
    pub(crate) limiter: RateLimiter,
    /// Releases unique tasks' keys.
    pub(crate) keys: UniqueKeys,
}

/// Which workflow steps a finished task sends on.
#[derive(Debug, Clone, Copy)]
enum FollowUps {
    /// Callbacks and the next chain step.
    AfterSuccess,
    /// Errbacks and the chain's failure.
    AfterFailure,
    /// None (a retry, a postponed or counted message).
    None,
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
            self.events.received(message).await;
        }
        let task = message.as_ref().map_or("", |m| m.task()).to_owned();
        let policy = self
            .registry
            .options(&task)
            .retry
            .unwrap_or_else(|| self.retry.clone());
        let deliveries = deliveries(&delivery);
        let mut rate_limited = None;
        let mut ran = false;
        loop {
            let facts = Facts {
                message: message.as_ref(),
                caller: caller(&delivery, message.as_ref()),
                now: Utc::now(),
                deliveries,
                delivery_limit: self.delivery_limit,
                policy: &policy,
                revoked: message
                    .as_ref()
                    .is_some_and(|m| self.revoked.contains(m.id())),
                outcome: outcome.as_ref(),
                rate_limited,
            };
            match plan(&facts) {
                run @ Plan::Run { redelivered } => {
                    let Some(message) = message.as_mut() else {
                        unreachable!("only a decoded message is run")
                    };
                    if let (CHORD_JOIN_TASK, Some(joiner)) = (message.task(), &self.joiner) {
                        self.join_chord(source, &delivery, message, joiner, started)
                            .await;
                        return;
                    }
                    if let Admission::Wait(wait) = self.limiter.admit(message.task()).await {
                        rate_limited = Some(wait);
                        continue;
                    }
                    if let Some((key, task_id)) = key_to_release(&delivery, &run, false) {
                        self.keys.release(&key, &task_id).await;
                    }
                    ran = true;
                    self.send_started(message).await;
                    self.events.started(message.id()).await;
                    self.active.started(message, queue, redelivered);
                    let cancel = self.revoked.running(message.id());
                    let ran = tokio::select! {
                        ran = self.registry.execute(message, redelivered) => ran,
                        () = cancel.notified() => Outcome::Revoked { terminated: true },
                    };
                    outcome = Some(ran);
                    self.revoked.done(message.id());
                    self.active.finished(message.id());
                }
                Plan::Skip(skipped) => outcome = Some(skipped),
                plan => {
                    let finished = outcome.map(|outcome| (outcome, started));
                    let release = key_to_release(&delivery, &plan, ran);
                    let settled = self
                        .carry_out(source, &delivery, message.as_ref(), plan, finished)
                        .await;
                    if let (true, Some((key, task_id))) = (settled, release) {
                        self.keys.release(&key, &task_id).await;
                    }
                    return;
                }
            }
        }
    }

    /// Publishes what `plan` takes, answers a waiting caller, then
    /// acknowledges the delivery, or requeues it when the broker did not
    /// confirm a publish: the one place a publish failure is decided.
    /// Whether the delivery was acknowledged (not requeued).
    async fn carry_out(
        &self,
        source: &Source,
        delivery: &Delivery,
        message: Option<&TaskMessage>,
        plan: Plan,
        finished: Option<(Outcome, Instant)>,
    ) -> bool {
        let queue = source.queue.as_str();
        let task = message.map_or("", |m| m.task());
        let retries = message.map_or(0, |m| m.headers.retries);
        if let (Some((outcome, started)), Some(disposition)) = (&finished, plan.disposition()) {
            let seconds = started.elapsed().as_secs_f64();
            log_outcome(queue, message, outcome, disposition, seconds);
            self.observe(queue, task, outcome, disposition, *started);
        }
        let outcome = finished.as_ref().map(|(outcome, _)| outcome);
        let follows = match &plan {
            Plan::Ack { .. } => FollowUps::AfterSuccess,
            Plan::DeadLetter { .. } => FollowUps::AfterFailure,
            _ => FollowUps::None,
        };
        let (published, reply) = match plan {
            Plan::Ack { reply } => (Ok(()), reply),
            Plan::Retry { delay, reply } => {
                let copied = self.publisher.retry(delivery, queue, retries, delay).await;
                (copied, reply)
            }
            Plan::DeadLetter { reason, reply } => {
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
            Plan::RateLimited { delay } => {
                let copied = self.publisher.reschedule(delivery, queue, delay).await;
                if copied.is_ok() {
                    self.count_rate_limited(delivery, queue, task, delay);
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
        let published = match (published, message, outcome) {
            (Ok(()), Some(message), Some(outcome)) if workflow::has_workflow(message) => {
                self.follow_up(delivery, queue, message, outcome, follows)
                    .await
            }
            (published, _, _) => published,
        };
        let confirmed = match (published, reply) {
            (Ok(()), Some(reply)) => self.publisher.reply(&reply.reply_to, &reply.result).await,
            (published, _) => published,
        };
        let acked = confirmed.is_ok();
        settle(&source.acks, delivery, confirmed);
        if let (Some(message), Some((outcome, started))) = (message, &finished) {
            self.send_outcome_event(message, outcome, follows, started.elapsed())
                .await;
        }
        acked
    }

    /// The task event of a finished task, once its message is settled.
    async fn send_outcome_event(
        &self,
        message: &TaskMessage,
        outcome: &Outcome,
        follows: FollowUps,
        runtime: std::time::Duration,
    ) {
        let task_id = message.id();
        match (outcome, follows) {
            (Outcome::Succeeded(result), _) => {
                let runtime = runtime.as_secs_f64();
                self.events.succeeded(task_id, result.get(), runtime).await;
            }
            (Outcome::Expired, _) => self.events.revoked(task_id, true, false).await,
            (Outcome::Revoked { terminated }, _) => {
                self.events.revoked(task_id, false, *terminated).await;
            }
            (_, follows) => {
                if let Some(failure) = outcome.failure(message.task()) {
                    let retried = matches!(follows, FollowUps::None);
                    self.events.failed(task_id, &failure, retried).await;
                }
            }
        }
    }

    /// Sends on what `message`'s workflow takes after `outcome`: callbacks
    /// and the next chain step after success, errbacks and the chain's
    /// failure after a final failure. A workflow that cannot be carried out
    /// (a malformed signature, an unroutable step, a Celery chord) is
    /// dead-lettered with the reason, keeping the whole message; the task's
    /// own result still goes to its caller.
    async fn follow_up(
        &self,
        delivery: &Delivery,
        queue: &str,
        message: &TaskMessage,
        outcome: &Outcome,
        follows: FollowUps,
    ) -> Result<(), PublishError> {
        let now = Utc::now();
        let planned = match (follows, outcome) {
            (FollowUps::AfterSuccess, Outcome::Succeeded(result)) => {
                workflow::after_success(message, result, now).map(|tasks| (tasks, Vec::new()))
            }
            (FollowUps::AfterFailure, _) => match outcome.failure(message.task()) {
                Some(failure) => workflow::after_failure(message, &failure, now),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let (tasks, replies) = match planned {
            Ok(planned) => planned,
            Err(err) => {
                return self
                    .refuse_workflow(delivery, queue, message, &err, follows)
                    .await;
            }
        };
        for task in &tasks {
            let sent = match &task.route {
                Some(Route::Queue(name)) => {
                    self.publisher
                        .send_task(&task.message, Some(name), None)
                        .await
                }
                Some(Route::Exchange {
                    exchange,
                    routing_key,
                }) => {
                    let target = Some((exchange.as_str(), routing_key.as_str()));
                    self.publisher.send_task(&task.message, None, target).await
                }
                None => {
                    let routed = self.router.queue_for(task.message.task(), None);
                    self.publisher
                        .send_task(&task.message, Some(routed), None)
                        .await
                }
            };
            match sent {
                Ok(()) => {}
                Err(err @ (PublishError::Refused(_) | PublishError::Encode(_))) => {
                    let err = WorkflowError::Step {
                        task: task.message.task().to_owned(),
                        source: Box::new(err),
                    };
                    return self
                        .refuse_workflow(delivery, queue, message, &err, follows)
                        .await;
                }
                Err(err) => return Err(err),
            }
        }
        for reply in &replies {
            self.publisher.reply(&reply.reply_to, &reply.result).await?;
        }
        Ok(())
    }

    /// Dead-letters a copy of a message whose workflow cannot be carried
    /// out, with the reason; after a final failure the message is already
    /// dead-lettered (with its workflow), so the reason is only logged.
    async fn refuse_workflow(
        &self,
        delivery: &Delivery,
        queue: &str,
        message: &TaskMessage,
        err: &WorkflowError,
        follows: FollowUps,
    ) -> Result<(), PublishError> {
        let (task_id, task) = (message.id(), message.task());
        error!(task_id, task, error = %err, "Task {task}[{task_id}]: its workflow cannot go on: {err}");
        if let FollowUps::AfterFailure = follows {
            return Ok(());
        }
        let mut letter = self.dead_letter(
            queue,
            delivery,
            task,
            message.headers.retries,
            None,
            "bad workflow",
        );
        letter.error_type = "WorkflowError".to_owned();
        letter.error_message = err.to_string();
        self.publisher.dead_letter(delivery, &letter).await
    }

    /// Checks a chord's join and, once every header result is in, sends the
    /// body; the join is put back into the delay ladder while results are
    /// missing. Acknowledged only after the body was confirmed and the
    /// results queue deleted (see `chord_join.rs`).
    async fn join_chord(
        &self,
        source: &Source,
        delivery: &Delivery,
        message: &TaskMessage,
        joiner: &ChordJoiner,
        started: Instant,
    ) {
        let queue = source.queue.as_str();
        let join = match decode_arguments::<ChordJoin>(
            message.task(),
            message.args.clone(),
            message.kwargs.clone(),
        ) {
            Ok(join) => join,
            Err(err) => {
                let plan = Plan::DeadLetter {
                    reason: "bad arguments",
                    reply: None,
                };
                let finished = Some((Outcome::BadArguments(err), started));
                self.carry_out(source, delivery, Some(message), plan, finished)
                    .await;
                return;
            }
        };
        let headers = delivery.properties.headers().as_ref();
        let checks = integer_header(headers, CHORD_CHECKS_HEADER)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let later = |checks: u32| {
            let count = AMQPValue::LongLongInt(i64::from(checks) + 1);
            async move {
                self.publisher
                    .delay(
                        delivery,
                        queue,
                        check_interval(checks),
                        &[(CHORD_CHECKS_HEADER, count)],
                    )
                    .await
            }
        };
        let settled = match joiner.check(&join).await {
            Ok(Joined::Done) => {
                info!(chord_id = %join.chord_id, "chord {} was joined before", join.chord_id);
                Ok(())
            }
            Ok(Joined::Waiting) => later(checks).await,
            Err(err) => {
                warn!(chord_id = %join.chord_id, error = %err, "chord check failed; checking again later");
                later(checks).await
            }
            Ok(Joined::Complete {
                results,
                channel,
                lock,
            }) => match self.send_chord_body(&join, &results).await {
                Ok(()) => {
                    info!(chord_id = %join.chord_id, parts = results.len(), "chord {} joined", join.chord_id);
                    if let Err(err) = joiner.finish(&join, channel, lock).await {
                        warn!(chord_id = %join.chord_id, error = %err, "results queue not deleted; it expires unused");
                    }
                    Ok(())
                }
                Err(err) => {
                    joiner.give_back(&join, channel, lock).await;
                    Err(err)
                }
            },
        };
        settle(&source.acks, delivery, settled);
    }

    /// Sends a joined chord's body with the header's results in order, or,
    /// when a header task failed, the failure (`ChordError`) to the body's
    /// caller and its errbacks.
    async fn send_chord_body(
        &self,
        join: &ChordJoin,
        results: &[ResultMessage],
    ) -> Result<(), PublishError> {
        let body = &join.body;
        let now = Utc::now();
        let failed = results.iter().find_map(|result| match result.outcome() {
            Some(Err(failure)) => Some((result.task_id.as_str(), failure)),
            _ => None,
        });
        if let Some((part, failure)) = failed {
            let failure = TaskFailure {
                exc_type: "ChordError".to_owned(),
                message: format!(
                    "Dependency {part} raised {}: {}",
                    failure.exc_type, failure.message
                ),
                exc_module: Some("celery.exceptions".to_owned()),
                traceback: failure.traceback,
            };
            if let (Some(reply_to), Some(id)) = (body.reply_to(), body.task_id()) {
                self.publisher
                    .reply(reply_to, &ResultMessage::failure(id, &failure))
                    .await?;
            }
            let body_id = Value::String(body.task_id().unwrap_or_default().to_owned());
            let errbacks =
                Signature::list_from_value(body.options.get("link_error")).unwrap_or_default();
            for errback in &errbacks {
                if let Ok(message) = errback.to_message(Some(&body_id), None, Vec::new(), now) {
                    let queue = errback
                        .queue()
                        .unwrap_or_else(|| self.router.queue_for(errback.task.as_str(), None));
                    self.publisher
                        .send_task(&message, Some(queue), None)
                        .await?;
                }
            }
            return Ok(());
        }
        let values: Vec<Value> = results
            .iter()
            .map(|result| match result.outcome() {
                Some(Ok(raw)) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
                _ => Value::Null,
            })
            .collect();
        let message = match body.to_message(Some(&Value::Array(values)), None, Vec::new(), now) {
            Ok(message) => message,
            Err(err) => {
                error!(chord_id = %join.chord_id, error = %err, "chord body cannot be sent");
                let failure = TaskFailure {
                    exc_type: "WorkflowError".to_owned(),
                    message: err.to_string(),
                    exc_module: Some("celeriac".to_owned()),
                    traceback: None,
                };
                return match (body.reply_to(), body.task_id()) {
                    (Some(reply_to), Some(id)) => {
                        let result = ResultMessage::failure(id, &failure);
                        self.publisher.reply(reply_to, &result).await
                    }
                    _ => Ok(()),
                };
            }
        };
        let queue = body
            .queue()
            .unwrap_or_else(|| self.router.queue_for(body.task.as_str(), None));
        self.publisher.send_task(&message, Some(queue), None).await
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

    /// Logs and counts a task sent back through the delay because it was
    /// over its rate limit: neither a failure nor a retry.
    fn count_rate_limited(&self, delivery: &Delivery, queue: &str, task: &str, delay: Duration) {
        let task_id = task_id(delivery).unwrap_or_default();
        let seconds = delay.as_secs_f64();
        info!(
            task_id,
            task,
            seconds,
            outcome = "rate limited",
            "Task {task}[{task_id}] over its rate limit; back in {seconds:.3}s"
        );
        if let Some(metrics) = &self.metrics {
            metrics.rate_limited(self.metric_task(task), queue);
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

/// The uniqueness key a delivery carries and its task id, when carrying
/// out `plan` lets go of the key ([`releases_key`]; `ran`: the handler
/// ran for this delivery).
fn key_to_release(delivery: &Delivery, plan: &Plan, ran: bool) -> Option<(String, String)> {
    let (key, until) = Uniqueness::read_headers(delivery.properties.headers().as_ref())?;
    let task_id = task_id(delivery)?;
    releases_key(plan, until, ran).then(|| (key, task_id.to_owned()))
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
        Outcome::Succeeded(_) | Outcome::Expired | Outcome::Revoked { .. } => String::new(),
        Outcome::Failed(err) => err.to_string(),
        Outcome::Panicked(panic) => format!("panic: {panic}"),
        Outcome::TimedOut(limit) => format!("time limit of {limit:?} exceeded"),
        Outcome::DeliveryLimit(count) => format!("delivered {count} times"),
        Outcome::UnknownTask => format!("unregistered task {task}"),
        Outcome::BadArguments(err) | Outcome::Undecodable(err) => err.to_string(),
    };
    match disposition {
        Disposition::Ack if matches!(outcome, Outcome::Revoked { .. }) => {
            warn!(
                task_id,
                task,
                outcome = label,
                "Task {task}[{task_id}] revoked; not run to the end"
            );
        }
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
