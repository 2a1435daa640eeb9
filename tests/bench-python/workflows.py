"""Runs Celery's canvas on `bench.incr` and `bench.total` and times it.

Usage:
    python workflows.py chain QUEUE WARMUP CHAINS STEPS
    python workflows.py chord QUEUE SIZE

`chain` sends WARMUP + CHAINS chains of STEPS `bench.incr` calls, starting
from 0, one after another, and waits for each one's result over the
backend (`rpc://` by default). `chord` sends one chord of SIZE
`bench.incr(i)` tasks with `bench.total` as its body and waits for the
body's result; it needs a backend that joins chords (set
CELERIAC_RESULT_BACKEND to a Redis URL, for the worker too). Every task
goes to QUEUE.

Prints one line: a JSON list of latencies in microseconds, those of the
last CHAINS chains, or the chord's alone. Fails if a result is wrong.
"""

import json
import sys
import time

from celery import chain, chord

from benchtasks import app, incr, total


def micros_since(start):
    return round((time.perf_counter() - start) * 1e6)


def chains(queue, warmup, count, steps):
    latencies = []
    for call in range(warmup + count):
        start = time.perf_counter()
        workflow = chain(
            incr.s(0).set(queue=queue),
            *[incr.s().set(queue=queue) for _ in range(steps - 1)],
        )
        result = workflow.apply_async().get(timeout=60)
        elapsed = micros_since(start)
        if result != steps:
            sys.exit(f"a chain of {steps} returned {result}")
        if call >= warmup:
            latencies.append(elapsed)
    return latencies


def one_chord(queue, size):
    # The worker is up and both connections are open before the clock starts.
    incr.apply_async((0,), queue=queue).get(timeout=60)
    header = [incr.s(i).set(queue=queue) for i in range(size)]
    body = total.s().set(queue=queue)
    start = time.perf_counter()
    result = chord(header)(body).get(timeout=600)
    elapsed = micros_since(start)
    expected = size * (size + 1) // 2
    if result != expected:
        sys.exit(f"a chord of {size} summed to {result}, not {expected}")
    return [elapsed]


def main():
    mode, queue = sys.argv[1], sys.argv[2]
    numbers = [int(arg) for arg in sys.argv[3:]]
    if mode == "chain":
        latencies = chains(queue, *numbers)
    elif mode == "chord":
        latencies = one_chord(queue, *numbers)
    else:
        sys.exit(f"unknown mode {mode}: chain or chord")
    print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main()
