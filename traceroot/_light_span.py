"""A light recording span for `@observe` calls, when our processor is the only one.

The OpenTelemetry SDK span validates every attribute under a lock, keeps bounded
containers, and copies itself into a new object when it ends: together that is
most of the cost of a traced call. When nothing but our own pipeline will see
the span, this span does the same job with plain containers and is handed to the
pipeline as it is. It is a full `opentelemetry.trace.Span` (instrumented
libraries nest under it) and a `ReadableSpan` (exporters can read it).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.util import types

logger = logging.getLogger("traceroot")

_UNSET = Status(StatusCode.UNSET)
# bool before int: to isinstance, a bool is an int.
_ARRAY_TYPES = (bool, str, int, float)
# Newer SDKs mark a trace id they generated at random (W3C trace context level 2).
_RANDOM_FLAG = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
# The low 64 bits of a trace id decide ratio sampling (as TraceIdRatioBased does).
_TRACE_ID_LIMIT = (1 << 64) - 1


def clean_value(value: Any) -> types.AttributeValue | None:
    """`value` as an OpenTelemetry attribute value, or None when it cannot be one."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return value  # type: ignore[no-any-return]
    if isinstance(value, _ARRAY_TYPES):  # subclasses, e.g. str enums
        return value  # type: ignore[no-any-return]
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        return None
    items = tuple(value)
    element: type | None = None
    for item in items:
        if item is None:
            continue  # an array may have gaps
        item_kind = next((k for k in _ARRAY_TYPES if isinstance(item, k)), None)
        if item_kind is None or (element is not None and item_kind is not element):
            return None  # an array holds one primitive type
        element = item_kind
    return items  # type: ignore[return-value]


class LightSpan(trace_api.Span, ReadableSpan):
    """A recording span whose finished form is itself: no copy when it ends.

    Like the SDK's own span, it keeps name, status, end time, events and links in
    `ReadableSpan`'s fields, so everything that reads a `ReadableSpan` sees them.
    """

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        tracer: LightTracer,
    ) -> None:
        self._values = attributes
        self._span_context = context
        self._on_end = tracer.on_end
        ReadableSpan.__init__(
            self,
            name=name,
            context=context,
            parent=parent,
            resource=tracer.resource,
            attributes=attributes,
            # Empty tuples until an event or link comes: most spans never get one, and every
            # list is one more object for the garbage collector to walk while spans queue.
            events=(),  # type: ignore[arg-type]
            links=(),
            kind=trace_api.SpanKind.INTERNAL,
            status=_UNSET,
            start_time=time_ns(),
            instrumentation_scope=tracer.scope,
        )

    # --- the span API: what the SDK span does, minus its locks and bounded containers

    def get_span_context(self) -> SpanContext:
        return self._span_context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end_time is not None:
            logger.debug("traceroot: set_attribute(%r) on an ended span; ignored", key)
            return
        cleaned = clean_value(value)
        if cleaned is None or not key:
            logger.warning("traceroot: invalid attribute %r=%r dropped", key, value)
            return
        self._values[key] = cleaned

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end_time is not None:
            return
        cleaned: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            item = clean_value(value)
            if item is not None:
                cleaned[key] = item
        events = self._events
        if not isinstance(events, list):
            events = self._events = []
        events.append(Event(name, cleaned, timestamp or time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is None and context is not None and context.is_valid:
            links = self._links
            if not isinstance(links, list):
                links = self._links = []
            links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return  # OK is final, as in the SDK
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        values: dict[str, Any] = {
            "exception.type": (
                f"{module}.{kind.__qualname__}"
                if module and module != "builtins"
                else kind.__qualname__
            ),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(
                traceback.format_exception(kind, exception, exception.__traceback__)
            ),
            "exception.escaped": str(escaped),
        }
        values.update(attributes or {})
        self.add_event("exception", values, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            logger.debug("traceroot: end() on an ended span; ignored")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._on_end(self)

    @property
    def attribute_values(self) -> dict[str, Any]:
        """The span's own attribute dict (read it, don't change it: use set_attribute)."""
        return self._values


class LightTracer:
    """Starts `LightSpan`s for one provider's resource, ids and our processor."""

    def __init__(
        self,
        resource: Resource,
        scope: InstrumentationScope,
        id_generator: IdGenerator,
        on_end: Callable[[ReadableSpan], None],
        sample_bound: int | None = None,
    ) -> None:
        self.resource = resource
        # TRACEROOT_SAMPLE_RATE's trace-id cut-off (None: every new trace is kept).
        self._sample_bound = sample_bound
        self.scope = scope
        self.on_end = on_end
        self._new_span_id = id_generator.generate_span_id
        self._new_trace_id = id_generator.generate_trace_id
        is_random = getattr(id_generator, "is_trace_id_random", None)
        random_flag = _RANDOM_FLAG if is_random is not None and is_random() else 0
        self._root_flags = TraceFlags(TraceFlags.SAMPLED | random_flag)

    def start_span(
        self, name: str, attributes: dict[str, Any], parent: SpanContext
    ) -> trace_api.Span:
        """A span under `parent` (an invalid context: a root), non-recording when not sampled.

        `attributes` must hold valid attribute values already; the span keeps the dict.
        The provider's sampler is parent-based (the default, or TRACEROOT_SAMPLE_RATE's), so
        an unsampled parent means an unsampled child: a bare context, no span object.
        """
        if not parent.is_valid:
            trace_id = self._new_trace_id()
            bound = self._sample_bound
            if bound is not None and trace_id & _TRACE_ID_LIMIT >= bound:
                flags = TraceFlags(self._root_flags & ~TraceFlags.SAMPLED)
                unsampled = SpanContext(trace_id, self._new_span_id(), False, flags)
                return trace_api.NonRecordingSpan(unsampled)
            context = SpanContext(trace_id, self._new_span_id(), False, self._root_flags)
            return LightSpan(name, context, None, attributes, self)
        if not parent.trace_flags.sampled:
            return trace_api.NonRecordingSpan(
                SpanContext(
                    parent.trace_id,
                    self._new_span_id(),
                    False,
                    parent.trace_flags,
                    parent.trace_state,
                )
            )
        context = SpanContext(
            parent.trace_id, self._new_span_id(), False, parent.trace_flags, parent.trace_state
        )
        return LightSpan(name, context, parent, attributes, self)
