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

import os
import sys

from traceroot import _settings
from traceroot.version import __version__

# Before anything imports OpenTelemetry, whose SDK fails to import on a bad span limit and
# whose API on a propagator that is not installed.
if not _settings.tracing_disabled():
    _settings.drop_unusable_limits()
    if "OTEL_PROPAGATORS" in os.environ:
        from traceroot import _propagation

        _propagation.drop_unknown_propagators()

# Not `typing.TYPE_CHECKING`: the start-up hook imports this package in every traced
# process, and `typing` costs milliseconds to import.
TYPE_CHECKING = False

_EXPORTS = {
    "TraceRootClient": "traceroot._client",
    "TracerootClient": "traceroot._client",
    "auto_initialize": "traceroot._client",
    "flush": "traceroot._client",
    "get_client": "traceroot._client",
    "initialize": "traceroot._client",
    "shutdown": "traceroot._client",
    "Integration": "traceroot._integrations",
    "observe": "traceroot._observe",
    "Redact": "traceroot._export",
    "SpanKind": "traceroot._span_kind",
    "using_attributes": "traceroot._trace_attributes",
    "get_current_span_id": "traceroot._updates",
    "get_current_trace_id": "traceroot._updates",
    "update_current_span": "traceroot._updates",
    "update_current_trace": "traceroot._updates",
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
    from typing import Any

    from traceroot._client import (
        TraceRootClient,
        TracerootClient,
        auto_initialize,
        flush,
        get_client,
        initialize,
        shutdown,
    )
    from traceroot._export import Redact
    from traceroot._integrations import Integration
    from traceroot._observe import observe
    from traceroot._span_kind import SpanKind
    from traceroot._trace_attributes import using_attributes
    from traceroot._updates import (
        get_current_span_id,
        get_current_trace_id,
        update_current_span,
        update_current_trace,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'traceroot' has no attribute {name!r}")
    __import__(module)  # not importlib.import_module: `importlib` loads `warnings`
    value = getattr(sys.modules[module], name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
