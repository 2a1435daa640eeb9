//! The SERVER span of each HTTP request, continuing the client's trace
//! when the request carries a W3C `traceparent` header.

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use celeriac_shared::trace_context;
use opentelemetry_http::HeaderExtractor;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnRequest, MakeSpan, OnResponse, TraceLayer};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// tower-http's trace layer with OpenTelemetry's HTTP conventions.
pub(crate) fn layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, DefaultOnRequest, RequestSpan>
{
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_response(RequestSpan)
}

/// Makes and completes the request's span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(request.uri().path(), MatchedPath::as_str);
        let method = request.method();
        let span = tracing::info_span!(
            "HTTP request",
            "otel.name" = format_args!("{method} {route}"),
            "otel.kind" = "server",
            "otel.status_code" = Empty,
            "http.request.method" = %method,
            "http.route" = route,
            "url.path" = request.uri().path(),
            "http.response.status_code" = Empty,
        );
        if !span.is_disabled() {
            let client = trace_context::extract_from(&HeaderExtractor(request.headers()));
            if trace_context::has_trace_context(&client) {
                // Fails only without an OpenTelemetry layer: nothing to continue then.
                let _ = span.set_parent(client);
            }
        }
        span
    }
}

impl<B> OnResponse<B> for RequestSpan {
    fn on_response(self, response: &Response<B>, latency: std::time::Duration, span: &Span) {
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
        tracing::debug!(status = status.as_u16(), ?latency, "answered");
    }
}
