//! A minimal OTLP/HTTP trace receiver on `127.0.0.1:0`: what a collector
//! such as Jaeger sees from processes started with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::GUARD;

/// One span as received, ids in lower-case hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// The span name.
    pub name: String,
    /// The OTLP span kind (2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// The trace id.
    pub trace_id: String,
    /// The span id.
    pub span_id: String,
    /// The parent's span id; empty for a root span.
    pub parent_span_id: String,
    /// String forms of the attributes.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    updates: watch::Sender<usize>,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Arc<Received>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Listens on a free port of 127.0.0.1 and accepts `POST /v1/traces`
    /// with protobuf bodies.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Received::default());
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(Arc::clone(&received));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            received,
            task,
        })
    }

    /// Waits up to [`GUARD`] until `find` finds something among the spans
    /// received.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        find: impl Fn(&[ReceivedSpan]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut updates = self.received.updates.subscribe();
        let wait = async {
            loop {
                updates.borrow_and_update();
                if let Some(found) = find(&lock(&self.received)) {
                    return Ok(found);
                }
                updates.changed().await?;
            }
        };
        tokio::time::timeout(GUARD, wait).await.with_context(|| {
            format!(
                "no {what} within {GUARD:?}; received: {:#?}",
                lock(&self.received)
            )
        })?
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(received: &Received) -> MutexGuard<'_, Vec<ReceivedSpan>> {
    received
        .spans
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn traces(State(received): State<Arc<Received>>, body: Bytes) -> Response {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let attributes = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        let service = text(&attributes, "service.name").unwrap_or_default();
        for scope in resource_spans.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| {
                ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
                        .collect(),
                }
            }));
        }
    }
    lock(&received).extend(spans);
    received.updates.send_modify(|n| *n += 1);
    let response = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], response).into_response()
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_text(kv.value.as_ref()))
}

fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(n)) => n.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
