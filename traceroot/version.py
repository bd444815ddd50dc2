"""The package version (pyproject reads it from here), as sent in headers and span attributes."""

__version__ = "0.6.0"

SDK_NAME = "traceroot-py"
