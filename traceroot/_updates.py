"""Changing the current span and trace from inside traced code, and reading their ids."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

from traceroot import _attributes as attr
from traceroot._client import get_client
from traceroot._errors import in_words
from traceroot._serialize import as_id, as_tags, to_json, to_output_value

logger = logging.getLogger("traceroot")


def _recording_span(caller: str) -> trace.Span | None:
    span = trace.get_current_span()
    if not span.is_recording():
        logger.debug("traceroot: %s() called with no recording span; ignored", caller)
        return None
    return span


def update_current_span(
    name: str | None = None,
    input: Any = None,  # noqa: A002 - the documented parameter name
    output: Any = None,
    metadata: dict[str, Any] | None = None,
    model: str | None = None,
    model_parameters: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    prompt: Any = None,
    cost: float | None = None,
) -> None:
    """Set name, input/output, metadata and LLM details on the current span."""
    span = _recording_span("update_current_span")
    if span is None:
        return
    try:
        limit = get_client().config.max_attribute_length
        if name is not None:
            span.update_name(str(name))
        if input is not None:
            span.set_attribute(attr.SPAN_INPUT, to_output_value(input, limit))
        if output is not None:
            span.set_attribute(attr.SPAN_OUTPUT, to_output_value(output, limit))
        if metadata is not None:
            span.set_attribute(attr.SPAN_METADATA, to_json(metadata, limit))
        if model is not None:
            span.set_attribute(attr.LLM_MODEL, str(model))
        if model_parameters is not None:
            span.set_attribute(attr.LLM_MODEL_PARAMETERS, to_json(model_parameters, limit))
        if usage is not None:
            span.set_attribute(attr.LLM_USAGE, to_json(usage, limit))
        if prompt is not None:
            span.set_attribute(
                attr.LLM_PROMPT, prompt if isinstance(prompt, str) else to_json(prompt, limit)
            )
        if cost is not None:
            try:
                total = float(cost)
            except (TypeError, ValueError):
                logger.warning(
                    "traceroot: update_current_span(cost=...) takes a number (the cost in USD); "
                    "got a %s, not set",
                    type(cost).__name__,
                )
            else:
                span.set_attribute(attr.LLM_COST_TOTAL, total)
    except Exception as exc:  # a bad value must not break the traced code
        logger.warning("traceroot: update_current_span() failed (%s)", in_words(exc))


def update_current_trace(
    user_id: str | None = None,
    session_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
) -> None:
    """Set the trace's user, session, metadata and tags (stamped on the current span)."""
    span = _recording_span("update_current_trace")
    if span is None:
        return
    try:
        if user_id is not None:
            span.set_attribute(attr.TRACE_USER_ID, as_id(user_id))
        if session_id is not None:
            span.set_attribute(attr.TRACE_SESSION_ID, as_id(session_id))
        if metadata is not None:
            span.set_attribute(
                attr.TRACE_METADATA, to_json(metadata, get_client().config.max_attribute_length)
            )
        if tags is not None:
            span.set_attribute(attr.TRACE_TAGS, as_tags(tags))
    except Exception as exc:
        logger.warning("traceroot: update_current_trace() failed (%s)", in_words(exc))


def get_current_trace_id() -> str | None:
    """The current trace id as 32 hex digits, or None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def get_current_span_id() -> str | None:
    """The current span id as 16 hex digits, or None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else None
