"""Celery 5.7's remote control and event receiver against a celeriac
worker.

Used by tests/tests/remote_control.rs. The broker URL comes from
CELERIAC_BROKER_URL. Prints one line per check, `<name> <json>`.
"""

import json
import os
import threading

from celery import Celery

app = Celery(
    "control_client",
    broker=os.environ["CELERIAC_BROKER_URL"],
    backend="rpc://",
)
# A failure guard, not a timing check.
GUARD = 30


def show(name, value):
    print(name, json.dumps(value, sort_keys=True), flush=True)


inspect = app.control.inspect(timeout=5)
pings = inspect.ping() or {}
show("ping", pings)
(hostname,) = [name for name in pings if name.startswith("celeriac-worker")]
show("hostname", hostname)
only = app.control.inspect(timeout=5, destination=[hostname])
show("registered", (only.registered() or {}).get(hostname))
stats = (only.stats() or {}).get(hostname, {})
show("max_concurrency", stats.get("pool", {}).get("max-concurrency"))
queues = (only.active_queues() or {}).get(hostname, [])
show("active_queues", sorted(q["name"] for q in queues))
show("active", (only.active() or {}).get(hostname))
show("unknown", app.control.broadcast("no_such_command", reply=True, timeout=5, destination=[hostname]))
show("other_worker", app.control.ping(timeout=1, destination=["nobody@nowhere"]))

seen = []
done = threading.Event()


def on_event(event):
    seen.append(event)
    if event.get("type") == "task-succeeded":
        done.set()


with app.connection() as connection:
    receiver = app.events.Receiver(connection, handlers={"*": on_event})
    ready = threading.Event()
    consume_ready = receiver.on_consume_ready

    def on_consume_ready(*args, **kwargs):
        consume_ready(*args, **kwargs)
        ready.set()

    receiver.on_consume_ready = on_consume_ready
    capture = threading.Thread(
        target=lambda: receiver.capture(limit=None, timeout=GUARD, wakeup=False),
        daemon=True,
    )
    capture.start()
    if not ready.wait(GUARD):
        raise SystemExit("the event receiver never consumed")
    show("enable_events", app.control.enable_events(reply=True, timeout=5, destination=[hostname]))
    result = app.send_task("demo.add", args=[2, 3])
    show("result", result.get(timeout=GUARD))
    done.wait(GUARD)
    receiver.should_stop = True
    mine = [e for e in seen if e.get("uuid") == result.id]
    show("task_events", [e["type"] for e in mine])
    succeeded = [e for e in mine if e["type"] == "task-succeeded"]
    show("succeeded", {k: succeeded[0].get(k) for k in ("result", "hostname")} if succeeded else None)
    show("common_fields", sorted({k for e in mine for k in ("timestamp", "hostname", "utcoffset", "pid", "clock") if k in e}))

show("disable_events", app.control.disable_events(reply=True, timeout=5, destination=[hostname]))
app.control.broadcast("shutdown", destination=[hostname])
show("shutdown_sent", True)
