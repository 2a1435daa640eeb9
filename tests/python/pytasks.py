"""A Celery app with two tasks for celeriac's producer to call.

Run as a worker by tests/tests/python_interop.rs:

    CELERIAC_BROKER_URL=amqp://... python -m celery -A pytasks worker -P solo -Q celery

Results go back over rpc://, to the reply queue named in each message.
"""

import os

from celery import Celery

app = Celery("pytasks", broker=os.environ["CELERIAC_BROKER_URL"])
app.conf.result_backend = "rpc://"


@app.task(name="py.add")
def add(x, y):
    """Returns x + y."""
    return x + y


@app.task(name="py.fail")
def fail(message):
    """Always raises ValueError(message)."""
    raise ValueError(message)


@app.task(name="py.echo")
def echo(*args):
    """Returns its positional arguments: what an errback was called with."""
    return list(args)


@app.task(name="py.tsum")
def tsum(values):
    """Returns the sum of a list: a chord body in Python."""
    return sum(values)
