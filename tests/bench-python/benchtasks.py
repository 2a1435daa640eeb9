"""The Celery side of celeriac-bench: an app with the no-op task.

The bench binary runs this module as a worker:

    CELERIAC_BROKER_URL=amqp://... python -m celery -A benchtasks worker \
        -Q <queue> -P threads -c 64 --prefetch-multiplier 4

and imports it from publish.py and round_trips.py. Settings match
celeriac's: every publish is confirmed by the broker (`confirm_publish`),
tasks are acknowledged after they ran (`task_acks_late`), and results go
back over `rpc://`.
"""

import os

from celery import Celery

app = Celery(
    "benchtasks",
    broker=os.environ["CELERIAC_BROKER_URL"],
    backend="rpc://",
)
app.conf.update(
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name="bench.noop")
def noop(payload=None):
    """Does nothing; `payload` only gives the message its size."""
    return None
