"""Listens to worker events with Celery's own monitor machinery (the event
receiver and `State` that Flower and `celery events` use) and prints, as
JSON, the first worker that a `worker-heartbeat` makes known, then exits.

Used by tests/tests/worker_heartbeats.rs. The broker URL comes from
CELERIAC_BROKER_URL. Gives up (exit 1) after 30 s without a heartbeat.
"""

import json
import os
import sys

from celery import Celery

app = Celery(broker=os.environ["CELERIAC_BROKER_URL"])
state = app.events.State()


def on_heartbeat(event):
    state.event(event)
    worker = state.workers[event["hostname"]]
    print(
        json.dumps(
            {
                "hostname": worker.hostname,
                "alive": worker.alive,
                "status": worker.status_string,
                "active": worker.active,
                "processed": worker.processed,
                "freq": worker.freq,
                "sw_ident": worker.sw_ident,
                "celeriac_queues": event.get("celeriac_queues"),
            }
        ),
        flush=True,
    )
    sys.exit(0)


with app.connection() as connection:
    receiver = app.events.Receiver(
        connection, handlers={"worker-heartbeat": on_heartbeat, "*": state.event}
    )
    try:
        receiver.capture(limit=None, timeout=30, wakeup=False)
    except TimeoutError:
        pass
print("no worker-heartbeat within 30 s", file=sys.stderr)
sys.exit(1)
