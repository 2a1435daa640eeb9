"""Takes one message off the `celery` queue with kombu, unacknowledged by
any Celery machinery, and prints it as JSON.

Used by tests/tests/python_interop.rs. The broker URL comes from
CELERIAC_BROKER_URL. Prints `{"headers", "properties", "delivery_info",
"body"}` with the body decoded as UTF-8 text; exits 1 if the queue is empty.
"""

import json
import os
import sys

from kombu import Connection

with Connection(os.environ["CELERIAC_BROKER_URL"]) as connection:
    message = connection.channel().basic_get("celery", no_ack=True)
    if message is None:
        print("the celery queue is empty", file=sys.stderr)
        sys.exit(1)
    properties = dict(message.properties)
    headers = properties.pop("application_headers", {})
    body = message.body
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    delivery_info = {
        key: message.delivery_info.get(key) for key in ("exchange", "routing_key")
    }
    print(
        json.dumps(
            {
                "headers": headers,
                "properties": properties,
                "delivery_info": delivery_info,
                "body": body,
            },
            default=repr,
        )
    )
