"""Adapters for integrations that are not a plain OpenInference instrumentor."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.trace import TracerProvider


class AnthropicInstrumentor:
    """OpenInference's Anthropic instrumentor, with the client's own call spans turned off.

    Recent anthropic releases trace every API call themselves on the global tracer
    provider, which would give two spans per call; the OpenInference one is what the
    backend reads. Clients made with an explicit ``open_telemetry`` option keep it.
    """

    _ENV = "ANTHROPIC_OPEN_TELEMETRY"

    def __init__(self) -> None:
        from openinference.instrumentation.anthropic import AnthropicInstrumentor

        self._inner = AnthropicInstrumentor()
        self._set_env = False

    def instrument(self, tracer_provider: TracerProvider) -> None:
        self._inner.instrument(tracer_provider=tracer_provider)
        if self._ENV not in os.environ:
            os.environ[self._ENV] = "false"
            self._set_env = True

    def uninstrument(self) -> None:
        self._inner.uninstrument()
        if self._set_env:
            os.environ.pop(self._ENV, None)
            self._set_env = False

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return bool(self._inner.is_instrumented_by_opentelemetry)


def _add_span_processor(tracer_provider: TracerProvider, processor: Any) -> None:
    add = getattr(tracer_provider, "add_span_processor", None)
    if add is None:
        raise TypeError(f"{type(tracer_provider).__name__} cannot take span processors")
    add(processor)


class PydanticAIInstrumentor:
    """Turns on Pydantic AI's native spans and reshapes them into OpenInference ones."""

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from openinference.instrumentation.pydantic_ai import OpenInferenceSpanProcessor
        from pydantic_ai import Agent, InstrumentationSettings

        _add_span_processor(tracer_provider, OpenInferenceSpanProcessor())
        Agent.instrument_all(InstrumentationSettings(tracer_provider=tracer_provider))

    def uninstrument(self) -> None:
        from pydantic_ai import Agent

        Agent.instrument_all(False)


class AgentFrameworkInstrumentor:
    """Turns on Agent Framework's native spans and reshapes them into OpenInference ones."""

    def instrument(self, tracer_provider: TracerProvider) -> None:
        from agent_framework.observability import enable_instrumentation
        from openinference.instrumentation.agent_framework import (
            AgentFrameworkToOpenInferenceProcessor,
        )

        _add_span_processor(tracer_provider, AgentFrameworkToOpenInferenceProcessor())
        enable_instrumentation()

    def uninstrument(self) -> None:
        """Agent Framework has no switch back off; its spans stay OpenInference-shaped."""
