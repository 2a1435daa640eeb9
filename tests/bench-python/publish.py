"""Publishes N `bench.noop` tasks with Celery's `send_task`, each one
confirmed by the broker, and reports how long that took.

Usage: python publish.py QUEUE N PAYLOAD_BYTES [COUNTDOWN_SECONDS]

With a countdown, every task is due that many seconds later (Celery sets
its `eta`; on a classic queue the worker holds such tasks in memory).

Prints `started` just before the first publish (the bench times end to end
runs from there) and `elapsed <seconds>` after the last confirm.
"""

import sys
import time

from benchtasks import app


def main():
    queue, n, payload_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kwargs = {"payload": "x" * payload_bytes}
    countdown = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    options = {"countdown": countdown} if countdown else {}
    # Connect before the clock starts, as the Rust publishers do.
    with app.connection_for_write() as connection:
        connection.ensure_connection()
    print("started", flush=True)
    start = time.perf_counter()
    for _ in range(n):
        app.send_task(
            "bench.noop", kwargs=kwargs, queue=queue, ignore_result=True, **options
        )
    print(f"elapsed {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
