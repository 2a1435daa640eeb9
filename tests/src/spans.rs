//! Spans recorded in memory: a global `tracing` subscriber with an
//! OpenTelemetry layer whose exporter keeps every finished span, for tests
//! that assert on trace structure.

use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::Context;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::sync::watch;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::GUARD;

/// Every span finished in this process since [`SpanRecorder::install`].
///
/// Tests in one binary share it; each finds its own spans by task id or
/// trace id.
#[derive(Debug)]
pub struct SpanRecorder {
    spans: Mutex<Vec<SpanData>>,
    /// Bumped on every export, to wake waiters.
    exported: watch::Sender<usize>,
}

/// The exporter handing finished spans to the recorder, synchronously.
#[derive(Debug, Clone)]
struct Recording(&'static SpanRecorder);

impl SpanExporter for Recording {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().extend(batch);
        self.0.exported.send_modify(|n| *n += 1);
        Ok(())
    }
}

impl SpanRecorder {
    /// Installs (once per process) the global subscriber recording spans:
    /// an OpenTelemetry layer exporting each span as it ends, plus log
    /// lines to the test output when `RUST_LOG` is set. Fails if another
    /// global subscriber was installed first.
    pub fn install() -> anyhow::Result<&'static SpanRecorder> {
        static RECORDER: OnceLock<Result<&'static SpanRecorder, String>> = OnceLock::new();
        RECORDER
            .get_or_init(|| {
                let recorder: &'static SpanRecorder = Box::leak(Box::new(SpanRecorder {
                    spans: Mutex::new(Vec::new()),
                    exported: watch::Sender::new(0),
                }));
                let provider = SdkTracerProvider::builder()
                    .with_simple_exporter(Recording(recorder))
                    .build();
                let otel = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("celeriac-tests"))
                    .with_filter(
                        Targets::new()
                            .with_default(LevelFilter::INFO)
                            .with_target("lapin", LevelFilter::OFF),
                    );
                let logs = std::env::var_os("RUST_LOG").map(|_| {
                    tracing_subscriber::fmt::layer()
                        .with_test_writer()
                        .with_filter(tracing_subscriber::EnvFilter::from_default_env())
                });
                tracing_subscriber::registry()
                    .with(otel)
                    .with(logs)
                    .try_init()
                    .map_err(|err| err.to_string())?;
                Ok(recorder)
            })
            .clone()
            .map_err(|err| anyhow::anyhow!("cannot install the span recorder: {err}"))
    }

    /// A copy of every span recorded so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.lock().clone()
    }

    /// Waits up to [`GUARD`] until `find` finds something in the recorded
    /// spans, and returns it.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        find: impl Fn(&[SpanData]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut exported = self.exported.subscribe();
        let wait = async {
            loop {
                exported.borrow_and_update();
                if let Some(found) = find(&self.lock()) {
                    return Ok(found);
                }
                exported.changed().await?;
            }
        };
        tokio::time::timeout(GUARD, wait)
            .await
            .with_context(|| format!("no {what} within {GUARD:?}; spans: {}", self.summary()))?
    }

    /// Waits for the span named `name` whose `messaging.message.id` is
    /// `task_id`.
    pub async fn span_of(&self, name: &str, task_id: &str) -> anyhow::Result<SpanData> {
        let what = format!("span `{name}` for task {task_id}");
        self.wait_for(&what, |spans| {
            spans
                .iter()
                .find(|s| {
                    s.name == name && attribute(s, "messaging.message.id") == Some(task_id.into())
                })
                .cloned()
        })
        .await
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: TraceId) -> Vec<SpanData> {
        self.lock()
            .iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .cloned()
            .collect()
    }

    fn summary(&self) -> String {
        let spans = self.lock();
        let names: Vec<String> = spans
            .iter()
            .rev()
            .take(20)
            .map(|s| format!("{} ({})", s.name, s.span_context.trace_id()))
            .collect();
        format!("{} recorded, latest: {}", spans.len(), names.join(", "))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SpanData>> {
        self.spans
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A span attribute as a string, if it is set.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.as_str().to_owned(),
            other => other.to_string(),
        })
}

/// Whether `child`'s parent is `parent`.
pub fn is_child_of(child: &SpanData, parent: &SpanData) -> bool {
    child.span_context.trace_id() == parent.span_context.trace_id()
        && child.parent_span_id == parent.span_context.span_id()
        && parent.span_context.span_id() != SpanId::INVALID
}
