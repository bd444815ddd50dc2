"""A Flask app: each request makes a span whose output is the serving process's pid."""

import os

from flask import Flask

from traceroot import observe

app = Flask(__name__)


@observe(name="handle")
def handle(path: str) -> int:
    return os.getpid()


@app.route("/<path:path>")
def index(path: str) -> str:
    return str(handle(path))
