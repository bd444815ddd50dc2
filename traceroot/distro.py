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

CONFIGURATOR_VARIABLE = "OTEL_PYTHON_CONFIGURATOR"


class TracerootDistro(BaseDistro):
    """Initializes traceroot when ``opentelemetry-instrument`` starts."""

    _initialized = False
    _instrumentors = True
    _message_spans = False

    def _configure(self, **kwargs: Any) -> None:
        import traceroot

        client = traceroot.auto_initialize()
        self._initialized = client is not None
        if client is not None:
            self._instrumentors = client.config.otel_instrumentors
            self._message_spans = client.config.asgi_message_spans
            # traceroot has installed the provider and exporter: our configurator (which does
            # nothing more) keeps another one, e.g. opentelemetry-distro's, from adding a
            # second pipeline. A configurator the user chose is kept.
            os.environ.setdefault(CONFIGURATOR_VARIABLE, "traceroot")

    def load_instrumentor(self, entry_point: importlib.metadata.EntryPoint, **kwargs: Any) -> None:
        """Activate one instrumentor: lazily, on traceroot's provider, when traceroot is on."""
        if not self._initialized:
            super().load_instrumentor(entry_point, **kwargs)
            return
        if not self._instrumentors:
            return
        provider = integrations.current_provider() or trace.get_tracer_provider()
        integrations.activate_otel_entry_point(
            entry_point, provider, message_spans=self._message_spans, **kwargs
        )


class TracerootConfigurator:
    """The ``opentelemetry_configurator`` named ``traceroot``: the distro has set up tracing."""

    def configure(self, **kwargs: Any) -> None:
        """Nothing to do: `TracerootDistro` initialized traceroot before instrumentors load."""
