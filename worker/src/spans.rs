//! The worker's spans: a CONSUMER span `process <destination>` around the
//! handling of each delivery, continuing the producer's trace, and a
//! PRODUCER span for everything the worker publishes (results, retry
//! copies, dead letters).
//!
//! Without a subscriber that wants these spans (no OpenTelemetry layer),
//! they are disabled: no field is formatted, no header is parsed.

use celeriac_shared::trace_context::{self, DestinationName};
use celeriac_shared::{
    MESSAGING_SPAN_TARGET, TaskFailure, TaskState, integer_header, string_header,
};
use lapin::message::Delivery;
use lapin::types::FieldTable;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::outcome::Outcome;
use crate::plan::Disposition;
use crate::publish_error::PublishError;

/// How a task's `process` span relates to the `publish` span of the
/// message it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProducerSpan {
    /// The publish span is the process span's parent: producer and task
    /// are one trace (as opentelemetry-instrumentation-celery does by
    /// default). The default.
    #[default]
    Parent,
    /// The process span starts a trace of its own with a link to the
    /// publish span: for fan-outs and long-delayed tasks that would make
    /// the producer's trace unwieldy.
    Link,
}

/// The span of handling one delivery from `queue`, its parent (or link)
/// the producer's span named by the message's `traceparent` header.
pub(crate) fn process(queue: &str, delivery: &Delivery, producer: ProducerSpan) -> Span {
    let headers = delivery.properties.headers().as_ref();
    let destination = DestinationName {
        exchange: delivery.exchange.as_str(),
        routing_key: delivery.routing_key.as_str(),
    };
    let span = tracing::info_span!(
        target: MESSAGING_SPAN_TARGET,
        "process",
        "otel.name" = format_args!("process {destination}"),
        "otel.kind" = "consumer",
        "messaging.system" = "rabbitmq",
        "messaging.operation.name" = "process",
        "messaging.operation.type" = "process",
        "messaging.destination.name" = tracing::field::display(destination),
        "messaging.destination.subscription.name" = queue,
        "messaging.rabbitmq.destination.routing_key" = delivery.routing_key.as_str(),
        "messaging.rabbitmq.message.delivery_tag" = delivery.delivery_tag,
        "messaging.message.id" = delivery.properties.correlation_id().as_ref().map(|id| id.as_str()),
        "celery.task_name" = string_header(headers, "task"),
        "celery.retries" = integer_header(headers, "retries"),
    );
    if !span.is_disabled() {
        continue_trace(&span, headers, producer);
    }
    span
}

/// Makes `span` a child of (or links it to) the span named by the
/// `traceparent` in `headers`, if there is one.
fn continue_trace(span: &Span, headers: Option<&FieldTable>, producer: ProducerSpan) {
    let cx = trace_context::extract(headers);
    if !trace_context::has_trace_context(&cx) {
        return;
    }
    match producer {
        ProducerSpan::Parent => {
            // Fails only if no OpenTelemetry layer is installed, and then
            // there is no trace to continue.
            let _ = span.set_parent(cx);
        }
        ProducerSpan::Link => span.add_link(cx.span().span_context().clone()),
    }
}

/// A `publish <destination>` span for a copy of a message (retry,
/// postponed, counted, dead letter) with task id `message_id`, a child of
/// the current (process) span.
pub(crate) fn publish(exchange: &str, routing_key: &str, message_id: Option<&str>) -> Span {
    let destination = DestinationName {
        exchange,
        routing_key,
    };
    tracing::info_span!(
        target: MESSAGING_SPAN_TARGET,
        "publish",
        "otel.name" = format_args!("publish {destination}"),
        "otel.kind" = "producer",
        "messaging.system" = "rabbitmq",
        "messaging.operation.name" = "publish",
        "messaging.operation.type" = "send",
        "messaging.destination.name" = tracing::field::display(destination),
        "messaging.rabbitmq.destination.routing_key" = routing_key,
        "messaging.message.id" = message_id,
    )
}

/// The `publish result` span of a task's result sent to the caller's
/// reply queue (a temporary queue, so not in the span name).
pub(crate) fn publish_result(reply_to: &str, task_id: &str, state: TaskState) -> Span {
    let destination = DestinationName {
        exchange: "",
        routing_key: reply_to,
    };
    tracing::info_span!(
        target: MESSAGING_SPAN_TARGET,
        "publish result",
        "otel.kind" = "producer",
        "messaging.system" = "rabbitmq",
        "messaging.operation.name" = "publish",
        "messaging.operation.type" = "send",
        "messaging.destination.name" = tracing::field::display(destination),
        "messaging.destination.temporary" = true,
        "messaging.rabbitmq.destination.routing_key" = reply_to,
        "messaging.message.id" = task_id,
        "celery.state" = state_label(state),
    )
}

/// The state as Celery writes it on the wire.
fn state_label(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "PENDING",
        TaskState::Started => "STARTED",
        TaskState::Retry => "RETRY",
        TaskState::Success => "SUCCESS",
        TaskState::Failure => "FAILURE",
        TaskState::Revoked => "REVOKED",
    }
}

/// Writes `span`'s trace context into a copy's headers, so the next
/// attempt of a retried task continues the trace under this publish.
pub(crate) fn inject(span: &Span, headers: &mut FieldTable) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if trace_context::has_trace_context(&cx) {
        trace_context::inject(&cx, headers);
    }
}

/// Marks a publish span failed when the broker did not confirm.
pub(crate) fn record_publish(span: &Span, sent: &Result<(), PublishError>) {
    if let (Err(err), false) = (sent, span.is_disabled()) {
        span.set_status(Status::error(err.to_string()));
    }
}

/// Records how handling ended on the process span: the disposition, and
/// for a failure (handler error, panic, time limit, unusable message) the
/// error status, `error.type` and an `exception` event.
pub(crate) fn record_outcome(span: &Span, outcome: &Outcome, task: &str, disposition: Disposition) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("celeriac.disposition", disposition_label(disposition));
    span.set_attribute("celeriac.outcome", outcome.label());
    if let Some(failure) = failure(outcome, task) {
        span.set_attribute("error.type", failure.exc_type.clone());
        span.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", failure.exc_type.clone()),
                KeyValue::new("exception.message", failure.message.clone()),
                KeyValue::new(
                    "exception.stacktrace",
                    failure.traceback.unwrap_or_default(),
                ),
            ],
        );
        span.set_status(Status::error(failure.message));
    }
}

/// The failure of an outcome that is an error; `None` for success and for
/// an expired task (not run, but not an error either).
fn failure(outcome: &Outcome, task: &str) -> Option<TaskFailure> {
    outcome
        .is_failure()
        .then(|| outcome.failure(task))
        .flatten()
}

fn disposition_label(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::Ack => "ack",
        Disposition::Retry { .. } => "retry",
        Disposition::DeadLetter { .. } => "dead-letter",
    }
}
