"""Tests of the loopback OTLP receiver, fed by the plain OpenTelemetry SDK."""

from __future__ import annotations

import gzip
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from otlp_receiver import OTLPReceiver, dead_url

PATH = "/api/v1/public/traces"


def _exporter(url: str, *, compression: Compression = Compression.Gzip) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=url + PATH,
        headers={"Authorization": "Bearer k", "X-Custom-Header": "Yes"},
        compression=compression,
        timeout=5,
    )


@pytest.fixture
def provider(receiver: OTLPReceiver) -> Iterator[TracerProvider]:
    tp = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tp.add_span_processor(BatchSpanProcessor(_exporter(receiver.url), schedule_delay_millis=50))
    yield tp
    tp.shutdown()


def test_decodes_nested_spans_attributes_and_exception(
    receiver: OTLPReceiver, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("my.scope", "1.2.3")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_attributes(
            {
                "s": "text",
                "i": 42,
                "f": 1.5,
                "b": True,
                "ls": ["a", "b"],
                "li": [1, 2],
                "lf": [0.5],
                "lb": [False, True],
            }
        )
        with tracer.start_as_current_span("child"):
            with tracer.start_as_current_span("grandchild") as gc:
                gc.record_exception(ValueError("boom"), attributes={"extra": 7})
                gc.set_status(Status(StatusCode.ERROR, "boom"))
        root.set_status(Status(StatusCode.OK))
    provider.force_flush()

    spans = receiver.wait_for_spans(3)
    assert len(spans) == 3
    by_name = {s.name: s for s in spans}
    root_s, child, grand = by_name["root"], by_name["child"], by_name["grandchild"]

    ctx = root.get_span_context()
    assert root_s.trace_id == format(ctx.trace_id, "032x")
    assert root_s.span_id == format(ctx.span_id, "016x")
    assert root_s.parent_span_id is None
    assert child.parent_span_id == root_s.span_id
    assert grand.parent_span_id == child.span_id
    assert {s.trace_id for s in spans} == {root_s.trace_id}
    assert all(len(s.span_id) == 16 and s.span_id == s.span_id.lower() for s in spans)

    assert root_s.kind == "SERVER" and child.kind == "INTERNAL"
    assert root_s.attributes == {
        "s": "text",
        "i": 42,
        "f": 1.5,
        "b": True,
        "ls": ["a", "b"],
        "li": [1, 2],
        "lf": [0.5],
        "lb": [False, True],
    }
    assert type(root_s.attributes["i"]) is int and type(root_s.attributes["b"]) is bool
    assert root_s.status_code == "OK" and child.status_code == "UNSET"
    assert grand.status_code == "ERROR" and grand.status_message == "boom"

    (event,) = grand.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "boom"
    assert event.attributes["extra"] == 7
    assert event.time_ns > 0

    assert root_s.resource["service.name"] == "svc"
    assert root_s.scope_name == "my.scope" and root_s.scope_version == "1.2.3"
    assert root_s.path == PATH
    assert 0 < root_s.start_ns <= child.start_ns <= grand.end_ns <= root_s.end_ns

    (req,) = receiver.requests
    assert req.method == "POST" and req.path == PATH and req.status == 200
    assert req.gzip is True and req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/x-protobuf"
    assert req.headers["authorization"] == "Bearer k"
    assert req.headers["x-custom-header"] == "Yes"
    assert req.body_length == int(req.headers["content-length"]) and req.span_count == 3


def test_uncompressed_body(receiver: OTLPReceiver) -> None:
    tp = TracerProvider()
    tp.add_span_processor(
        SimpleSpanProcessor(_exporter(receiver.url, compression=Compression.NoCompression))
    )
    with tp.get_tracer("t").start_as_current_span("plain"):
        pass
    tp.shutdown()
    assert [s.name for s in receiver.wait_for_spans(1)] == ["plain"]
    assert receiver.requests[0].gzip is False


def test_scripted_failure_then_retry_records_only_accepted_spans(receiver: OTLPReceiver) -> None:
    receiver.script([(503, {"Retry-After": "0"}), 503])
    exporter = _exporter(receiver.url)
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    with tp.get_tracer("t").start_as_current_span("once"):
        pass

    spans = receiver.wait_for_spans(1, timeout=15)
    assert [s.name for s in spans] == ["once"]
    assert [r.status for r in receiver.requests] == [503, 503, 200]
    assert [r.span_count for r in receiver.requests] == [1, 1, 1]

    # Script exhausted: later requests get 200 again, each span recorded once.
    with tp.get_tracer("t").start_as_current_span("twice"):
        pass
    assert [s.name for s in receiver.wait_for_spans(2)] == ["once", "twice"]
    tp.shutdown()


def test_non_retryable_failure_drops_spans(receiver: OTLPReceiver) -> None:
    receiver.script([400])
    exporter = _exporter(receiver.url)
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    with tp.get_tracer("t").start_as_current_span("rejected"):
        pass
    tp.shutdown()
    assert [r.status for r in receiver.wait_for_requests(1)] == [400]
    assert receiver.spans == []


def test_duplicates_are_kept(receiver: OTLPReceiver) -> None:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(_exporter(receiver.url)))
    with tp.get_tracer("t").start_as_current_span("dup") as span:
        pass
    exporter = _exporter(receiver.url)
    assert exporter.export([span]) == SpanExportResult.SUCCESS  # type: ignore[list-item]
    tp.shutdown()
    spans = receiver.wait_for_spans(2)
    assert [s.span_id for s in spans] == [spans[0].span_id] * 2


def test_delay_and_stop(receiver: OTLPReceiver) -> None:
    receiver.delay = 30.0
    result: list[BaseException | int] = []

    def post() -> None:
        req = urllib.request.Request(receiver.url + PATH, data=gzip.compress(b""), method="POST")
        req.add_header("Content-Encoding", "gzip")
        try:
            with urllib.request.urlopen(req, timeout=0.3) as resp:
                result.append(resp.status)
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    thread.join(5)
    assert result and isinstance(result[0], Exception)  # client timed out

    started = time.monotonic()
    receiver.stop()  # releases the hanging handler promptly
    assert time.monotonic() - started < 5
    (req,) = receiver.wait_for_requests(1, timeout=5)
    assert req.gzip and req.status == 200 and req.span_count == 0


def test_garbage_body_is_400(receiver: OTLPReceiver) -> None:
    req = urllib.request.Request(receiver.url + "/x", data=b"\xff\xff not protobuf", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400
    assert receiver.requests[0].status == 400 and receiver.spans == []


def test_wait_for_spans_reports_count(receiver: OTLPReceiver) -> None:
    with pytest.raises(AssertionError, match="expected at least 1 span.*0 span"):
        receiver.wait_for_spans(1, timeout=0.2)


def test_dead_url_refuses_connections() -> None:
    url = dead_url()
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + PATH, data=b"", timeout=2)


def test_run_python_env_is_clean(
    run_python, traceroot_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRACEROOT_ENABLED", "false")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "leak")
    script = (
        "import os, sys\n"
        "print(sorted(k for k in os.environ if k.startswith(('TRACEROOT_', 'OTEL_'))))\n"
        "print(os.getcwd()); print(sys.argv[1:])\n"
    )
    proc = run_python(script, args=["a"], env=traceroot_env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(sorted(traceroot_env))
    assert lines[1] == str(tmp_path) and lines[2] == "['a']"
