"""OTLP/HTTP protobuf span exporter with the retry rules a hosted backend needs.

429 and 5xx are retried with exponential backoff and jitter, honouring
`Retry-After`, within the timeout; 413 splits the batch; 401/403 are reported
once and not retried; DNS and TLS failures name the host; no request carries more
than `MAX_REQUEST_BYTES` of spans. The HTTP stack is
imported on first export, in the export thread, not at start-up; the body is
written by `otlp_encoding`, without the protobuf runtime.
"""

from __future__ import annotations

import gzip
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from traceroot._export.otlp_writer import encode_requests

if TYPE_CHECKING:
    import http.client

logger = logging.getLogger("traceroot")

_RETRYABLE = {429, 500, 502, 503, 504}
_MAX_BACKOFF = 8.0
# Spans per request are also bounded in bytes (before gzip): a batch of large spans is sent
# as several requests, none carrying more than this.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
_WARN_EVERY = 60.0


class _Failure(Exception):
    """An attempt failed; `retry` says whether trying again can help."""

    def __init__(self, message: str, retry: bool, wait: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.wait = wait


class OTLPHTTPExporter(SpanExporter):
    """Sends spans as one gzip'd ExportTraceServiceRequest per batch."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.host = parts.hostname or ""
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc.rpartition("@")[2]
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {
            **headers,
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "gzip",
        }
        self._timeout = timeout
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._last_warning: dict[str, float] = {}
        self.last_error: str | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        ok = True
        offset = 0
        for count, request in encode_requests(spans, MAX_REQUEST_BYTES):
            ok = self._export_one(spans[offset : offset + count], request) and ok
            offset += count
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _export_one(self, spans: Sequence[ReadableSpan], request: bytes) -> bool:
        """Send one request holding `spans`; whether the backend accepted them all."""
        if self._stop.is_set():
            return False
        # Level 1: a third of level 6's time for about 10% more bytes on span batches.
        body = gzip.compress(request, compresslevel=1)
        status = self._send(body, time.monotonic() + self._timeout)
        if status == 413 and len(spans) > 1:
            half = len(spans) // 2
            first = self.export(spans[:half])
            second = self.export(spans[half:])
            return first is SpanExportResult.SUCCESS and second is SpanExportResult.SUCCESS
        if status == 413:
            self._warn("413", f"the backend at {self.host} refused a span as too large (413)")
        return status is not None and status < 300

    def _send(self, body: bytes, deadline: float) -> int | None:
        """POST until accepted, refused for good, or out of time; the final status or None."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return None
            try:
                return self._post(body, remaining)
            except _Failure as failure:
                self.last_error = str(failure)
                if not failure.retry:
                    self._warn(str(failure), str(failure))
                    return None
                attempt += 1
                backoff = min(_MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                wait = failure.wait if failure.wait is not None else backoff
                if time.monotonic() + wait >= deadline:
                    self._warn(
                        "gave-up", f"{failure}; giving up on this batch after {attempt} tries"
                    )
                    return None
                logger.debug("traceroot: %s; retrying in %.2fs", failure, wait)
                if self._stop.wait(wait):
                    return None

    def _post(self, body: bytes, timeout: float) -> int:
        # The HTTP and TLS stack load here, in the export thread, not at start-up.
        import http.client
        import socket
        import ssl

        conn = self._connection(timeout)
        try:
            conn.request("POST", self._path, body=body, headers=self._headers)
            response = conn.getresponse()
            response.read()
        except socket.gaierror as exc:
            self._close()
            raise _Failure(
                f"cannot resolve host {self.host!r} ({exc.strerror})", retry=True
            ) from None
        except ssl.SSLError as exc:
            self._close()
            raise _Failure(
                f"TLS error talking to {self.host}: {exc.reason or exc}", retry=False
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            self._close()
            raise _Failure(f"cannot reach {self.endpoint}: {exc!r}", retry=True) from None
        status = response.status
        if status in (401, 403):
            raise _Failure(
                f"API key rejected by {self.host} (HTTP {status}); check TRACEROOT_API_KEY",
                retry=False,
            )
        if status in _RETRYABLE:
            raise _Failure(
                f"{self.host} answered HTTP {status}",
                retry=True,
                wait=_retry_after(response.getheader("Retry-After")),
            )
        if status >= 400 and status != 413:
            raise _Failure(f"{self.host} refused the spans with HTTP {status}", retry=False)
        return status

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._netloc, timeout=timeout)
        else:
            self._conn.timeout = timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _warn(self, key: str, message: str) -> None:
        # One line per kind of failure per minute: a dead backend must not flood stderr.
        now = time.monotonic()
        if now - self._last_warning.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._last_warning[key] = now
            logger.warning("traceroot: %s", message)

    def shutdown(self) -> None:
        self._stop.set()
        self._close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
