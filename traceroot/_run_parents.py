"""The context a new span starts in, when a framework's run is closer than the current span.

OpenInference's LangChain tracer keeps each run's span out of the OpenTelemetry context
(on purpose: callbacks give no safe place to detach it), so a function traced inside a
LangChain runnable or a LangGraph node would otherwise nest under whatever span was current
when the graph started, beside the node that called it. An integration that knows its
framework's current run registers a `RunSpan` here; a span started without an explicit
context then goes under that run's span when it started after the current span (it is the
innermost of the two).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry import context as context_api
from opentelemetry import trace

logger = logging.getLogger("traceroot")

RunSpan = Callable[[], "trace.Span | None"]
"""The span of the framework run the calling code runs in, if any."""

_run_spans: list[RunSpan] = []


def register(run_span: RunSpan) -> None:
    """Consult `run_span` for every span started without an explicit context."""
    if run_span not in _run_spans:
        _run_spans.append(run_span)


def unregister(run_span: RunSpan) -> None:
    """Stop consulting `run_span` (its integration was turned off)."""
    if run_span in _run_spans:
        _run_spans.remove(run_span)


def current_context() -> context_api.Context:
    """The current context, with the innermost live framework run's span current in it."""
    context = context_api.get_current()
    if not _run_spans:
        return context
    try:
        current = innermost = trace.get_current_span(context)
        if current.is_recording():
            started = getattr(current, "start_time", None)
        elif current.get_span_context().is_valid and not current.get_span_context().is_remote:
            # A stand-in for a live span (a repeated LLM span stepping aside for the one a
            # run made) or an unsampled span: it was made inside whatever run is current.
            return context
        else:
            started = None  # no span, or the remote parent the process started under
        for run_span in _run_spans:
            span = run_span()
            if span is None or span is innermost or not span.is_recording():
                continue
            run_started = getattr(span, "start_time", None)
            if run_started is None:
                continue
            # A current span started after the run is inside it (ours, or a library's).
            if started is None or run_started > started:
                innermost, started = span, run_started
        if innermost is current:
            return context
        return trace.set_span_in_context(innermost, context)
    except Exception as exc:  # the span still starts, under the current span
        logger.debug("traceroot: finding a framework run's span failed: %r", exc)
        return context
