//! Where log lines go and which ones.

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, fmt};

use crate::LogFormat;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogWriter {
    /// Standard output (workers, services).
    Stdout,
    /// Standard error (command-line tools whose stdout is their result).
    Stderr,
}

/// How a binary logs: format, destination, and the `EnvFilter` variable
/// read for the filter.
#[derive(Debug, Clone)]
pub struct Logs {
    /// Human-readable or JSON.
    pub format: LogFormat,
    /// Standard output or standard error.
    pub writer: LogWriter,
    /// The environment variable holding the filter, e.g. `RUST_LOG`.
    pub filter_var: &'static str,
    /// The filter when that variable is unset or invalid, e.g.
    /// `info,lapin=warn`.
    pub default_filter: &'static str,
}

impl Logs {
    /// Logs to standard output.
    pub fn stdout(format: LogFormat, filter_var: &'static str, default: &'static str) -> Self {
        Self {
            format,
            writer: LogWriter::Stdout,
            filter_var,
            default_filter: default,
        }
    }

    /// Logs to standard error.
    pub fn stderr(format: LogFormat, filter_var: &'static str, default: &'static str) -> Self {
        Self {
            writer: LogWriter::Stderr,
            ..Self::stdout(format, filter_var, default)
        }
    }

    /// The log layer: events only (spans are for the trace exporter, and
    /// a span nobody but the log layer wanted would cost a little on every
    /// message), filtered by [`Logs::filter_var`].
    pub(crate) fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let filter = EnvFilter::try_from_env(self.filter_var)
            .unwrap_or_else(|_| EnvFilter::new(self.default_filter));
        let events_only = filter_fn(|metadata| metadata.is_event());
        let filter = filter.and(events_only);
        match (self.format, self.writer) {
            (LogFormat::Human, LogWriter::Stdout) => fmt::layer().with_filter(filter).boxed(),
            (LogFormat::Human, LogWriter::Stderr) => fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed(),
            (LogFormat::Json, LogWriter::Stdout) => fmt::layer()
                .json()
                .flatten_event(true)
                .with_filter(filter)
                .boxed(),
            (LogFormat::Json, LogWriter::Stderr) => fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn the_log_layer_alone_leaves_spans_disabled_so_they_cost_nothing() {
        for format in [LogFormat::Human, LogFormat::Json] {
            let logs = Logs::stderr(format, "CELERIAC_TEST_UNSET_FILTER", "trace");
            let subscriber = tracing_subscriber::registry().with(logs.layer());
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!(target: "celeriac::messaging", "process");
                assert!(
                    span.is_disabled(),
                    "{format}: spans are for the exporter only"
                );
                assert!(
                    tracing::event_enabled!(tracing::Level::INFO),
                    "{format}: events are logged"
                );
            });
        }
    }
}
