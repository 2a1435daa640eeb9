//! W3C trace context in task message headers.
//!
//! A task message carries its trace as top-level application headers, the
//! way opentelemetry-instrumentation-celery writes and reads them:
//! `traceparent`, `tracestate` (only when not empty) and `baggage` (only
//! when there is some). So a Python Celery producer and a celeriac worker
//! (or the other way round) continue each other's traces.
//!
//! [`inject`] writes an OpenTelemetry [`Context`] into AMQP headers and
//! [`extract`] reads it back; [`inject_json`] and [`extract_json`] do the
//! same on the JSON header map of a decoded message
//! ([`TaskHeaders::extra`](crate::TaskHeaders::extra)). Any other carrier
//! (an HTTP header map, say) works through [`inject_into`] and
//! [`extract_from`].
//!
//! ```
//! use celeriac_shared::trace_context;
//! use lapin::types::FieldTable;
//! use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
//! use opentelemetry::Context;
//!
//! let span = SpanContext::new(
//!     TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
//!     SpanId::from_hex("b7ad6b7169203331").unwrap(),
//!     TraceFlags::SAMPLED,
//!     true,
//!     TraceState::default(),
//! );
//! let mut headers = FieldTable::default();
//! trace_context::inject(&Context::new().with_remote_span_context(span.clone()), &mut headers);
//! assert!(headers.inner().contains_key("traceparent"));
//! assert!(!headers.inner().contains_key("tracestate"), "no empty tracestate");
//!
//! let extracted = trace_context::extract(Some(&headers));
//! assert_eq!(extracted.span().span_context().trace_id(), span.trace_id());
//! ```

use std::fmt;

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use serde_json::{Map, Value};

use crate::strip_delay_prefix;

/// The W3C trace context header: version, trace id, parent span id, flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor-specific trace state header.
pub const TRACESTATE: &str = "tracestate";
/// The W3C baggage header.
pub const BAGGAGE: &str = "baggage";

/// A messaging destination as the OpenTelemetry conventions name it for
/// RabbitMQ: `<exchange>:<routing key>`, with `amq.default` for the
/// default exchange `""` and the delay ladder's 28-digit prefix stripped
/// from the routing key (so span names stay few). Formats lazily: nothing
/// is built unless a span is recorded.
#[derive(Debug, Clone, Copy)]
pub struct DestinationName<'a> {
    /// The exchange published to.
    pub exchange: &'a str,
    /// The routing key used.
    pub routing_key: &'a str,
}

impl fmt::Display for DestinationName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exchange = match self.exchange {
            "" => "amq.default",
            name => name,
        };
        write!(f, "{exchange}:{}", strip_delay_prefix(self.routing_key))
    }
}

/// Whether `cx` has anything to propagate: a valid span context or
/// baggage. Injecting an empty context writes nothing.
pub fn has_trace_context(cx: &Context) -> bool {
    cx.span().span_context().is_valid() || !cx.baggage().is_empty()
}

/// Writes the trace context and baggage of `cx` into any carrier, skipping
/// empty values (the W3C propagator would write an empty `tracestate`).
pub fn inject_into(cx: &Context, injector: &mut dyn Injector) {
    let mut non_empty = NonEmpty(injector);
    TraceContextPropagator::new().inject_context(cx, &mut non_empty);
    BaggagePropagator::new().inject_context(cx, &mut non_empty);
}

/// Reads the trace context and baggage from any carrier into a new
/// [`Context`]; an empty one if the carrier has none (or an invalid one).
pub fn extract_from(extractor: &dyn Extractor) -> Context {
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), extractor);
    BaggagePropagator::new().extract_with_context(&cx, extractor)
}

/// Writes the trace context of `cx` into AMQP application headers, as long
/// strings. Existing trace headers are replaced.
pub fn inject(cx: &Context, headers: &mut FieldTable) {
    inject_into(cx, &mut FieldTableCarrier(headers));
}

/// Reads the trace context from AMQP application headers (long or short
/// string values; anything else is ignored).
pub fn extract(headers: Option<&FieldTable>) -> Context {
    match headers {
        Some(headers) => extract_from(&FieldTableView(headers)),
        None => Context::new(),
    }
}

/// Writes the trace context of `cx` into a JSON header map, such as
/// [`TaskHeaders::extra`](crate::TaskHeaders::extra).
pub fn inject_json(cx: &Context, headers: &mut Map<String, Value>) {
    inject_into(cx, &mut JsonCarrier(headers));
}

/// Reads the trace context from a JSON header map (string values only).
pub fn extract_json(headers: &Map<String, Value>) -> Context {
    extract_from(&JsonView(headers))
}

/// Drops empty values on their way into another injector.
struct NonEmpty<'a>(&'a mut dyn Injector);

impl Injector for NonEmpty<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.set(key, value);
        }
    }
}

struct FieldTableCarrier<'a>(&'a mut FieldTable);

impl Injector for FieldTableCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        let value = AMQPValue::LongString(LongString::from(value.into_bytes()));
        self.0.insert(key.into(), value);
    }
}

struct FieldTableView<'a>(&'a FieldTable);

impl Extractor for FieldTableView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|key| key.as_str()).collect()
    }
}

struct JsonCarrier<'a>(&'a mut Map<String, Value>);

impl Injector for JsonCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), Value::String(value));
    }
}

struct JsonView<'a>(&'a Map<String, Value>);

impl Extractor for JsonView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    /// The traceparent of the W3C specification's example.
    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn remote(trace_state: TraceState) -> Context {
        let span = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            trace_state,
        );
        Context::new().with_remote_span_context(span)
    }

    fn long_string(headers: &FieldTable, key: &str) -> Option<String> {
        match headers.inner().get(key)? {
            AMQPValue::LongString(value) => Some(value.to_string()),
            other => panic!("{key} is not a long string: {other:?}"),
        }
    }

    #[test]
    fn a_span_context_becomes_a_traceparent_header_without_an_empty_tracestate() {
        let mut headers = FieldTable::default();
        inject(&remote(TraceState::default()), &mut headers);
        assert_eq!(long_string(&headers, TRACEPARENT).as_deref(), Some(PARENT));
        assert_eq!(long_string(&headers, TRACESTATE), None);
        assert_eq!(long_string(&headers, BAGGAGE), None);
    }

    #[test]
    fn tracestate_and_baggage_travel_when_present() {
        let state = TraceState::from_key_value([("vendor", "value")]).unwrap();
        let cx = remote(state).with_baggage([KeyValue::new("user", "alice")]);
        let mut headers = FieldTable::default();
        inject(&cx, &mut headers);
        assert_eq!(
            long_string(&headers, TRACESTATE).as_deref(),
            Some("vendor=value")
        );
        assert_eq!(
            long_string(&headers, BAGGAGE).as_deref(),
            Some("user=alice")
        );

        let back = extract(Some(&headers));
        assert_eq!(
            back.span().span_context().trace_state().header(),
            "vendor=value"
        );
        assert_eq!(
            back.baggage().get("user").map(|v| v.to_string()).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn a_python_traceparent_is_read_as_a_remote_parent() {
        let mut headers = FieldTable::default();
        headers.insert(
            TRACEPARENT.into(),
            AMQPValue::LongString(LongString::from(PARENT.as_bytes())),
        );
        headers.insert("task".into(), AMQPValue::LongString("demo.add".into()));
        let cx = extract(Some(&headers));
        let span = cx.span();
        let parent = span.span_context();
        assert!(parent.is_valid() && parent.is_remote() && parent.is_sampled());
        assert_eq!(parent.span_id().to_string(), "b7ad6b7169203331");
    }

    #[test]
    fn missing_or_malformed_headers_give_an_empty_context() {
        assert!(!has_trace_context(&extract(None)));
        assert!(!has_trace_context(&extract(Some(&FieldTable::default()))));
        let mut headers = FieldTable::default();
        headers.insert(
            TRACEPARENT.into(),
            AMQPValue::LongString("00-nonsense".into()),
        );
        assert!(!has_trace_context(&extract(Some(&headers))));
        let mut headers = FieldTable::default();
        headers.insert(TRACEPARENT.into(), AMQPValue::LongLongInt(7));
        assert!(!has_trace_context(&extract(Some(&headers))));
    }

    #[test]
    fn an_empty_context_writes_nothing() {
        let mut headers = FieldTable::default();
        inject(&Context::new(), &mut headers);
        assert!(headers.inner().is_empty());
        assert!(!has_trace_context(&Context::new()));
    }

    #[test]
    fn destinations_are_named_exchange_colon_routing_key() {
        let name = |exchange, routing_key| {
            DestinationName {
                exchange,
                routing_key,
            }
            .to_string()
        };
        assert_eq!(name("", "celery"), "amq.default:celery");
        assert_eq!(name("reports", "reports"), "reports:reports");
        let delayed = format!("{}celery", "0.".repeat(27) + "1.");
        assert_eq!(
            name("celery_delayed_27", &delayed),
            "celery_delayed_27:celery"
        );
    }

    #[test]
    fn json_headers_carry_the_same_context() {
        let mut extra = Map::new();
        inject_json(&remote(TraceState::default()), &mut extra);
        assert_eq!(extra.get(TRACEPARENT).and_then(Value::as_str), Some(PARENT));
        assert!(!extra.contains_key(TRACESTATE));
        let cx = extract_json(&extra);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }
}
