"""A loopback OTLP/HTTP trace receiver for tests.

A real HTTP server on 127.0.0.1 that decodes OTLP protobuf export requests
(gzip or plain) into plain dataclasses, with failure injection (scripted
status codes, a per-response delay) for delivery tests.

    with OTLPReceiver() as rx:
        run_program(TRACEROOT_HOST_URL=rx.url)
        spans = rx.wait_for_spans(3)
"""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = [
    "OTLPReceiver",
    "ReceivedEvent",
    "ReceivedRequest",
    "ReceivedSpan",
    "ScriptItem",
    "dead_url",
    "decode_any_value",
    "decode_attributes",
    "decode_spans",
]

ScriptItem = int | tuple[int, Mapping[str, str]]
"""A scripted response: a status code, or ``(status, extra response headers)``."""

T = TypeVar("T")


DROP = 0  # a scripted 'status': close the connection without answering


@dataclass
class ReceivedRequest:
    """One HTTP request the receiver answered."""

    method: str
    path: str
    headers: dict[str, str]  # lowercased names
    body_length: int  # raw (possibly compressed) body size in bytes
    gzip: bool
    status: int
    span_count: int = 0  # spans decoded from the body (recorded or not)
    received_at: float = 0.0  # time.monotonic() when the body had been read
    payload: bytes = b""  # the body decompressed (as received, when it could not be)


@dataclass
class ReceivedEvent:
    """A span event."""

    name: str
    attributes: dict[str, Any]
    time_ns: int = 0


@dataclass
class ReceivedSpan:
    """One decoded span from an accepted (2xx) request."""

    name: str
    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_span_id: str | None  # 16 lowercase hex, None on a root
    kind: str  # "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER", "UNSPECIFIED"
    attributes: dict[str, Any]
    status_code: str  # "UNSET", "OK" or "ERROR"
    status_message: str
    events: list[ReceivedEvent]
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    start_ns: int
    end_ns: int
    path: str  # request path the span arrived on
    links: list[dict[str, Any]] = field(default_factory=list)
    # dropped attributes, events, links of the span; dropped attributes of each event
    dropped: tuple[int, int, int] = (0, 0, 0)
    dropped_event_attributes: list[int] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def decode_any_value(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` to a Python value (arrays become lists)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """Convert repeated OTLP ``KeyValue`` to a dict."""
    return {kv.key: decode_any_value(kv.value) for kv in kvs}


def _enum_name(prefix: str, name: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def decode_spans(request: ExportTraceServiceRequest, path: str) -> list[ReceivedSpan]:
    """The spans of one decoded export request (`path`: where it arrived, for the record)."""
    return _decode_spans(request, path)


def _decode_spans(request: ExportTraceServiceRequest, path: str) -> list[ReceivedSpan]:
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = decode_attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=sp.name,
                        trace_id=sp.trace_id.hex(),
                        span_id=sp.span_id.hex(),
                        parent_span_id=sp.parent_span_id.hex() or None,
                        kind=_enum_name("SPAN_KIND_", Span.SpanKind.Name(sp.kind)),
                        attributes=decode_attributes(sp.attributes),
                        status_code=_enum_name(
                            "STATUS_CODE_", Status.StatusCode.Name(sp.status.code)
                        ),
                        status_message=sp.status.message,
                        events=[
                            ReceivedEvent(e.name, decode_attributes(e.attributes), e.time_unix_nano)
                            for e in sp.events
                        ],
                        resource=dict(resource),
                        scope_name=ss.scope.name,
                        scope_version=ss.scope.version,
                        start_ns=sp.start_time_unix_nano,
                        end_ns=sp.end_time_unix_nano,
                        path=path,
                        dropped=(
                            sp.dropped_attributes_count,
                            sp.dropped_events_count,
                            sp.dropped_links_count,
                        ),
                        dropped_event_attributes=[e.dropped_attributes_count for e in sp.events],
                        links=[
                            {
                                "trace_id": link.trace_id.hex(),
                                "span_id": link.span_id.hex(),
                                "attributes": decode_attributes(link.attributes),
                            }
                            for link in sp.links
                        ],
                    )
                )
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        self.server.receiver._handle(self, self._read_body())

    def _other(self) -> None:
        self.server.receiver._handle(self, self._read_body())

    do_GET = do_PUT = do_DELETE = do_PATCH = _other


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OTLPReceiver


class OTLPReceiver:
    """Loopback OTLP/HTTP trace receiver; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self._host = host
        self._ssl_context = ssl_context
        """Serve HTTPS with this context (a TLS or mTLS receiver) instead of plain HTTP."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._requests: list[ReceivedRequest] = []
        self._spans: list[ReceivedSpan] = []
        self._script: list[tuple[int, dict[str, str]]] = []
        self.delay: float = 0.0
        """Seconds every response waits before being sent (a hanging backend)."""

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Bind a free port and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, 0), _Handler)
        if self._ssl_context is not None:
            # The handshake happens in the handler's thread, on its first read.
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed responses are released immediately."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("receiver not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (no trailing slash; https when TLS)."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    # -- recorded data -----------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Snapshot of all requests answered, in arrival order."""
        with self._cond:
            return list(self._requests)

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Snapshot of spans from accepted (2xx) requests; duplicates are kept."""
        with self._cond:
            return list(self._spans)

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        """Recorded spans with this name."""
        return [s for s in self.spans if s.name == name]

    def clear(self) -> None:
        """Forget recorded requests and spans (the script is kept)."""
        with self._cond:
            self._requests.clear()
            self._spans.clear()

    # -- failure injection -------------------------------------------------

    def script(self, responses: Iterable[ScriptItem]) -> None:
        """Queue responses for the next requests, in order; then 200 resumes.

        Each item is a status code or ``(status, headers)``; ``DROP`` (0) reads the request
        and closes the connection without answering. Spans of requests answered non-2xx
        are not recorded in ``spans``.
        """
        items: list[tuple[int, dict[str, str]]] = []
        for item in responses:
            if isinstance(item, int):
                items.append((item, {}))
            else:
                items.append((int(item[0]), dict(item[1])))
        with self._cond:
            self._script.extend(items)

    # -- waiting -----------------------------------------------------------

    def wait_for(self, predicate: Callable[[OTLPReceiver], T | None], timeout: float = 10.0) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value.

        Raises AssertionError with what arrived if the timeout passes.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"condition not met within {timeout}s: {len(self._spans)} span(s) "
                        f"{sorted({s.name for s in self._spans})} in "
                        f"{len(self._requests)} request(s) "
                        f"(statuses {[r.status for r in self._requests]})"
                    )
                self._cond.wait(min(remaining, 0.1))

    def wait_for_spans(self, n: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``n`` spans were recorded; return them all."""
        try:
            return self.wait_for(lambda r: r.spans if len(r._spans) >= n else None, timeout)
        except AssertionError as exc:
            raise AssertionError(f"expected at least {n} span(s); {exc}") from None

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least ``n`` requests were answered; return them all."""
        try:
            return self.wait_for(lambda r: r.requests if len(r._requests) >= n else None, timeout)
        except AssertionError as exc:
            raise AssertionError(f"expected at least {n} request(s); {exc}") from None

    # -- request handling (server threads) ---------------------------------

    def _handle(self, handler: _Handler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        encoding = headers.get("content-encoding", "").strip().lower()
        path = handler.path
        received_at = time.monotonic()
        with self._cond:
            status, extra = self._script.pop(0) if self._script else (200, {})

        spans: list[ReceivedSpan] = []
        payload = b""
        decode_ok = True
        if handler.command != "POST":
            decode_ok = False
            if status == 200:
                status = 405
        else:
            try:
                payload = body
                if encoding == "gzip":
                    payload = gzip.decompress(body)
                elif encoding == "deflate":
                    payload = zlib.decompress(body)
                req = ExportTraceServiceRequest()
                req.ParseFromString(payload)
                spans = _decode_spans(req, path)
            except (OSError, EOFError, zlib.error, DecodeError):
                decode_ok = False
                if status == 200:
                    status = 400

        if self.delay > 0:
            self._stopping.wait(self.delay)

        with self._cond:
            self._requests.append(
                ReceivedRequest(
                    method=handler.command,
                    path=path,
                    headers=headers,
                    body_length=len(body),
                    gzip=encoding == "gzip",
                    status=status,
                    span_count=len(spans),
                    received_at=received_at,
                    payload=payload,
                )
            )
            if decode_ok and 200 <= status < 300:
                self._spans.extend(spans)
            self._cond.notify_all()

        if status == DROP:  # no answer at all: the socket closes under the client
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        out = ExportTraceServiceResponse().SerializeToString() if 200 <= status < 300 else b""
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/x-protobuf")
            for key, value in extra.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(out)))
            handler.end_headers()
            handler.wfile.write(out)
            handler.wfile.flush()
        except OSError:
            pass  # client gave up (timeout) before we answered


def dead_url() -> str:
    """URL of a local port that was free a moment ago and has nothing listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
