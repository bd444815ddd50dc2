"""Where the TraceRoot SDK 0.5.0 keeps `SpanKind` (`from traceroot.constants import SpanKind`).

The same enum as `traceroot.SpanKind`; kept so programs written for 0.5.0 import unchanged.
"""

from traceroot._span_kind import SpanKind

__all__ = ["SpanKind"]
