"""Calls `bench.noop` sequentially and waits for each result over
`rpc://`, as `producer.call` does in celeriac.

Usage: python round_trips.py QUEUE WARMUP CALLS PAYLOAD_BYTES

Prints one line: a JSON list of the latencies of the last CALLS calls, in
microseconds (the WARMUP calls before them are not timed).
"""

import json
import sys
import time

from benchtasks import app


def main():
    queue, warmup, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kwargs = {"payload": "x" * int(sys.argv[4])}
    latencies = []
    for call in range(warmup + calls):
        start = time.perf_counter()
        app.send_task("bench.noop", kwargs=kwargs, queue=queue).get(timeout=60)
        if call >= warmup:
            latencies.append(round((time.perf_counter() - start) * 1e6))
    print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main()
