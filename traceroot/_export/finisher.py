"""Rewriting finished spans before they leave.

In order: content withheld (TRACEROOT_CAPTURE_CONTENT=false), base64 media replaced by a
placeholder, credentials scrubbed (TRACEROOT_SCRUB), `redact=`, the attribute size bound.
The backend's own keys (`_attributes.is_backend_key`) are never touched by any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from traceroot import _attributes as attr
from traceroot._content import WITHHELD_CONTENT, capture_content_from_environment, is_content
from traceroot._export.scrub import NAME_RULE, Scrubber, marker, scrubber_from_environment
from traceroot._light_span import LightSpan
from traceroot._media import replace_media
from traceroot._serialize import INT64_MAX, INT64_MIN, to_json, truncate, well_formed

logger = logging.getLogger("traceroot")

Redact = Callable[[dict[str, Any]], dict[str, Any]]

WITHHELD = "<withheld: redact failed>"
STATUS_MESSAGE_KEY = "status.message"

# Scrubbing reads this much past the length bound, so a credential straddling the cut is
# whole when it is matched (a PEM key is the longest), and no more: the rest is cut anyway.
_SCAN_MARGIN = 8192

_FROM_ENVIRONMENT: Any = object()

# What the rules do to a value, by its key: kept as it is (backend bookkeeping), withheld
# (content, with capture off), scrubbed whole (a credential's name), or read for media and
# credentials. Small ints: `is` compares them.
_KEPT, _WITHHOLD, _SENSITIVE, _PLAIN = 0, 1, 2, 3
_MAX_PLANS = 4096  # distinct attribute keys remembered


class SpanFinisher:
    """Withholds, scrubs and redacts user content, and cuts over-long values.

    `scrubber` and `capture_content` default to what the environment says
    (TRACEROOT_SCRUB, TRACEROOT_SCRUB_PATTERNS, TRACEROOT_CAPTURE_CONTENT).
    """

    def __init__(
        self,
        redact: Redact | None,
        max_length: int,
        *,
        scrubber: Scrubber | None = _FROM_ENVIRONMENT,
        capture_content: bool | None = None,
    ) -> None:
        self._redact = redact
        self._max_length = max_length
        self._warned = False
        self._scrubber: Scrubber | None = (
            scrubber_from_environment() if scrubber is _FROM_ENVIRONMENT else scrubber
        )
        self._capture_content = (
            capture_content_from_environment() if capture_content is None else capture_content
        )
        self._plans: dict[str, int] = {}

    def compact(self, span: ReadableSpan) -> ReadableSpan:
        """`span` held in plain dicts and tuples, ready to wait in a queue; no rule applied.

        A live SDK span carries locks and bounded deques that would triple the memory
        of every queued span. A `LightSpan` is compact already and is kept as it is.
        """
        if isinstance(span, LightSpan):
            return span
        return _copy(span, _plain_copy(span.attributes), tuple(span.events), span.status)

    def restore(self, span: ReadableSpan, lost: Mapping[str, Any]) -> ReadableSpan:
        """A compact copy of `span` with the backend's keys it `lost` to the attribute count
        limit back, first (where they were stamped); as many of its oldest other attributes
        give way, so it holds no more attributes than it did; the dropped count follows."""
        present = _plain_copy(span.attributes)
        attributes = {**lost, **present}
        excess = len(attributes) - max(len(present), len(lost))
        oldest = [k for k in present if not attr.is_backend_key(k)][: max(excess, 0)]
        for key in oldest:
            del attributes[key]
        dropped = max(0, span.dropped_attributes - len(lost)) + len(oldest)
        return _copy(span, attributes, tuple(span.events), span.status, dropped_attributes=dropped)

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        """`span` with the rules applied: the same span when they change nothing."""
        # A plain dict (the SDK's attribute mapping copies at C speed) is quicker to walk.
        original: Mapping[str, Any] = _plain_copy(span.attributes)
        wrapper = attr.WRAPS_LLM_CALLS in original
        if wrapper:
            original = _as_chain(original)
        # Without `redact`, cleaning and bounding are one pass over the attributes.
        attributes = self._clean(original) if self._redact is not None else self._finish(original)
        if self._scrubber is not None:
            attributes = self._scrub_path(attributes)
        original_events = span.events  # the SDK makes a new tuple at each read
        events = original_events
        if events:
            cleaned_events = tuple(self._clean_event(e) for e in events)
            if any(c is not e for c, e in zip(cleaned_events, events, strict=True)):
                events = cleaned_events
        original_status = status = span.status
        if status.description:
            scrubbed = self._clean_text(status.description)
            if scrubbed is not status.description:
                status = Status(status.status_code, scrubbed)
        if self._redact is not None:
            attributes = self._apply(dict(attributes))
            events = tuple(
                Event(e.name, self._apply(dict(e.attributes or {})), e.timestamp) for e in events
            )
            if status.description:
                redacted = self._apply({STATUS_MESSAGE_KEY: status.description})
                description = redacted.get(STATUS_MESSAGE_KEY)
                status = Status(status.status_code, str(description) if description else None)
        bounded = self._bound(attributes) if self._redact is not None else attributes
        name = self._scrub_name(span.name)
        if (
            self._redact is None
            and not wrapper
            and bounded is original
            and events is original_events
            and status is original_status
            and name == span.name
        ):
            return span
        return _copy(span, dict(bounded), tuple(events), status, name=name)

    def _scrub_name(self, name: Any) -> Any:
        """A span's or event's name, credentials scrubbed: it can hold a URL with its key or
        password (`GET https://...?api_key=...`). The same object when there is nothing to do."""
        if self._scrubber is None or type(name) is not str or len(name) < 8:
            return name
        return self._scrubber.text(name)

    def _scrub_path(self, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
        """The span path's names scrubbed as span names are (a backend key, else untouched)."""
        path = attributes.get(attr.SPAN_PATH)
        if not path:
            return attributes
        for name in path:  # a loop, not all(): this runs for every span
            if type(name) is str and len(name) >= 8:
                break
        else:
            return attributes
        cleaned = tuple(self._scrub_name(n) for n in path)
        if cleaned == tuple(path):
            return attributes
        return {**attributes, attr.SPAN_PATH: cleaned}

    def _clean_event(self, event: Event) -> Event:
        attributes = event.attributes or {}
        cleaned = self._clean(attributes)
        name = self._scrub_name(event.name)  # `retrying https://...?token=...`
        if cleaned is attributes and name == event.name:
            return event
        return Event(name, dict(cleaned), event.timestamp)

    def _plan(self, key: str) -> int:
        """What the rules do to the value under `key` (the key alone decides), cached."""
        plans = self._plans
        plan = plans.get(key)
        if plan is None:
            if attr.is_backend_key(key):
                plan = _KEPT
            elif not self._capture_content and is_content(key):
                plan = _WITHHOLD
            elif self._scrubber is not None and self._scrubber.sensitive_key(key):
                plan = _SENSITIVE
            else:
                plan = _PLAIN
            if len(plans) >= _MAX_PLANS:
                plans.clear()
            plans[key] = plan
        return plan

    def _clean(self, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
        """Content withheld, media replaced, credentials scrubbed: the same mapping if none."""
        changed: dict[str, Any] | None = None
        plans = self._plans
        for key, value in attributes.items():
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            if plan is _KEPT:
                continue
            new = self._clean_value(plan, value)
            if new is not value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = new
        return attributes if changed is None else changed

    def _finish(self, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
        """`_clean` and then `_bound`, in one pass: the same mapping if neither changed it."""
        changed: dict[str, Any] | None = None
        plans = self._plans
        limit = self._max_length
        for key, value in attributes.items():
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            kind = type(value)
            new = value
            # Only strings and arrays can change, short strings only under a plan of their own.
            if plan is not _KEPT and (
                plan is not _PLAIN or (kind is str and len(value) >= 8) or kind is tuple
            ):
                new = self._clean_value(plan, value)
                kind = type(new)
            if kind is str:
                if len(new) > limit:
                    new = truncate(new, limit)
            # _any_too_long, inline: paths are arrays on every span.
            elif kind is tuple and new and type(new[0]) is str and max(map(len, new)) > limit:
                new = tuple(truncate(i, limit) if isinstance(i, str) else i for i in new)
            if new is not value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = new
        return attributes if changed is None else changed

    def _clean_value(self, plan: int, value: Any) -> Any:
        if plan is _WITHHOLD:
            return WITHHELD_CONTENT
        if plan is _SENSITIVE and value is not None:
            if not isinstance(value, bool) and not _scrubbed(value):
                # `http.request.header.authorization`, `db.password`: the key says it all.
                return (marker(NAME_RULE),) if isinstance(value, tuple) else marker(NAME_RULE)
        if type(value) is str:
            return self._clean_text(value)
        if type(value) is tuple and value and type(value[0]) is str:
            items = tuple(self._clean_text(v) if type(v) is str else v for v in value)
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def _clean_text(self, text: str) -> str:
        """One string: media replaced, credentials scrubbed; `text` itself when nothing was."""
        if len(text) < 8:
            return text
        cleaned = replace_media(text)
        scrubber = self._scrubber
        if scrubber is None:
            return text if cleaned == text else cleaned
        scan = self._max_length + _SCAN_MARGIN
        if len(cleaned) <= scan:
            cleaned = scrubber.text(cleaned)
        else:  # only what can survive the length bound is read
            cleaned = _cut(scrubber.text(cleaned[:scan]), self._max_length, len(cleaned) - scan)
        return text if cleaned == text else cleaned

    def _apply(self, attributes: dict[str, Any]) -> dict[str, Any]:
        assert self._redact is not None
        kept = {k: v for k, v in attributes.items() if attr.is_backend_key(k)}
        exposed = {k: v for k, v in attributes.items() if not attr.is_backend_key(k)}
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
    *,
    name: str | None = None,
    links: tuple[Link, ...] | None = None,
    kind: SpanKind | None = None,
    dropped_attributes: int | None = None,
) -> ReadableSpan:
    if dropped_attributes is None:
        dropped_attributes = span.dropped_attributes
    return FinishedSpan(
        (dropped_attributes, span.dropped_events, span.dropped_links),
        name=span.name if name is None else name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=tuple(span.links) if links is None else links,
        kind=span.kind if kind is None else kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def encodable(span: ReadableSpan) -> ReadableSpan:
    """`span`, or a copy when it holds what OTLP cannot carry, made so it can: a string
    UTF-8 cannot carry (name, keys, values, events, links, status; see `well_formed`), an
    integer beyond 64 bits (its digits), a kind that is no SpanKind (INTERNAL), a name,
    key or value of an odd type (its text, never a memory address). For an encoder that
    would otherwise refuse the span, or drop the value with a traceback on stderr."""
    if _encodable(span):
        return span
    status = span.status
    if not isinstance(status, Status):
        status = Status(StatusCode.UNSET)
    elif status.description:
        status = Status(status.status_code, _text(status.description))
    return _copy(
        span,
        _encoded(span.attributes),
        tuple(Event(_text(e.name), _encoded(e.attributes), e.timestamp) for e in span.events),
        status,
        name=_text(span.name),
        links=tuple(Link(link.context, _encoded(link.attributes)) for link in span.links),
        kind=span.kind if isinstance(span.kind, SpanKind) else SpanKind.INTERNAL,
    )


def _encodable(span: ReadableSpan) -> bool:
    status = span.status
    if not isinstance(span.kind, SpanKind) or not isinstance(status, Status):
        return False  # a library's odd kind, or a span made by hand: OTLP has no place for it
    if not _carried(span.name) or not _carried(status.description or ""):
        return False
    if not _encodable_in(span.attributes):
        return False
    return all(_carried(e.name) and _encodable_in(e.attributes) for e in span.events) and all(
        _encodable_in(link.attributes) for link in span.links
    )


def _encodable_in(attributes: Mapping[str, Any] | None) -> bool:
    return all(
        _carried(key) and _encodable_value(value) for key, value in (attributes or {}).items()
    )


def _encodable_value(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return _carried(value)
    if kind is int:
        return INT64_MIN <= value <= INT64_MAX
    if kind is tuple or kind is list:
        return all(map(_encodable_value, value))
    return value is None or isinstance(value, bool | int | float | bytes | Mapping)


def _carried(text: Any) -> bool:
    """Whether `text` is a string UTF-8 can carry."""
    if type(text) is not str:
        return False
    if text.isascii():  # known to the string itself: no scan
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encoded(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {_text(k): _encoded_value(v) for k, v in (attributes or {}).items()}


def _encoded_value(value: Any) -> Any:
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, bool) or value is None or isinstance(value, float | bytes | Mapping):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, tuple | list):
        return tuple(map(_encoded_value, value))
    return _text(value)


def _text(value: Any) -> str:
    """`value` as a string UTF-8 can carry, never a memory address: a number as its digits,
    anything else as its type's name."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, int | float):
        return str(value)
    return f"<{type(value).__name__}>"


def _scrubbed(value: Any) -> bool:
    """Whether `value` is a marker already (a shape rule's, which says more)."""
    first = value[0] if isinstance(value, tuple) and value else value
    return isinstance(first, str) and first.startswith("[scrubbed:")


def _cut(text: str, limit: int, already_cut: int) -> str:
    """`text` (the head of a longer value) cut to `limit`, the marker counting all that went."""
    if len(text) > limit:
        return truncate(text, limit, already_cut)
    marker_room = len(f"...[truncated {len(text) + already_cut} chars]")
    keep = max(0, min(len(text), limit - marker_room))
    return f"{text[:keep]}...[truncated {len(text) - keep + already_cut} chars]"


def _any_too_long(values: tuple[Any, ...], limit: int) -> bool:
    # Attribute arrays are homogeneous: an array of strings has a string first.
    return bool(values) and type(values[0]) is str and max(map(len, values)) > limit


def _as_chain(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """An LLM span that wraps LLM calls (``WRAPS_LLM_CALLS``) as the CHAIN span it is."""
    chain = {
        k: v
        for k, v in attributes.items()
        if k != attr.WRAPS_LLM_CALLS and not k.startswith(attr.LLM_ACCOUNTING_PREFIXES)
    }
    chain[attr.OI_SPAN_KIND] = "CHAIN"
    return chain


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
