"""The ``traceroot-run`` launcher; the command itself is ``traceroot.cli.main.main``."""
