"""A WSGI app for gunicorn: each request makes a span whose output is the worker pid."""

import os
import time

from traceroot import observe


@observe(name="handle")
def handle(path: str) -> int:
    time.sleep(0.05)  # keep a worker busy so concurrent requests reach the others
    return os.getpid()


def app(environ, start_response):  # type: ignore[no-untyped-def]
    pid = handle(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(pid).encode()]
