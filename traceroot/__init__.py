"""traceroot: tracing for AI agents, wire-compatible with TraceRoot.

import traceroot
from traceroot import observe

traceroot.initialize()

@observe(type="agent")
def run(query: str) -> str: ...
"""

from traceroot.client import (
    TraceRootClient,
    auto_initialize,
    flush,
    get_client,
    initialize,
    shutdown,
)
from traceroot.integrations import Integration
from traceroot.observe import observe
from traceroot.redaction import Redact
from traceroot.span_kind import SpanKind
from traceroot.trace_attributes import using_attributes
from traceroot.updates import (
    get_current_span_id,
    get_current_trace_id,
    update_current_span,
    update_current_trace,
)
from traceroot.version import __version__

# The reference SDK spells the class this way; programs written for it keep working.
TracerootClient = TraceRootClient

__all__ = [
    "Integration",
    "Redact",
    "SpanKind",
    "TraceRootClient",
    "TracerootClient",
    "__version__",
    "auto_initialize",
    "flush",
    "get_client",
    "get_current_span_id",
    "get_current_trace_id",
    "initialize",
    "observe",
    "shutdown",
    "update_current_span",
    "update_current_trace",
    "using_attributes",
]
