"""traceroot as an OpenTelemetry distro.

``OTEL_PYTHON_DISTRO=traceroot opentelemetry-instrument python app.py`` initializes
traceroot from the ``TRACEROOT_*`` variables, and the instrumentors that
``opentelemetry-instrument`` loads send their spans through traceroot's provider.
"""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from traceroot import _integrations as integrations

_CONFIGURATOR = "OTEL_PYTHON_CONFIGURATOR"


class TracerootDistro(BaseDistro):
    """Initializes traceroot when ``opentelemetry-instrument`` starts."""

    _initialized = False

    def _configure(self, **kwargs: Any) -> None:
        import traceroot

        self._initialized = traceroot.auto_initialize() is not None
        if self._initialized:
            # traceroot has installed the tracer provider and exporter. Naming a configurator
            # that no package registers keeps a default one (opentelemetry-distro's) from
            # installing a second provider and exporter; a user's own choice is kept.
            os.environ.setdefault(_CONFIGURATOR, "traceroot")

    def load_instrumentor(self, entry_point: importlib.metadata.EntryPoint, **kwargs: Any) -> None:
        """Activate one instrumentor: lazily, on traceroot's provider, when traceroot is on."""
        if not self._initialized:
            super().load_instrumentor(entry_point, **kwargs)
            return
        if not integrations._enabled(integrations._ENV_OTEL_INSTRUMENTORS):
            return
        provider = integrations._state.provider or trace.get_tracer_provider()
        integrations.activate_otel_entry_point(entry_point, provider, **kwargs)
