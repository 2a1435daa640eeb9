//! Everything a worker publishes, each confirmed by the broker before the
//! original delivery is settled: results, retry copies, postponed and
//! rate-limited copies and dead letters. A crash between the copy and the
//! ack may duplicate a task, never lose one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use celeriac_shared::{
    ConfirmError, DEAD_LETTERING_HEADERS, DEFAULT_QUEUE, DELAY_ENTRY_EXCHANGE, DELIVERIES_HEADER,
    DeadLetter, DeadLetterTopology, DelayTopology, Destination, MAX_DELAY,
    QUORUM_DELIVERIES_HEADER, ResultMessage, TaskMessage, Topology, check_confirm, string_header,
};
use chrono::{SecondsFormat, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tracing::{Instrument, Span, warn};

use crate::Backoff;
use crate::publish_error::PublishError;
use crate::spans;

/// How long a publish the broker refused (a negative confirm) is sent
/// again, on a fresh channel, before the delivery is requeued instead. A
/// quorum queue refuses messages while it elects a new leader, which takes
/// seconds; requeueing at once would run the task again at once, and use
/// up its delivery limit within milliseconds.
const REFUSED_RETRY_WINDOW: Duration = Duration::from_secs(15);
/// The pause before a refused publish is sent again: from 50 ms, its
/// range doubling after each refusal, up to 1 s.
const REFUSED_BACKOFF: Backoff = Backoff::Exponential {
    min: Duration::from_millis(50),
    max: Duration::from_secs(1),
};

/// Publishes on a confirm-mode channel of the worker's connection.
pub(crate) struct Publisher {
    /// The confirm-mode channel, and how many channels it replaced: one
    /// the broker refused a publish on is closed and replaced (see
    /// [`Publisher::replace`]).
    channel: Mutex<(u64, Channel)>,
    /// The queue shapes, for the retention of a dead-letter queue that has
    /// to be declared again, and for the queues workflow steps go to.
    pub(crate) topology: Topology,
    /// Opens the short-lived channels workflow queues are declared on (a
    /// refused declaration closes its channel, never the publisher's).
    connection: Arc<Connection>,
    /// The queues this publisher declared for workflow steps.
    declared: Mutex<HashSet<String>>,
}

impl Publisher {
    /// Publishes on `channel` (in confirm mode).
    pub(crate) fn new(channel: Channel, topology: Topology, connection: Arc<Connection>) -> Self {
        Self {
            channel: Mutex::new((0, channel)),
            topology,
            connection,
            declared: Mutex::new(HashSet::new()),
        }
    }

    /// Sends a task a workflow goes on with, mandatory and confirmed, to
    /// `queue` (declared first, once per publisher, in the shape the
    /// topology gives it) or to an exchange and routing key. A task with
    /// a future eta goes straight there too: the worker that receives it
    /// moves it into the delay ladder.
    pub(crate) async fn send_task(
        &self,
        message: &TaskMessage,
        queue: Option<&str>,
        exchange_and_key: Option<(&str, &str)>,
    ) -> Result<(), PublishError> {
        let (body, properties) = message.encode(Utc::now())?;
        let destination = match (queue, exchange_and_key) {
            (Some(queue), _) => self.declared_queue(queue).await?,
            (None, Some((exchange, key))) => Destination {
                exchange: exchange.to_owned(),
                routing_key: key.to_owned(),
            },
            (None, None) => self.declared_queue(DEFAULT_QUEUE).await?,
        };
        let span = spans::publish(
            &destination.exchange,
            &destination.routing_key,
            Some(message.id()),
        );
        self.publish(
            span,
            &destination.exchange,
            &destination.routing_key,
            &body,
            properties,
            true,
        )
        .await
    }

    /// Declares `queue` (with its delay binding) unless this publisher did
    /// already; its destination.
    async fn declared_queue(&self, queue: &str) -> Result<Destination, PublishError> {
        let definition = self.topology.queue_def(queue);
        let known = self
            .declared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(queue);
        if !known {
            let channel = self
                .connection
                .create_channel()
                .await
                .map_err(PublishError::amqp("channel.open"))?;
            let declared = async {
                definition.declare(&channel).await?;
                DelayTopology::bind_queue(&channel, queue).await
            }
            .await;
            let _ = channel.close(200, "declared".into()).await;
            declared?;
            self.declared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(queue.to_owned());
        }
        Ok(definition.destination())
    }

    /// Publishes and waits for the broker's confirm, in `span` (a
    /// `publish` span, marked failed if the broker does not confirm).
    async fn publish(
        &self,
        span: Span,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let sent = self
            .publish_confirmed(exchange, routing_key, body, properties, mandatory)
            .instrument(span.clone())
            .await;
        spans::record_publish(&span, &sent);
        sent
    }

    /// Publishes and waits for the broker's confirm. With `mandatory`, an
    /// unroutable message is an error. A refused message is sent again on
    /// a fresh channel, with backoff, for up to [`REFUSED_RETRY_WINDOW`];
    /// so is one whose channel was closed for that reason while it was in
    /// flight.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let routing_key = ShortString::try_new(routing_key)
            .map_err(|_| PublishError::RoutingKeyTooLong(routing_key.to_owned()))?;
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let deadline = Instant::now() + REFUSED_RETRY_WINDOW;
        let mut refusals = 0;
        loop {
            let (generation, channel) = self.channel();
            let sent = async {
                let confirm = channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.clone(),
                        options,
                        body,
                        properties.clone(),
                    )
                    .await
                    .map_err(PublishError::amqp("basic.publish"))?;
                let confirmation = confirm
                    .await
                    .map_err(PublishError::amqp("publisher confirm"))?;
                Ok(check_confirm(confirmation)?)
            }
            .await;
            let refused = matches!(sent, Err(PublishError::Refused(ConfirmError::Nacked)));
            let replaced =
                matches!(sent, Err(PublishError::Amqp { .. })) && self.channel().0 != generation;
            let pause = REFUSED_BACKOFF.delay(refusals);
            if !(refused || replaced) || Instant::now() + pause > deadline {
                return sent;
            }
            if refused {
                warn!(exchange, routing_key = %routing_key, retry_in = ?pause, "the broker refused a publish; sending it again on a fresh channel");
                self.replace(generation).await?;
            }
            tokio::time::sleep(pause).await;
            refusals += 1;
        }
    }

    /// The current channel and its generation.
    fn channel(&self) -> (u64, Channel) {
        let slot = self.lock_channel();
        (slot.0, slot.1.clone())
    }

    /// Replaces the channel of `generation`, which the broker refused a
    /// publish on, with a fresh one, unless another publish did already,
    /// and closes it. RabbitMQ 3.10 was seen to refuse every later
    /// publish of a channel that had published to a quorum queue whose
    /// leader was lost, for minutes, while a fresh channel on the same
    /// connection published to the new leader at once. Publishes in flight
    /// on the closed channel fail and are sent again.
    async fn replace(&self, generation: u64) -> Result<(), PublishError> {
        if self.channel().0 != generation {
            return Ok(());
        }
        let fresh = self
            .connection
            .create_channel()
            .await
            .map_err(PublishError::amqp("channel.open"))?;
        fresh
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(PublishError::amqp("confirm.select"))?;
        let retired = {
            let mut slot = self.lock_channel();
            match slot.0 == generation {
                true => std::mem::replace(&mut *slot, (generation + 1, fresh)).1,
                false => fresh,
            }
        };
        tokio::spawn(async move {
            let _ = retired
                .close(200, "celeriac: a publish was refused; reopening".into())
                .await;
        });
        Ok(())
    }

    /// Closes the channel, on shutdown.
    pub(crate) async fn close(&self) {
        let (_, channel) = self.channel();
        let _ = channel.close(200, "worker shutdown".into()).await;
    }

    fn lock_channel(&self) -> MutexGuard<'_, (u64, Channel)> {
        self.channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a result to a caller's reply queue, persistent (see
    /// [`ResultMessage::encode`]). An unroutable result (the caller is
    /// gone) counts as sent: nobody can receive it.
    pub(crate) async fn reply(
        &self,
        reply_to: &str,
        result: &ResultMessage,
    ) -> Result<(), PublishError> {
        let (body, properties) = result.encode()?;
        let span = spans::publish_result(reply_to, &result.task_id, result.status);
        self.publish(span, "", reply_to, &body, properties, false)
            .await
    }

    /// Sends a copy of `delivery` through the delay topology, to arrive in
    /// `queue` after `delay` (rounded up to whole seconds), with
    /// `headers` changed. A zero delay goes straight to the queue.
    pub(crate) async fn delay(
        &self,
        delivery: &Delivery,
        queue: &str,
        delay: Duration,
        changes: &[(&str, AMQPValue)],
    ) -> Result<(), PublishError> {
        self.delay_copy(delivery, queue, delay, changes, false, false)
            .await
    }

    /// As [`Publisher::delay`]; with `continue_trace`, the copy's trace
    /// headers name this publish as the parent of the next attempt; with
    /// `precise`, the delay is kept to the millisecond instead of rounded
    /// up (see [`DelayTopology::precise_route`]).
    async fn delay_copy(
        &self,
        delivery: &Delivery,
        queue: &str,
        delay: Duration,
        changes: &[(&str, AMQPValue)],
        continue_trace: bool,
        precise: bool,
    ) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        let original = delivery.properties.headers().clone().unwrap_or_default();
        let counters = [DELIVERIES_HEADER, QUORUM_DELIVERIES_HEADER];
        for (key, value) in original.inner() {
            let key_str = key.as_str();
            let dropped = counters.contains(&key_str) || DEAD_LETTERING_HEADERS.contains(&key_str);
            if !dropped {
                headers.insert(key.clone(), value.clone());
            }
        }
        for (key, value) in changes {
            headers.insert((*key).into(), value.clone());
        }
        let delay = delay.min(MAX_DELAY);
        let seconds = u64::try_from(delay.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
        let (exchange, key, expiration) = match (seconds, precise) {
            (0, _) => ("", queue.to_owned(), None),
            (_, true) => {
                let (key, expiration) = DelayTopology::precise_route(delay, queue)?;
                (DELAY_ENTRY_EXCHANGE, key, expiration)
            }
            (_, false) => {
                let key = DelayTopology::routing_key(seconds, queue)?;
                (DELAY_ENTRY_EXCHANGE, key, None)
            }
        };
        let span = spans::publish(exchange, &key, task_id(delivery));
        if continue_trace {
            spans::inject(&span, &mut headers);
        }
        let mut properties = without_expiration(&delivery.properties).with_headers(headers);
        if let Some(millis) = expiration {
            properties = properties.with_expiration(millis.to_string().into());
        }
        self.publish(span, exchange, &key, &delivery.data, properties, true)
            .await
    }

    /// Sends a retry copy: `retries + 1`, a new `eta`, through the delay.
    pub(crate) async fn retry(
        &self,
        delivery: &Delivery,
        queue: &str,
        retries: u32,
        delay: Duration,
    ) -> Result<(), PublishError> {
        let delay = delay.min(MAX_DELAY);
        let eta = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let eta = eta.to_rfc3339_opts(SecondsFormat::Micros, false);
        let changes = [
            ("retries", AMQPValue::LongLongInt(i64::from(retries) + 1)),
            (
                "eta",
                AMQPValue::LongString(LongString::from(eta.as_bytes())),
            ),
        ];
        self.delay_copy(delivery, queue, delay, &changes, true, false)
            .await
    }

    /// Sends a copy that waits `delay` (to the millisecond, see
    /// [`DelayTopology::precise_route`]) in the delay topology before it
    /// arrives in `queue` again, its `eta` set to then and its `retries`
    /// kept: a task over its rate limit.
    pub(crate) async fn reschedule(
        &self,
        delivery: &Delivery,
        queue: &str,
        delay: Duration,
    ) -> Result<(), PublishError> {
        let delay = delay.min(MAX_DELAY);
        let eta = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let eta = eta.to_rfc3339_opts(SecondsFormat::Micros, false);
        let changes = [(
            "eta",
            AMQPValue::LongString(LongString::from(eta.as_bytes())),
        )];
        self.delay_copy(delivery, queue, delay, &changes, false, true)
            .await
    }

    /// Sends the original message, byte for byte, with the dead letter's
    /// headers added, to `queue`'s dead-letter queue. The `expiration`
    /// property is dropped, so a dead letter never expires. If the
    /// dead-letter queue has gone (deleted by hand), it is declared again
    /// once.
    pub(crate) async fn dead_letter(
        &self,
        delivery: &Delivery,
        letter: &DeadLetter,
    ) -> Result<(), PublishError> {
        let properties = letter.annotate(&without_expiration(&delivery.properties));
        let exchange = DeadLetterTopology::EXCHANGE;
        let queue = &letter.original_queue;
        let span = || spans::publish(exchange, queue, task_id(delivery));
        let sent = self
            .publish(
                span(),
                exchange,
                queue,
                &delivery.data,
                properties.clone(),
                true,
            )
            .await;
        if sent.is_ok() {
            return sent;
        }
        let retention = self.topology.dead_letter_retention(queue);
        let queue_type = self.topology.queue_type(queue);
        let (_, channel) = self.channel();
        DeadLetterTopology::declare_with(&channel, queue, &retention, queue_type).await?;
        self.publish(span(), exchange, queue, &delivery.data, properties, true)
            .await
    }

    /// Puts a redelivered message back at the end of `queue` with its
    /// delivery count, so that a message that kills every worker is
    /// eventually dead-lettered instead of looping forever.
    pub(crate) async fn count_delivery(
        &self,
        delivery: &Delivery,
        queue: &str,
        count: u32,
    ) -> Result<(), PublishError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            DELIVERIES_HEADER.into(),
            AMQPValue::LongLongInt(i64::from(count)),
        );
        let properties = delivery.properties.clone().with_headers(headers);
        let span = spans::publish("", queue, task_id(delivery));
        self.publish(span, "", queue, &delivery.data, properties, true)
            .await
    }
}

/// The task id of a delivery, from its `correlation_id`.
pub(crate) fn task_id(delivery: &Delivery) -> Option<&str> {
    delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.as_str())
}

/// The task name of a delivery, from its `task` header.
pub(crate) fn task_name(delivery: &Delivery) -> Option<&str> {
    string_header(delivery.properties.headers().as_ref(), "task")
}

/// The properties without `expiration`: a per-message TTL would expire a
/// copy early inside the delay topology.
fn without_expiration(p: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(v) = p.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        copy = copy.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = p.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    copy
}
