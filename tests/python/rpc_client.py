"""Calls celeriac's demo tasks through Celery's rpc:// result backend.

Used by tests/tests/python_interop.rs. The broker URL comes from
CELERIAC_BROKER_URL. Prints one line per call: `<name> ok <repr of the
result>` (so an int prints as digits, a float would not) or `<name> raised
<exception type>: <message>`.
"""

import os

from celery import Celery

app = Celery(
    "rpc_client",
    broker=os.environ["CELERIAC_BROKER_URL"],
    backend="rpc://",
)


def call(name, *args):
    result = app.send_task(name, args=list(args))
    try:
        # A failure guard, not a timing check: under a loaded machine the
        # flaky task's two trips through the delay queues can take a while.
        value = result.get(timeout=30)
    except Exception as exc:  # the task's failure, rebuilt by Celery
        return f"raised {type(exc).__name__}: {exc}"
    return f"ok {value!r}"


print("add", call("demo.add", 2, 3), flush=True)
print("fail", call("demo.fail", "boom from rust"), flush=True)
print("sum_range", call("demo.sum_range", 1, 10_000_000_000), flush=True)
print("flaky", call("demo.flaky", 2), flush=True)
