"""Spans to OTLP `ExportTraceServiceRequest` protobuf bytes, written directly.

Building protobuf message objects costs about as much per span as the traced call
itself; writing the wire format is several times cheaper, and the attributes that
repeat on every span (sdk, git, environment, span kinds, short paths) are encoded
once and reused. The output decodes to the same message the OpenTelemetry
encoder builds.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode

from traceroot._errors import in_words
from traceroot._serialize import INT64_MAX, INT64_MIN, well_formed

logger = logging.getLogger("traceroot")

_U64 = 0xFFFFFFFFFFFFFFFF
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

# SpanFlags: the span says whether its parent is remote, and if so that it is.
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200

# Encoded attributes worth remembering: short ones, which are the ones that repeat. One
# cache per field tag: the same key and value is a different field on a span, an event,
# a link or the resource.
_CACHEABLE_LENGTH = 200
_CACHE_LIMIT = 16384
_kv_caches: dict[bytes, dict[tuple[Any, ...], bytes]] = {}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _utf8(text: str) -> bytes:
    """`text` in UTF-8; a surrogate, which UTF-8 cannot carry, replaced (see well_formed).

    Protobuf strings must be valid UTF-8: a receiver refuses the whole request otherwise,
    so one such value would cost every span sent with it.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return well_formed(text).encode("utf-8")


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", _utf8(value))
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return b"\x18" + _varint(value & _U64)
        return _field(b"\x0a", str(value).encode("ascii"))  # its digits, not a wrapped number
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(
            b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        )
    return b""  # None, or a type an attribute cannot hold: an empty AnyValue


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", _utf8(key)) + _field(b"\x12", _any_value(value))


def _short_strings(values: tuple[Any, ...]) -> bool:
    return len(values) <= 16 and all(type(v) is str and len(v) <= 64 for v in values)


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    if not attributes:
        return []
    cache = _kv_caches.get(tag)
    if cache is None:
        cache = _kv_caches[tag] = {}
    out: list[bytes] = []
    append = out.append
    get = cache.get
    # A snapshot (taken at C speed, so atomic): a thread may still be setting an attribute
    # on a span that has just ended, and iterating the live dict would then fail the batch.
    for item in list(attributes.items()):
        # The (key, value) pair is the cache key for strings and string arrays only (numbers
        # are keyed with their type, or 1, 1.0 and True would share an entry): an equal
        # pair is one of those, so a hit needs no look at the value's type.
        try:
            encoded = get(item)
        except TypeError:  # an unhashable value (a list)
            encoded = None
        if encoded is not None:
            append(encoded)
            continue
        key, value = item
        kind = type(value)
        if kind is str:
            cache_key: tuple[Any, ...] | None = item if len(value) <= _CACHEABLE_LENGTH else None
        elif kind is tuple:
            cache_key = item if _short_strings(value) else None
        elif kind is list:
            value = tuple(value)
            cache_key = (key, value) if _short_strings(value) else None
        elif kind is bool or kind is int or kind is float:
            cache_key = (key, kind, value)
        else:
            cache_key = None
        if cache_key is None:
            append(_field(tag, _key_value(key, value)))
            continue
        encoded = get(cache_key)
        if encoded is None:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            encoded = cache[cache_key] = _field(tag, _key_value(key, value))
        append(encoded)
    return out


def _flags(context: SpanContext | None) -> int:
    """SpanFlags: whether the (parent or linked) context is remote is always known."""
    remote = context is not None and context.is_remote
    return _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if remote else 0)


def _link(link: Link) -> bytes:
    context = link.context
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    parts.extend(_attributes(b"\x22", link.attributes))
    if link.dropped_attributes:
        parts.append(b"\x28" + _varint(link.dropped_attributes))
    parts.append(b"\x35" + _pack_fixed32(_flags(context)))
    return _field(b"\x6a", b"".join(parts))


# A span's flags field (16, fixed32), for a local or no parent and for a remote one.
_LOCAL_FLAGS = b"\x85\x01" + _pack_fixed32(_FLAGS_HAS_IS_REMOTE)
_REMOTE_PARENT_FLAGS = b"\x85\x01" + _pack_fixed32(_FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE)
# Encoded span names: few distinct ones, on many spans.
_names: dict[str, bytes] = {}
# trace_id (16 bytes) and span_id (8 bytes), big-endian, with their field tags; parent_span_id.
_pack_ids = struct.Struct(">BBQQBBQ").pack
_pack_parent_id = struct.Struct(">BBQ").pack
# Start and end times: two fixed64 fields.
_pack_times = struct.Struct("<BQBQ").pack
# OTLP counts span kinds from UNSPECIFIED = 0; OpenTelemetry's enum from INTERNAL = 0.
_KIND_FIELDS = {kind: b"\x30" + _varint(kind.value + 1) for kind in SpanKind}
_INTERNAL_FIELD = _KIND_FIELDS[SpanKind.INTERNAL]  # the usual kind (an enum hashes slowly)


def encode_span(span: ReadableSpan) -> bytes:
    """One `Span` message (without its field tag)."""
    context = span.context
    assert context is not None
    parent = span.parent
    trace_id = context.trace_id
    parts = [_pack_ids(0x0A, 0x10, trace_id >> 64, trace_id & _U64, 0x12, 0x08, context.span_id)]
    if trace_state := context.trace_state:
        parts.append(_field(b"\x1a", trace_state.to_header().encode("utf-8")))
    if parent is not None:
        parts.append(_pack_parent_id(0x22, 0x08, parent.span_id))
    name = _names.get(span.name)
    if name is None:
        if len(_names) >= _CACHE_LIMIT:
            _names.clear()
        text = span.name if isinstance(span.name, str) else str(span.name)  # a library's
        name = _names[span.name] = _field(b"\x2a", _utf8(text))
    parts.append(name)
    kind = span.kind
    # A kind that is no SpanKind (a library's, which the SDK takes as it is): INTERNAL.
    parts.append(
        _INTERNAL_FIELD if kind is SpanKind.INTERNAL else _KIND_FIELDS.get(kind, _INTERNAL_FIELD)
    )
    parts.append(_pack_times(0x39, span.start_time or 0, 0x41, span.end_time or 0))
    parts.extend(_attributes(b"\x4a", span.attributes))
    if dropped := span.dropped_attributes:
        parts.append(b"\x50" + _varint(dropped))
    for event in span.events:
        event_parts = [
            b"\x09" + _pack_fixed64(event.timestamp),
            _field(b"\x12", _utf8(event.name)),
        ]
        event_parts.extend(_attributes(b"\x1a", event.attributes))
        if event.dropped_attributes:
            event_parts.append(b"\x20" + _varint(event.dropped_attributes))
        parts.append(_field(b"\x5a", b"".join(event_parts)))
    if dropped := span.dropped_events:
        parts.append(b"\x60" + _varint(dropped))
    if links := span.links:
        parts.extend([_link(link) for link in links])
    if dropped := span.dropped_links:
        parts.append(b"\x70" + _varint(dropped))
    status = span.status
    if status.description is None and status.status_code is StatusCode.UNSET:
        parts.append(b"\x7a\x00")  # the usual case: an empty Status
    else:
        status_parts = []
        if status.description:
            description = _utf8(status.description)
            status_parts.append(_field(b"\x12", description))
        if status.status_code.value:
            status_parts.append(b"\x18" + _varint(status.status_code.value))
        parts.append(_field(b"\x7a", b"".join(status_parts)))
    parts.append(_REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS)
    return b"".join(parts)


_warned_as_text = False


def _encode_or_as_text(span: ReadableSpan) -> bytes:
    """`encode_span`; a span holding something it cannot write (an event name or a value of
    an odd type, from a library) goes made encodable (`finisher.encodable`: those parts as
    text), so it does not fail the request of every span sent with it."""
    try:
        return encode_span(span)
    except Exception as exc:
        from traceroot._export.finisher import encodable  # only on this rare path

        fixed = encodable(span)
        global _warned_as_text
        if not _warned_as_text:
            _warned_as_text = True
            logger.warning(
                "traceroot: span %r held a value OTLP cannot carry (%s); it was sent with "
                "its values as text (told once)",
                fixed.name,
                in_words(exc),
            )
        return encode_span(fixed)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    parts = [_field(b"\x0a", _utf8(scope.name))]
    if scope.version:
        parts.append(_field(b"\x12", _utf8(scope.version)))
    parts.extend(_attributes(b"\x1a", scope.attributes))
    return b"".join(parts)


def encode_requests(spans: Sequence[ReadableSpan], max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """`spans`, in order, as `ExportTraceServiceRequest`s of at most about `max_bytes` each.

    Yields (how many of the spans, the request), one request at a time, so only one
    is in memory. A span larger than `max_bytes` goes alone.
    """
    chunk: list[tuple[ReadableSpan, bytes]] = []
    size = 0
    for span in spans:
        encoded = _field(b"\x12", _encode_or_as_text(span))
        if chunk and size + len(encoded) > max_bytes:
            yield len(chunk), _request(chunk)
            chunk, size = [], 0
        chunk.append((span, encoded))
        size += len(encoded)
    if chunk:
        yield len(chunk), _request(chunk)


def _request(spans: Sequence[tuple[ReadableSpan, bytes]]) -> bytes:
    """One request from encoded spans, grouped by resource and scope."""
    # Grouped by identity: a Resource hashes by serializing itself, costly per span. Scopes
    # are grouped by equality, as the OpenTelemetry encoder groups them, but each scope
    # object is hashed once (the spans hold them, so their ids are stable meanwhile).
    resources: dict[int, Resource] = {}
    grouped: dict[int, dict[InstrumentationScope | None, list[bytes]]] = {}
    lists: dict[tuple[int, int], list[bytes]] = {}
    for span, encoded in spans:
        resource = span.resource
        scope = span.instrumentation_scope
        same = lists.get((id(resource), id(scope)))
        if same is None:
            resources.setdefault(id(resource), resource)
            by_scope = grouped.setdefault(id(resource), {})
            same = lists[(id(resource), id(scope))] = by_scope.setdefault(scope, [])
        same.append(encoded)
    resource_spans = []
    for resource_id, scopes in grouped.items():
        resource = resources[resource_id]
        parts = [_field(b"\x0a", b"".join(_attributes(b"\x0a", resource.attributes)))]
        for scope, encoded_spans in scopes.items():
            scope_parts = [_field(b"\x0a", _scope(scope)), *encoded_spans]
            if scope is not None and scope.schema_url:
                scope_parts.append(_field(b"\x1a", scope.schema_url.encode("utf-8")))
            parts.append(_field(b"\x12", b"".join(scope_parts)))
        if resource.schema_url:
            parts.append(_field(b"\x1a", resource.schema_url.encode("utf-8")))
        resource_spans.append(_field(b"\x0a", b"".join(parts)))
    return b"".join(resource_spans)
