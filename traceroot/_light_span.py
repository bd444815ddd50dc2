"""A light recording span for `@observe` calls and for the spans libraries make through our
provider, when our processor is the only one.

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
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from traceroot import _attributes as attr
from traceroot import _compat as compat
from traceroot._errors import exception_message

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


def valid_value(key: Any, value: Any) -> types.AttributeValue | None:
    """`value` as an attribute value under `key`; None, with a warning, when it cannot be."""
    cleaned = clean_value(value)
    if cleaned is None or not isinstance(key, str) or not key:
        # The value is not shown: it may be large, or a secret.
        logger.warning(
            "traceroot: attribute %r dropped: its value, of type %s, is not a valid "
            "attribute value (str, bool, int, float, or a sequence of one of them)",
            key,
            type(value).__name__,
        )
        return None
    return cleaned


class LightSpan(trace_api.Span, ReadableSpan):
    """A recording span whose finished form is itself: no copy when it ends.

    It applies the tracer's `SpanLimits` as the SDK span does (attributes, events and
    links bounded, the oldest dropped and counted) and keeps its mutable state in its
    own fields, read through `ReadableSpan`'s public properties, which it overrides.
    """

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        tracer: LightTracer,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        start_time: int | None = None,
    ) -> None:
        limits = tracer.limits
        if len(attributes) >= limits.max_attributes or limits.value_length is not None:
            attributes, self._dropped_attributes = limits.bound(attributes)
        else:
            self._dropped_attributes = 0
        self._values = attributes
        self._span_context = context
        self._light_name = name
        self._light_status = _UNSET
        self._light_end: int | None = None
        self._tracer = tracer
        # None until an event or link comes: most spans never get one, and every list is
        # one more object for the garbage collector to walk while spans queue.
        self._light_events: list[Event] | None = None
        self._light_links: list[Link] | None = None
        self._dropped_events = self._dropped_links = 0
        ReadableSpan.__init__(
            self,
            name=name,
            context=context,
            parent=parent,
            resource=tracer.resource,
            kind=kind,
            start_time=time_ns() if start_time is None else start_time,
            instrumentation_scope=tracer.scope,
        )

    # --- what ReadableSpan readers see

    @property
    def name(self) -> str:
        return self._light_name

    @property
    def attributes(self) -> types.Attributes:
        return self._values

    @property
    def events(self) -> Sequence[Event]:
        return self._light_events or ()

    @property
    def links(self) -> Sequence[Link]:
        return self._light_links or ()

    @property
    def status(self) -> Status:
        return self._light_status

    @property
    def end_time(self) -> int | None:
        return self._light_end

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    # --- the span API: what the SDK span does, minus its locks

    def get_span_context(self) -> SpanContext:
        return self._span_context

    def is_recording(self) -> bool:
        return self._light_end is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._light_end is not None:
            logger.debug("traceroot: set_attribute(%r) on an ended span; ignored", key)
            return
        cleaned = valid_value(key, value)
        if cleaned is None:
            return
        values = self._values
        limits = self._tracer.limits
        if limits.value_length is not None:
            cleaned = limits.cut(cleaned)
        if key in values:
            del values[key]  # as the SDK's bounded mapping: an update is the newest entry
        elif len(values) >= limits.max_attributes:
            if not values:
                self._dropped_attributes += 1
                return
            # Full: the oldest attribute gives way, as in the SDK, but never one the backend
            # places the span by (its path, stamped first): a long chat's LLM span, with an
            # attribute per message part, would otherwise lose its place in the tree.
            del values[_oldest_giving_way(values)]
            self._dropped_attributes += 1
        values[key] = cleaned

    def set_attribute_once(self, key: str, value: types.AttributeValue) -> None:
        """`set_attribute`, unless `key` is set already (the first value is kept)."""
        if key not in self._values:
            self.set_attribute(key, value)

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._light_end is not None:
            return
        limits = self._tracer.limits
        bounded = limits.bounded(limits.max_event_attributes, attributes)
        event = Event(name, bounded, timestamp or time_ns())
        if self._light_events is None:
            self._light_events = []
        self._dropped_events += _append_bounded(self._light_events, event, limits.max_events)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._light_end is not None or not compat.is_valid_link(context, attributes):
            return
        limits = self._tracer.limits
        link = Link(context, limits.bounded(limits.max_link_attributes, attributes))
        if self._light_links is None:
            self._light_links = []
        self._dropped_links += _append_bounded(self._light_links, link, limits.max_links)

    def update_name(self, name: str) -> None:
        if self._light_end is None:
            self._light_name = name if isinstance(name, str) else str(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._light_end is not None or self._light_status.status_code is StatusCode.OK:
            return  # OK is final, as in the SDK
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._light_status = status

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
            "exception.message": exception_message(exception),
            # Given by the caller (ours is cut to the program's frames): not formatted twice.
            "exception.stacktrace": attributes["exception.stacktrace"]
            if attributes and "exception.stacktrace" in attributes
            else "".join(traceback.format_exception(kind, exception, exception.__traceback__)),
            "exception.escaped": str(escaped),
        }
        values.update(attributes or {})
        self.add_event("exception", values, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._light_end is not None:
            logger.debug("traceroot: end() on an ended span; ignored")
            return
        self._light_end = end_time if end_time is not None else time_ns()
        self._tracer.on_end(self)


class Limits:
    """The SDK's `SpanLimits`, as light spans apply them (read once, at start-up)."""

    def __init__(self, limits: SpanLimits) -> None:
        unbounded = 1 << 62  # the SDK's "no limit" is None; a huge number keeps checks simple
        self.max_attributes: int = _limit(limits.max_span_attributes, unbounded)
        self.max_events: int = _limit(limits.max_events, unbounded)
        self.max_links: int = _limit(limits.max_links, unbounded)
        self.max_event_attributes = limits.max_event_attributes
        self.max_link_attributes = limits.max_link_attributes
        self.value_length: int | None = limits.max_span_attribute_length
        self.event_value_length: int | None = limits.max_attribute_length

    def bounded(self, count: int | None, attributes: types.Attributes) -> BoundedAttributes:
        """An event's or link's attributes under the limits, as the SDK bounds them."""
        return BoundedAttributes(
            count, attributes, max_value_len=self.event_value_length, immutable=True
        )

    def cut(self, value: Any) -> Any:
        """A string (or strings in an array) cut to the span attribute length limit."""
        length = self.value_length
        if length is None:
            return value
        if isinstance(value, str):
            return value[:length]
        if isinstance(value, tuple):
            return tuple(v[:length] if isinstance(v, str) else v for v in value)
        return value

    def bound(self, attributes: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The attributes a new span keeps under the limits, and how many it drops."""
        items = list(attributes.items())
        dropped = max(0, len(items) - self.max_attributes)
        if dropped:  # the SDK keeps the newest; the backend's keys are kept whatever their age
            backend = [(k, v) for k, v in items if attr.is_backend_key(k)]
            others = [(k, v) for k, v in items if not attr.is_backend_key(k)]
            keep = max(0, self.max_attributes - len(backend))
            items = [*backend, *others[len(others) - keep :]] if keep else backend
            dropped = len(attributes) - len(items)
        return {k: self.cut(v) for k, v in items}, dropped


def _oldest_giving_way(values: dict[str, Any]) -> str:
    """The key of the oldest attribute that is not the backend's (the oldest, if all are)."""
    for key in values:
        if not attr.is_backend_key(key):
            return key
    return next(iter(values))


def _append_bounded(items: list[Any], item: Any, maximum: int) -> int:
    """Append `item`, the oldest giving way when full (the SDK's bounded list); 1 if dropped."""
    if len(items) < maximum:
        items.append(item)
        return 0
    if items:
        del items[0]
        items.append(item)
    return 1


def _limit(value: int | None, unbounded: int) -> int:
    return unbounded if value is None else value


class LightTracer:
    """Starts `LightSpan`s for one provider's resource, ids and our processor."""

    def __init__(
        self,
        resource: Resource,
        scope: InstrumentationScope,
        id_generator: IdGenerator,
        on_end: Callable[[ReadableSpan], None],
        limits: SpanLimits,
        sample_bound: int | None = None,
    ) -> None:
        self.limits = Limits(limits)
        self.resource = resource
        # TRACEROOT_SAMPLE_RATE's trace-id cut-off (None: every new trace is kept).
        self._sample_bound = sample_bound
        self.scope = scope
        self.on_end = on_end
        self._use_ids(id_generator)

    def _use_ids(self, id_generator: IdGenerator) -> None:
        self.id_generator = id_generator
        self._new_span_id = id_generator.generate_span_id
        self._new_trace_id = id_generator.generate_trace_id
        is_random = getattr(id_generator, "is_trace_id_random", None)
        random_flag = _RANDOM_FLAG if is_random is not None and is_random() else 0
        self._root_flags = TraceFlags(TraceFlags.SAMPLED | random_flag)

    def sibling(self, scope: InstrumentationScope, id_generator: IdGenerator) -> LightTracer:
        """A tracer like this one (resource, processor, limits, sampling) for a library's
        `scope`, with the id generator its tracer uses (OpenInference's has its own)."""
        twin = object.__new__(LightTracer)
        twin.__dict__.update(self.__dict__)
        twin.scope = scope
        if id_generator is not self.id_generator:
            twin._use_ids(id_generator)
        return twin

    def start_span(
        self,
        name: str,
        attributes: dict[str, Any],
        parent: SpanContext,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        start_time: int | None = None,
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
            return LightSpan(name, context, None, attributes, self, kind, start_time)
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
        return LightSpan(name, context, parent, attributes, self, kind, start_time)

    def start_under(
        self, name: str, attributes: dict[str, Any], parent: trace_api.Span
    ) -> tuple[trace_api.Span, int | None]:
        """`start_span` under the span `parent` (`INVALID_SPAN`: a new trace), with the new
        span's id when it records (None when it is not sampled)."""
        if type(parent) is LightSpan:  # one of ours: valid and sampled, its context at hand
            context = parent._span_context
            span_id = self._new_span_id()
            child = SpanContext(
                context.trace_id, span_id, False, context.trace_flags, context.trace_state
            )
            return LightSpan(name, child, context, attributes, self), span_id
        span = self.start_span(name, attributes, parent.get_span_context())
        if type(span) is LightSpan:
            return span, span._span_context.span_id
        return span, None
