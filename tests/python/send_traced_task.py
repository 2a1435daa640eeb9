"""Publishes demo.add from Python Celery inside a span, traced by
opentelemetry-instrumentation-celery.

Used by tests/tests/python_trace_context.rs. The broker URL comes from
CELERIAC_BROKER_URL. The instrumentation wraps the publish in its PRODUCER
span `apply_async/demo.add` and injects its W3C `traceparent` into the
message headers. Prints, one per line: `task_id <id>`, `trace_id <hex>`,
`span_id <hex>` (the publish span) and `span_name <name>`.
"""

import os

from celery import Celery
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
CeleryInstrumentor().instrument()

app = Celery("send_traced_task", broker=os.environ["CELERIAC_BROKER_URL"])
tracer = trace.get_tracer("celeriac-tests")
with tracer.start_as_current_span("python request"):
    result = app.send_task("demo.add", kwargs={"x": 2, "y": 3}, ignore_result=True)

publish = next(s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER)
print(f"task_id {result.id}")
print(f"trace_id {publish.context.trace_id:032x}")
print(f"span_id {publish.context.span_id:016x}")
print(f"span_name {publish.name}")
