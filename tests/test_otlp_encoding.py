"""Our OTLP writer against OpenTelemetry's own encoder: the same message, byte for byte decoded."""

from __future__ import annotations

import logging
import math

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from traceroot._export.otlp_writer import encode_requests


class _Keep(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _spans() -> list[ReadableSpan]:
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "n": 3}))
    provider.add_span_processor(keep)
    app = provider.get_tracer("app", "1.0", schema_url="https://schema.example/1")
    lib = provider.get_tracer("lib")
    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("k", "v")]),
    )
    parent = set_span_in_context(NonRecordingSpan(remote))
    with app.start_as_current_span(
        "root",
        kind=SpanKind.SERVER,
        context=parent,
        links=[Link(remote, {"why": "retry", "k": "v"})],
    ) as root:
        root.set_attributes(
            {
                "text": "héllo ✓",
                "long": "x" * 5000,
                "flag": False,
                "negative": -5,
                "big": 2**62,
                "ratio": 1.5,
                "nan": math.nan,
                "strings": ["a", "b"],
                "ints": [1, 2],
                "empty": [],
                # The same key and value as on the resource, the event and the link.
                "n": 3,
                "k": "v",
            }
        )
        root.add_event("note", {"k": "v"})
        for kind, code in ((SpanKind.CLIENT, StatusCode.ERROR), (SpanKind.PRODUCER, StatusCode.OK)):
            with lib.start_as_current_span(f"child-{kind.name}", kind=kind) as child:
                child.set_status(Status(code, "boom" if code is StatusCode.ERROR else None))
                try:
                    raise ValueError("bad")
                except ValueError as exc:
                    child.record_exception(exc)
    assert len(keep.spans) == 3
    return keep.spans


def _decoded(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    [(count, request)] = list(encode_requests(spans, 1 << 30))
    assert count == len(spans)
    return ExportTraceServiceRequest.FromString(request)


def test_same_message_as_the_opentelemetry_encoder() -> None:
    spans = _spans()
    ours, theirs = _decoded(spans), encode_spans(spans)
    # NaN != NaN in protobuf equality: compare it apart, then the rest exactly.
    for message in (ours, theirs):
        for scope_spans in message.resource_spans[0].scope_spans:
            for span in scope_spans.spans:
                nans = [kv for kv in span.attributes if kv.key == "nan"]
                for kv in nans:
                    assert math.isnan(kv.value.double_value)
                    span.attributes.remove(kv)
    if not any(s.schema_url for r in theirs.resource_spans for s in r.scope_spans):
        # Older OpenTelemetry encoders drop the scope's schema URL; ours keeps it.
        assert [s.schema_url for s in ours.resource_spans[0].scope_spans if s.schema_url]
        for resource_spans in ours.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                scope_spans.schema_url = ""
    assert ours == theirs


def test_repeated_attributes_stay_correct_across_requests() -> None:
    spans = _spans()
    first = _decoded(spans)
    second = _decoded(list(reversed(spans)))  # served from the cache of encoded attributes
    names_first = sorted(s.name for ss in first.resource_spans[0].scope_spans for s in ss.spans)
    names_second = sorted(s.name for ss in second.resource_spans[0].scope_spans for s in ss.spans)
    assert names_first == names_second
    root = next(
        s for ss in second.resource_spans[0].scope_spans for s in ss.spans if s.name == "root"
    )
    values = {kv.key: kv.value for kv in root.attributes}
    assert values["text"].string_value == "héllo ✓"
    assert values["flag"].HasField("bool_value") and values["flag"].bool_value is False
    assert values["negative"].int_value == -5
    assert [v.string_value for v in values["strings"].array_value.values] == ["a", "b"]


def test_empty_batch_is_no_request() -> None:
    assert list(encode_requests([], 1 << 30)) == []


def test_a_large_batch_is_cut_into_requests_of_bounded_size() -> None:
    keep = _Keep()
    provider = TracerProvider()
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("big")
    for i in range(10):
        with tracer.start_as_current_span(f"s{i}") as span:
            span.set_attribute("blob", str(i) * (30_000 if i != 7 else 150_000))
    requests = list(encode_requests(keep.spans, 100_000))

    counts = [count for count, _ in requests]
    assert sum(counts) == 10 and len(counts) >= 4
    groups = []
    for count, request in requests:
        decoded = ExportTraceServiceRequest.FromString(request)
        spans = [s for rs in decoded.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert len(spans) == count
        groups.append([s.name for s in spans])
        assert count == 1 or len(request) <= 100_000 + 1_000  # + resource and scope
    assert sum(groups, []) == [f"s{i}" for i in range(10)]  # in order
    assert ["s7"] in groups  # larger than the bound: alone


def test_strings_utf8_cannot_carry_are_replaced_not_sent_broken() -> None:
    # Protobuf refuses a string field that is not UTF-8 (the whole request with it): a lone
    # surrogate anywhere becomes U+FFFD, a surrogate pair the character it stands for.
    keep = _Keep()
    provider = TracerProvider()
    provider.add_span_processor(keep)
    with provider.get_tracer("scope \udc80", "1.\ud800").start_as_current_span("name \ud83d") as s:
        s.set_attributes({"key \udcff": "value \ud800", "pair": "\ud83d\ude00", "list": ["\udc00"]})
        s.add_event("event \udce9", {"k": "v \udce9"})
        s.set_status(Status(StatusCode.ERROR, "why \udcff"))
    [(count, request)] = list(encode_requests(keep.spans, 1 << 30))
    decoded = ExportTraceServiceRequest.FromString(request)  # upb checks UTF-8
    scope_spans = decoded.resource_spans[0].scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("scope \ufffd", "1.\ufffd")
    [span] = scope_spans.spans
    assert span.name == "name \ufffd"
    values = {kv.key: kv.value for kv in span.attributes}
    assert values["key \ufffd"].string_value == "value \ufffd"
    assert values["pair"].string_value == "\U0001f600"
    assert [v.string_value for v in values["list"].array_value.values] == ["\ufffd"]
    assert span.events[0].name == "event \ufffd"
    assert span.events[0].attributes[0].value.string_value == "v \ufffd"
    assert span.status.message == "why \ufffd"


def test_integers_beyond_64_bits_go_as_their_digits_not_wrapped() -> None:
    keep = _Keep()
    provider = TracerProvider()
    provider.add_span_processor(keep)
    with provider.get_tracer("t").start_as_current_span("s") as span:
        edges = {"max": 2**63 - 1, "min": -(2**63), "big": 2**70, "low": -(2**63) - 5}
        span.set_attributes({**edges, "ints": [1, 2**64]})
    [(count, request)] = list(encode_requests(keep.spans, 1 << 30))
    [sent] = ExportTraceServiceRequest.FromString(request).resource_spans[0].scope_spans[0].spans
    values = {kv.key: kv.value for kv in sent.attributes}
    assert (values["max"].int_value, values["min"].int_value) == (2**63 - 1, -(2**63))
    assert values["big"].string_value == str(2**70)
    assert values["low"].string_value == str(-(2**63) - 5)
    items = values["ints"].array_value.values
    assert (items[0].int_value, items[1].string_value) == (1, str(2**64))


def test_a_span_the_writer_cannot_write_goes_as_text_not_failing_its_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A library's span with a kind that is no SpanKind (the SDK takes it as it is) once failed
    # the request, every span in it lost; it is INTERNAL. A span made by hand with an event
    # named by a number goes with it as text, told once.
    keep = _Keep()
    provider = TracerProvider()
    provider.add_span_processor(keep)
    tracer = provider.get_tracer("lib")
    tracer.start_span("odd kind", kind=7, attributes={"k": "v"}).end()  # type: ignore[arg-type]
    tracer.start_span("plain").end()
    base = keep.spans[1]
    by_hand = ReadableSpan(
        name="by hand",
        context=SpanContext(0xABC, 0x123, is_remote=False),
        resource=base.resource,
        attributes={"n": 3},
        events=(Event(42, {"k": "v"}, timestamp=5),),  # type: ignore[arg-type]
        start_time=1,
        end_time=2,
        instrumentation_scope=base.instrumentation_scope,
    )
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        [(count, request)] = list(encode_requests([*keep.spans, by_hand], 1 << 30))
        list(encode_requests([by_hand], 1 << 30))  # told once
    assert count == 3
    spans = ExportTraceServiceRequest.FromString(request).resource_spans[0].scope_spans[0].spans
    sent = {s.name: s for s in spans}
    assert set(sent) == {"odd kind", "plain", "by hand"}
    assert sent["odd kind"].kind == 1  # SPAN_KIND_INTERNAL
    assert sent["odd kind"].attributes[0].value.string_value == "v"
    assert sent["by hand"].events[0].name == "42"
    assert sent["by hand"].attributes[0].value.int_value == 3
    [record] = caplog.records
    assert "span 'by hand' held a value OTLP cannot carry" in record.getMessage()
