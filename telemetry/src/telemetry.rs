//! The installed subscriber and the trace pipeline behind it.

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{Error, Logs, otlp};

/// The process's logging and tracing, installed once at start-up.
///
/// Keep it until the end of `main` and call [`Telemetry::shutdown`] there:
/// spans are exported in batches, and the last batch is only sent then.
#[derive(Debug)]
#[must_use = "dropping Telemetry without shutdown() may lose the last spans"]
pub struct Telemetry {
    /// The OTLP pipeline; `None` when no endpoint is configured.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global `tracing` subscriber: log lines as `logs` says,
    /// and OTLP export when the environment configures an endpoint (see the
    /// [crate] docs). `service` is the `service.name` unless
    /// `OTEL_SERVICE_NAME` names another.
    pub fn init(service: &'static str, logs: Logs) -> Result<Self, Error> {
        let provider = match otlp::enabled(|name| std::env::var(name).ok()) {
            true => Some(otlp::provider(service)?),
            false => None,
        };
        let traces = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("celeriac"))
                .with_filter(otlp::filter())
        });
        tracing_subscriber::registry()
            .with(logs.layer())
            .with(traces)
            .try_init()
            .map_err(Error::SubscriberInstalled)?;
        if provider.is_some() {
            opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
                Box::new(TraceContextPropagator::new()),
                Box::new(BaggagePropagator::new()),
            ]));
        }
        Ok(Self { provider })
    }

    /// Whether spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still pending and stops the exporter. Blocks until
    /// the collector answered or the export timeout
    /// (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default) passed.
    pub fn shutdown(self) -> Result<(), Error> {
        match self.provider {
            Some(provider) => provider.shutdown().map_err(Error::Flush),
            None => Ok(()),
        }
    }
}
