"""traceroot: tracing for AI agents, wire-compatible with TraceRoot.

    import traceroot
    from traceroot import observe

    traceroot.initialize()

    @observe(type="agent")
    def run(query: str) -> str: ...

Public names load on first use, so `traceroot-run` and the start-up hook pay
only for what they touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from traceroot.version import __version__

_EXPORTS = {
    "TraceRootClient": "traceroot.client",
    "TracerootClient": "traceroot.client",
    "auto_initialize": "traceroot.client",
    "flush": "traceroot.client",
    "get_client": "traceroot.client",
    "initialize": "traceroot.client",
    "shutdown": "traceroot.client",
    "Integration": "traceroot.integrations",
    "observe": "traceroot.observe",
    "Redact": "traceroot.redaction",
    "SpanKind": "traceroot.span_kind",
    "using_attributes": "traceroot.trace_attributes",
    "get_current_span_id": "traceroot.updates",
    "get_current_trace_id": "traceroot.updates",
    "update_current_span": "traceroot.updates",
    "update_current_trace": "traceroot.updates",
}

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

if TYPE_CHECKING:
    from traceroot.client import (
        TraceRootClient,
        TracerootClient,
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'traceroot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
