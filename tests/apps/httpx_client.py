"""Calls the service inside an @observe span: the HTTP call carries the trace context."""

import sys

import httpx

from traceroot import observe


@observe(name="client")
def call(url: str) -> int:
    return httpx.get(url).status_code


print(call(sys.argv[1]))
