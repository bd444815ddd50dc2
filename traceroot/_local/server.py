"""`traceroot ui`'s HTTP server: the page, the JSON it reads, and OTLP/HTTP ingest.

Standard-library `http.server`, one thread per request, one store connection per
request. Bound to loopback, it answers only requests addressed to a loopback name,
so a web page elsewhere cannot reach it through DNS rebinding; the API sends no CORS
headers, so other origins cannot read it; and OTLP ingest needs the protobuf content
type, which a cross-site form cannot send.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from traceroot._local.records import from_otlp, span_view
from traceroot._local.store import READ_ERRORS, Store, store_problem

logger = logging.getLogger("traceroot")

MAX_BODY = 32 * 1024 * 1024  # an OTLP request, compressed or not
MAX_INFLATED = 128 * 1024 * 1024  # what a gzip body may expand to
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
_PROTOBUF = "application/x-protobuf"


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return (resources.files("traceroot._local") / "static" / name).read_bytes()


def _micros(row: dict[str, Any]) -> dict[str, Any]:
    # Nanoseconds since 1970 do not fit a JavaScript number exactly; microseconds do.
    for key in ("start_ns", "end_ns", "updated_ns"):
        if key in row:
            value = row.pop(key)
            row[key[:-3] + "_us"] = None if value is None else value // 1000
    return row


def _inflate(body: bytes) -> bytes:
    """A gzip body, expanded to at most MAX_INFLATED bytes (a small bomb stays small)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = inflater.decompress(body, MAX_INFLATED)
    if inflater.unconsumed_tail:
        raise ValueError(f"the gzip body expands beyond {MAX_INFLATED // (1024 * 1024)} MB")
    return data


class ViewerServer(ThreadingHTTPServer):
    """The viewer on (host, port); `port` 0 picks a free one (see `url`)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store_path: Path, host: str, port: int, **caps: int) -> None:
        self.store_path = store_path
        self.caps = caps
        self.loopback_only = is_loopback(host)
        self._reported: str | None = None  # the store's problem the terminal was last told
        self._report_lock = threading.Lock()
        super().__init__((host, port), ViewerHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else str(host)
        return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"

    def store(self) -> Store:
        return Store(self.store_path, **self.caps)

    def probe(self) -> str | None:
        """Open the store (making it if need be): its problem, reported, or None."""
        store = self.store()
        try:
            store.last_change()
        except READ_ERRORS as exc:
            problem = store_problem(self.store_path, exc)
            self.report(problem)
            return problem
        finally:
            store.close()
        self.report(None)
        return None

    def report(self, problem: str | None) -> None:
        """Tell the terminal about the store's problem once, not on every poll of the page."""
        with self._report_lock:
            if problem == self._reported:
                return
            previous, self._reported = self._reported, problem
        if problem is not None:
            logger.warning("traceroot ui: %s", problem)
        elif previous is not None:
            logger.warning("traceroot ui: the trace store %s is readable again", self.store_path)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed past its handler: one line, never a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the page went away mid-answer (a reload, a closed tab)
        logger.warning("traceroot ui: a request failed: %s", exc or "unknown error")


class ViewerHandler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "traceroot-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the URL, not a line per poll

    # -- answers ---------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _allowed(self) -> bool:
        """Refuse requests addressed to another name (DNS rebinding) or from another site."""
        if self.server.loopback_only:
            host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
            if not is_loopback(host):
                self._error(403, "this server answers only requests addressed to loopback")
                return False
        origin = self.headers.get("Origin")
        if origin and origin != "null":
            host = self.headers.get("Host") or ""
            if urlsplit(origin).netloc != host:
                self._error(403, "cross-origin requests are refused")
                return False
        return True

    # -- GET -------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._allowed():
            return
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if path in _STATIC:
            name, content_type = _STATIC[path]
            self._send(200, _static(name), content_type)
            return
        store = self.server.store()
        try:
            if path == "/api/traces":
                self._traces(store, query)
            elif path.startswith("/api/trace/"):
                self._trace(store, unquote(path[len("/api/trace/") :]))
            elif path.startswith("/api/session/"):
                self._session(store, unquote(path[len("/api/session/") :]))
            elif path == "/api/facets":
                self._json(store.facets())
            elif path == "/api/version":
                self._json({"version": str(store.last_change())})
            else:
                self._error(404, "not found")
                return
            self.server.report(None)
        except READ_ERRORS as exc:  # not a database, a directory, a damaged file...
            problem = store_problem(self.server.store_path, exc)
            self.server.report(problem)
            self._error(503, problem)
        finally:
            store.close()

    def _traces(self, store: Store, query: dict[str, str]) -> None:
        version = str(store.last_change())  # before the data: a write in between shows next poll
        before = None
        cursor = query.get("before", "")
        if ":" in cursor:  # the exact nanoseconds, as text: a JSON number would round them
            nanos, _, trace_id = cursor.partition(":")
            if nanos.isdigit():
                before = (int(nanos), trace_id)
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 50
        rows = store.traces(
            service=query.get("service") or None,
            session=query.get("session") or None,
            user=query.get("user") or None,
            errors=query.get("errors") in ("1", "true"),
            text=query.get("q") or None,
            before=before,
            limit=limit,
        )
        last = rows[-1] if len(rows) >= max(1, min(limit, 500)) else None
        following = f"{last['start_ns']}:{last['trace_id']}" if last else None
        self._json(
            {
                "traces": [_micros(r) for r in rows],
                "next": following,
                "version": version,
            }
        )

    def _trace(self, store: Store, trace_id: str) -> None:
        version = str(store.last_change())
        full = store.resolve(trace_id)
        found = store.trace(full) if full else None
        if found is None:
            self._error(404, "no such trace in the local store")
            return
        found["version"] = version
        for span in found["spans"]:
            span["view"] = span_view(span)
            _micros(span)
        self._json(_micros(found))

    def _session(self, store: Store, session_id: str) -> None:
        version = str(store.last_change())
        traces = store.session(session_id)
        turns = []
        for trace in traces:
            root = store.root_span(trace) if trace.get("root_span_id") else None
            view = span_view(root) if root is not None else None
            turns.append(
                {
                    **_micros(trace),
                    "input": view["input"] if view else trace["input"],
                    "output": view["output"] if view else trace["output"],
                    "error": view["error"] if view else None,
                }
            )
        self._json({"session_id": session_id, "traces": turns, "version": version})

    # -- POST /v1/traces -------------------------------------------------------------

    def do_POST(self) -> None:
        if not self._allowed():
            return
        if urlsplit(self.path).path != "/v1/traces":
            self._error(404, "not found: OTLP traces go to /v1/traces")
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != _PROTOBUF:
            self._error(415, f"send OTLP/HTTP protobuf (Content-Type: {_PROTOBUF})")
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._error(411, "a Content-Length is required")
            return
        if length < 0 or length > MAX_BODY:
            self._error(413, f"request larger than {MAX_BODY // (1024 * 1024)} MB")
            return
        body = self.rfile.read(length)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        try:
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            if encoding == "gzip":
                body = _inflate(body)
            elif encoding not in ("", "identity"):
                self._error(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            rows = from_otlp(request)
        except (ValueError, OSError, zlib.error, gzip.BadGzipFile) as exc:
            self._error(400, f"not a valid OTLP request: {exc}")
            return
        except Exception:  # protobuf's DecodeError and friends
            self._error(400, "not a valid OTLP protobuf request")
            return
        store = self.server.store()
        try:
            store.write(rows)
        except READ_ERRORS as exc:
            problem = store_problem(self.server.store_path, exc)
            self.server.report(problem)
            self._error(503, f"the local store could not take these spans: {problem}")
            return
        except Exception as exc:
            logger.warning("traceroot ui: could not store %d received span(s): %s", len(rows), exc)
            self._error(503, "the local store could not take these spans")
            return
        finally:
            store.close()
        self.server.report(None)
        self._send(200, ExportTraceServiceResponse().SerializeToString(), _PROTOBUF)
