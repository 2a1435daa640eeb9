"""Celery 5.7's own canvas through celeriac's Rust worker.

Used by tests/tests/workflows.rs. A Rust demo worker serves `demo.*` on
queue `celery`; a Python worker (pytasks.py) serves `py.*` on queue `py`.
The broker URL comes from CELERIAC_BROKER_URL. Prints one line per case:
`<name> ok <repr of the result>` or `<name> raised <type>: <message>`.
"""

import os

from celery import Celery, chain

app = Celery(
    "canvas_client",
    broker=os.environ["CELERIAC_BROKER_URL"],
    backend="rpc://",
)
# A failure guard, not a timing check.
TIMEOUT = 60


def sig(name, *args, **options):
    return app.signature(name, args=args, **options)


def get(result):
    try:
        return f"ok {result.get(timeout=TIMEOUT)!r}"
    except Exception as exc:  # the task's failure, rebuilt by Celery
        return f"raised {type(exc).__name__}: {exc}"


def report(name, result):
    print(name, get(result), flush=True)


report("chain", chain(sig("demo.add", 2, 2), sig("demo.add", 4)).apply_async())
report(
    "mixed_chain",
    chain(
        sig("demo.add", 1, 1),
        sig("py.add", 10, queue="py"),
        sig("demo.add", 100),
    ).apply_async(),
)
report(
    "immutable",
    chain(sig("demo.add", 1, 2), sig("demo.add", 10, 20).set(immutable=True)).apply_async(),
)
report(
    "failing_step",
    chain(
        sig("demo.add", 1, 1),
        sig("demo.fail", "boom in a chain").set(immutable=True),
        sig("demo.add", 1),
    ).apply_async(),
)

callback = sig("demo.add", 1)
callback_result = callback.freeze()
first = sig("demo.add", 20, 22).apply_async(link=callback)
report("link_parent", first)
report("link", callback_result)

errback = sig("py.echo", queue="py")
errback_result = errback.freeze()
failed = sig("demo.fail", "boom for the errback").apply_async(link_error=errback)
report("link_error_parent", failed)
print("failed_id", failed.id, flush=True)
report("link_error", errback_result)
