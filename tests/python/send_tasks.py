"""Sends demo.add twice with Celery's own client and no result backend.

Used by tests/tests/python_interop.rs. The broker URL comes from
CELERIAC_BROKER_URL. The first call is positional and leaves the result
settings at Celery's defaults (a reply_to nobody listens on); the second
passes keyword arguments with ignore_result=True. Both go to Celery's
default queue `celery`, which kombu declares as part of publishing.
"""

import os

from celery import Celery

app = Celery("send_tasks", broker=os.environ["CELERIAC_BROKER_URL"])

positional = app.send_task("demo.add", args=[2, 3])
print(f"sent positional {positional.id}", flush=True)
keywords = app.send_task("demo.add", kwargs={"x": 4, "y": 5}, ignore_result=True)
print(f"sent keywords {keywords.id}", flush=True)
