"""``python -m traceroot.cli``: the same as ``traceroot-run``."""

from traceroot.cli.main import run

run()
