"""The Celery side of celeriac-bench: an app with the no-op task and the
two tasks of the workflow measurements.

The bench binary runs this module as a worker:

    CELERIAC_BROKER_URL=amqp://... python -m celery -A benchtasks worker \
        -Q <queue> -P threads -c 64 --prefetch-multiplier 4

and imports it from publish.py, round_trips.py and workflows.py. Settings
match celeriac's: every publish is confirmed by the broker
(`confirm_publish`), tasks are acknowledged after they ran
(`task_acks_late`), and results go back over `rpc://`, unless
CELERIAC_RESULT_BACKEND names another backend: chords need one that joins
them, such as Redis (`redis://127.0.0.1:6379/`), for the worker and the
caller alike.
"""

import os

from celery import Celery

app = Celery(
    "benchtasks",
    broker=os.environ["CELERIAC_BROKER_URL"],
    backend=os.environ.get("CELERIAC_RESULT_BACKEND", "rpc://"),
)
app.conf.update(
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Results in Redis are read once, right away; no need to keep them.
    result_expires=600,
)


@app.task(name="bench.noop")
def noop(payload=None):
    """Does nothing; `payload` only gives the message its size."""
    return None


@app.task(name="bench.incr")
def incr(n):
    """`n + 1`: the step of a chain and a chord's header task."""
    return n + 1


@app.task(name="bench.total")
def total(values):
    """The sum of `values`: a chord's body."""
    return sum(values)
