"""Libraries traceroot can instrument.

registry     the rows: each integration's library, hook module and instrumentor (data)
adapters     integrations that are not a plain OpenInference instrumentor
duplicates   one LLM call, one LLM span: other tracers' repeats step aside
activation   what is requested, hooked and instrumented; activate/deactivate/status
entry_points standard OpenTelemetry instrumentors found by entry point
probe        would each activate here? from metadata only (for --check; imported on demand)
"""

from __future__ import annotations

from traceroot._integrations.activation import activate, current_provider, deactivate, status
from traceroot._integrations.entry_points import (
    activate_otel_entry_point,
    activate_otel_instrumentors,
)
from traceroot._integrations.registry import REGISTRY, Integration, Spec, pip_hint

__all__ = [
    "REGISTRY",
    "Integration",
    "Spec",
    "activate",
    "activate_otel_entry_point",
    "activate_otel_instrumentors",
    "current_provider",
    "deactivate",
    "pip_hint",
    "status",
]
