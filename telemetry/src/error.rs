//! The telemetry error type.

/// Why logs or trace export could not be set up or flushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The OTLP exporter could not be built from the `OTEL_*` variables
    /// (an invalid endpoint, say).
    #[error("cannot set up the OTLP trace exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// Flushing or shutting down the trace pipeline failed (the collector
    /// did not answer in time, say); some spans may be lost.
    #[error("cannot flush the pending spans")]
    Flush(#[source] opentelemetry_sdk::error::OTelSdkError),
    /// A global `tracing` subscriber was already installed.
    #[error("a tracing subscriber is already installed")]
    SubscriberInstalled(#[source] tracing_subscriber::util::TryInitError),
    /// A log format other than `human` or `json`.
    #[error("unknown log format `{0}` (expected `human` or `json`)")]
    UnknownLogFormat(String),
}
