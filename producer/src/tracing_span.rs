//! The PRODUCER span of a publish, and the trace context it puts on the
//! message.
//!
//! Without a subscriber that wants these spans (no OpenTelemetry layer),
//! the span is disabled: no field is formatted and the message's headers
//! are not touched.

use celeriac_shared::trace_context::{self, DestinationName};
use celeriac_shared::{Destination, MESSAGING_SPAN_TARGET, TaskMessage};
use lapin::BasicProperties;
use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Error;

/// A `publish <destination>` span for `message`, a child of the current
/// span (an HTTP request's, say). The destination is recorded once routing
/// chose it ([`record_destination`]).
pub(crate) fn publish(message: &TaskMessage) -> Span {
    tracing::info_span!(
        target: MESSAGING_SPAN_TARGET,
        "publish",
        "otel.name" = Empty,
        "otel.kind" = "producer",
        "messaging.system" = "rabbitmq",
        "messaging.operation.name" = "publish",
        "messaging.operation.type" = "send",
        "messaging.destination.name" = Empty,
        "messaging.rabbitmq.destination.routing_key" = Empty,
        "messaging.message.id" = message.id(),
        "celery.task_name" = message.task(),
        "celery.retries" = message.headers.retries,
    )
}

/// Names the span after the exchange and routing key the message goes to.
pub(crate) fn record_destination(span: &Span, destination: &Destination) {
    let name = DestinationName {
        exchange: &destination.exchange,
        routing_key: &destination.routing_key,
    };
    span.record("otel.name", format_args!("publish {name}"));
    span.record("messaging.destination.name", tracing::field::display(name));
    span.record(
        "messaging.rabbitmq.destination.routing_key",
        destination.routing_key.as_str(),
    );
}

/// The properties with the span's trace context added to their headers
/// (`traceparent`, and `tracestate` and `baggage` when present); unchanged
/// when the span is disabled or has no trace context.
pub(crate) fn inject(span: &Span, properties: BasicProperties) -> BasicProperties {
    if span.is_disabled() {
        return properties;
    }
    let cx = span.context();
    if !trace_context::has_trace_context(&cx) {
        return properties;
    }
    let mut headers = properties.headers().clone().unwrap_or_default();
    trace_context::inject(&cx, &mut headers);
    properties.with_headers(headers)
}

/// Marks the span failed when the publish was not confirmed.
pub(crate) fn record_result(span: &Span, result: &Result<(), Error>) {
    let Err(err) = result else { return };
    if span.is_disabled() {
        return;
    }
    span.set_attribute("error.type", error_type(err));
    span.add_event(
        "exception",
        vec![
            KeyValue::new("exception.type", error_type(err)),
            KeyValue::new("exception.message", err.to_string()),
        ],
    );
    span.set_status(Status::error(err.to_string()));
}

/// A low-cardinality name for the failure, for `error.type`.
fn error_type(err: &Error) -> &'static str {
    match err {
        Error::Connect { .. } => "connect",
        Error::Pool(_) => "pool",
        Error::Amqp { .. } => "amqp",
        Error::Codec(_) => "codec",
        Error::Unroutable { .. } => "unroutable",
        Error::Nacked { .. } => "nacked",
        Error::DuplicateTaskId { .. } => "duplicate_task_id",
        Error::Unconfirmed { .. } => "unconfirmed",
        Error::Stalled { .. } => "stalled",
        Error::Timeout { .. } => "timeout",
        Error::Workflow(_) => "workflow",
        Error::EmptyWorkflow { .. } => "empty_workflow",
        Error::HolderUnknown { .. } => "holder_unknown",
        Error::NoNamedReplyQueue => "no_named_reply_queue",
    }
}
