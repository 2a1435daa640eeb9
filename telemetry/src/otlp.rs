//! The OTLP/HTTP trace pipeline, configured from the standard `OTEL_*`
//! environment variables.

use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;

use crate::Error;

/// Whether spans are to be exported: an OTLP endpoint is configured and
/// neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says
/// otherwise.
pub(crate) fn enabled(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|value| !value.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter =
        var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled && !no_exporter
}

/// A tracer provider exporting in batches over OTLP/HTTP (protobuf) to the
/// endpoint of the `OTEL_EXPORTER_OTLP_*` variables. The service name is
/// `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`),
/// else `default_service`.
pub(crate) fn provider(default_service: &'static str) -> Result<SdkTracerProvider, Error> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .map_err(Error::Exporter)?;
    let mut resource = Resource::builder();
    if !service_name_configured(|name| std::env::var(name).ok()) {
        resource = resource.with_service_name(default_service);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

/// Whether the environment names the service itself.
fn service_name_configured(var: impl Fn(&str) -> Option<String>) -> bool {
    var("OTEL_SERVICE_NAME").is_some_and(|name| !name.trim().is_empty())
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
            attributes
                .split(',')
                .any(|pair| pair.trim_start().starts_with("service.name="))
        })
}

/// What becomes a span or span event: `INFO` and above, except the AMQP
/// client's, the HTTP stack's and the exporter's own (which would feed back
/// into the exporter).
pub(crate) fn filter() -> Targets {
    Targets::new().with_default(LevelFilter::INFO).with_targets(
        [
            "lapin",
            "amq_protocol",
            "hyper",
            "hyper_util",
            "h2",
            "reqwest",
            "tower",
            "opentelemetry",
            "opentelemetry_sdk",
            "opentelemetry_otlp",
            "opentelemetry_http",
        ]
        .map(|target| (target, LevelFilter::OFF)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn export_needs_an_endpoint() {
        assert!(!enabled(env(&[])));
        assert!(!enabled(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(enabled(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://jaeger:4318"
        )])));
        assert!(enabled(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://jaeger:4318/v1/traces"
        )])));
    }

    #[test]
    fn export_can_be_switched_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318");
        assert!(!enabled(env(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])));
        assert!(!enabled(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(enabled(env(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
    }

    #[test]
    fn the_service_name_comes_from_either_variable() {
        assert!(!service_name_configured(env(&[])));
        assert!(service_name_configured(env(&[(
            "OTEL_SERVICE_NAME",
            "api"
        )])));
        assert!(service_name_configured(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod, service.name=api"
        )])));
        assert!(!service_name_configured(env(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod"
        )])));
    }
}
