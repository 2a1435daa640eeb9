"""Sends demo.add with apply_async(countdown=2) from Celery's own client.

Used by tests/tests/python_interop.rs. On Celery's default classic queue
Celery publishes the task straight to the queue with an `eta` header and
expects the worker to wait; a celeriac worker moves it into the shared
delay topology instead of holding it. Prints the send time (epoch seconds).
"""

import os
import time

from celery import Celery

app = Celery("send_countdown", broker=os.environ["CELERIAC_BROKER_URL"])
sig = app.signature("demo.add", args=(20, 22))
sent = time.time()
result = sig.apply_async(countdown=2, ignore_result=True)
print(f"sent {result.id} at {sent}", flush=True)
