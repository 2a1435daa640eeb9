"""A Celery app traced by opentelemetry-instrumentation-celery, for
celeriac's producer to call.

Run as a worker by tests/tests/python_trace_context.rs:

    CELERIAC_BROKER_URL=amqp://... python -m celery -A traced_pytasks worker -P solo -Q celery

Its one task, `py.trace_context`, returns the trace id of the span it runs
in (the instrumentation's `run/py.trace_context`) and that span's parent,
which is the span that published the task.
"""

import os

from celery import Celery
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
CeleryInstrumentor().instrument()

app = Celery("traced_pytasks", broker=os.environ["CELERIAC_BROKER_URL"])
app.conf.result_backend = "rpc://"


@app.task(name="py.trace_context")
def trace_context():
    """Returns the running span's name, trace id and parent span id."""
    span = trace.get_current_span()
    parent = getattr(span, "parent", None)
    return {
        "span_name": getattr(span, "name", None),
        "trace_id": f"{span.get_span_context().trace_id:032x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
    }
