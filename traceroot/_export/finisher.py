"""Rewriting finished spans before they leave: `redact=` and the attribute size bound."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from traceroot import _attributes as attr
from traceroot._light_span import LightSpan
from traceroot._serialize import to_json, truncate

logger = logging.getLogger("traceroot")

Redact = Callable[[dict[str, Any]], dict[str, Any]]

WITHHELD = "<withheld: redact failed>"
STATUS_MESSAGE_KEY = "status.message"

# What the backend needs to place and account a span: never shown to `redact`, always kept.
_KEPT_EXACT = frozenset(
    {
        attr.SPAN_PATH,
        attr.SPAN_IDS_PATH,
        attr.SPAN_TYPE,
        attr.SPAN_TAGS,
        attr.ENVIRONMENT,
        attr.TRACE_USER_ID,
        attr.TRACE_SESSION_ID,
        attr.TRACE_TAGS,
        attr.LLM_MODEL,
        attr.LLM_USAGE,
        attr.LLM_COST_TOTAL,
        attr.USER_ID,
        attr.SESSION_ID,
        attr.TAG_TAGS,
        attr.OI_SPAN_KIND,
        attr.OI_MODEL_NAME,
        "llm.system",
        "llm.provider",
        "input.mime_type",
        "output.mime_type",
    }
)
_KEPT_PREFIXES = ("traceroot.sdk.", "traceroot.git.", "llm.token_count.", "llm.cost.")


def is_kept(key: str) -> bool:
    """Whether `key` is backend bookkeeping that `redact` never sees."""
    return key in _KEPT_EXACT or key.startswith(_KEPT_PREFIXES)


class SpanFinisher:
    """Applies `redact` to user-content attributes and cuts over-long values."""

    def __init__(self, redact: Redact | None, max_length: int) -> None:
        self._redact = redact
        self._max_length = max_length
        self._warned = False

    def compact(self, span: ReadableSpan) -> ReadableSpan:
        """`span` held in plain dicts and tuples, ready to wait in a queue; no rule applied.

        A live SDK span carries locks and bounded deques that would triple the memory
        of every queued span. A `LightSpan` is compact already and is kept as it is.
        """
        if isinstance(span, LightSpan):
            return span
        return _copy(span, _plain_copy(span.attributes), tuple(span.events), span.status)

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        """`span` with the rules applied: the same span when they change nothing."""
        attributes: Mapping[str, Any] = span.attributes or {}
        events = span.events
        status = span.status
        if self._redact is not None:
            attributes = self._apply(dict(attributes))
            events = tuple(
                Event(e.name, self._apply(dict(e.attributes or {})), e.timestamp) for e in events
            )
            if status.description:
                redacted = self._apply({STATUS_MESSAGE_KEY: status.description})
                description = redacted.get(STATUS_MESSAGE_KEY)
                status = Status(status.status_code, str(description) if description else None)
        bounded = self._bound(attributes)
        if self._redact is None and bounded is attributes:
            return span
        return _copy(span, dict(bounded), tuple(events), status)

    def _apply(self, attributes: dict[str, Any]) -> dict[str, Any]:
        assert self._redact is not None
        kept = {k: v for k, v in attributes.items() if is_kept(k)}
        exposed = {k: v for k, v in attributes.items() if not is_kept(k)}
        if not exposed:
            return attributes
        try:
            result = self._redact(dict(exposed))
            if not isinstance(result, Mapping):
                raise TypeError(f"redact returned {type(result).__name__}, not a dict")
        except Exception as exc:
            if not self._warned:
                self._warned = True
                # Only the type: the message may quote the very secret being redacted.
                logger.warning(
                    "traceroot: the redact function raised %s; withholding every string value "
                    "it would have seen.",
                    type(exc).__name__,
                )
            result = {k: _withhold(v) for k, v in exposed.items()}
        cleaned = {str(k): _as_attribute(v) for k, v in result.items() if v is not None}
        return {**cleaned, **kept}

    def _bound(self, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
        limit = self._max_length
        too_long = [
            k
            for k, v in attributes.items()
            if (len(v) > limit if type(v) is str else type(v) is tuple and _any_too_long(v, limit))
        ]
        if not too_long:
            return attributes
        bounded = dict(attributes)
        for key in too_long:
            value = bounded[key]
            if isinstance(value, str):
                bounded[key] = truncate(value, limit)
            else:
                bounded[key] = tuple(truncate(i, limit) if isinstance(i, str) else i for i in value)
        return bounded


class FinishedSpan(ReadableSpan):
    """A finished span held in plain containers, with the dropped counts of the original."""

    def __init__(self, dropped: tuple[int, int, int], **fields: Any) -> None:
        super().__init__(**fields)
        self._dropped_counts = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_counts[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped_counts[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped_counts[2]


def _copy(
    span: ReadableSpan,
    attributes: dict[str, Any],
    events: tuple[Event, ...],
    status: Status,
) -> ReadableSpan:
    return FinishedSpan(
        (span.dropped_attributes, span.dropped_events, span.dropped_links),
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=tuple(span.links),
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _any_too_long(values: tuple[Any, ...], limit: int) -> bool:
    # Attribute arrays are homogeneous: an array of strings has a string first.
    return bool(values) and type(values[0]) is str and max(map(len, values)) > limit


def _plain_copy(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dict copy; the SDK's attribute mapping copies its inner dict at C speed this way."""
    if not attributes:
        return {}
    copy = getattr(attributes, "copy", None)
    copied = copy() if copy is not None else None
    return copied if isinstance(copied, dict) else dict(attributes)


def _withhold(value: Any) -> Any:
    if isinstance(value, str):
        return WITHHELD
    if isinstance(value, tuple | list) and any(isinstance(i, str) for i in value):
        return [WITHHELD]
    return value


def _as_attribute(value: Any) -> AttributeValue:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, tuple | list) and all(isinstance(i, str) for i in value):
        return list(value)
    return to_json(value)
