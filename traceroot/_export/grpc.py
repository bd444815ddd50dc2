"""OTLP/gRPC export: OpenTelemetry's own gRPC exporter, under our batcher.

Needs `pip install 'traceroot[grpc]'`. The exporter (and its channel) is made
in the process that exports: a forked child makes its own, as gRPC requires,
and never touches its parent's. Failures are reported in the words `--check`
uses, once a minute, instead of the exporter's own log lines; a backend that
is plainly absent is flagged `unreachable`, so exit does not wait for it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from traceroot._export.finisher import encodable
from traceroot._export.transport import Failure, explain
from traceroot._otlp_config import OTLPSettings

logger = logging.getLogger("traceroot")

_WARN_EVERY = 60.0
_OTEL_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"


def grpc_available() -> bool:
    """Whether the `grpc` extra is installed (found without importing it)."""
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None
    except (ImportError, ValueError):
        return False


class _QuietFilter(logging.Filter):
    """Hides the OpenTelemetry exporter's own lines about our endpoint: we report it ourselves."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return self.target not in record.getMessage()
        except Exception:
            return True


class GRPCExporter(SpanExporter):
    """Sends spans over OTLP/gRPC; counts what was delivered like the HTTP exporter."""

    def __init__(
        self, endpoint: str, headers: Mapping[str, str], timeout: float, settings: OTLPSettings
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        self.host = parts.hostname or ""
        self.port = parts.port or 4317
        self._secure = parts.scheme == "https"
        self._target = f"{self.host}:{self.port}"
        self.endpoint = f"{parts.scheme}://{self._target}"
        self._headers = {k.lower(): v for k, v in headers.items()}
        self._timeout = timeout
        self.settings = settings
        self._inner: Any = None
        self._pid = 0
        self._lock = threading.Lock()
        self._hurry = False
        self._last_warning: dict[str, float] = {}
        self.last_error: str | None = None
        self.last_status: int | None = None
        self.unreachable = False
        self.final = False
        self.delivered_in_last_export = 0
        logging.getLogger(_OTEL_LOGGER).addFilter(_QuietFilter(self._target))
        # Imported now, not on first export: that may come at interpreter exit, when the
        # module's own import-time work (thread pools) can no longer run. No channel yet.
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401

    def describe_route(self) -> list[tuple[str, str]]:
        """(label, value) lines for `--check`."""
        from traceroot._export.transport import describe_ca

        lines = [
            ("protocol", "grpc (OTLP/gRPC)"),
            ("proxy", "left to gRPC, which reads grpc_proxy / https_proxy and no_proxy itself"),
        ]
        if self._secure:
            lines.append(("CA certificates", describe_ca(self.settings)))
            if self.settings.client_cert:
                source = self.settings.sources.get("CLIENT_CERTIFICATE", "")
                lines.append(("client certificate", f"{self.settings.client_cert} (from {source})"))
        lines.append(("compression", self.settings.compression))
        return lines

    def _exporter(self) -> Any:
        """This process's OpenTelemetry exporter, made on first use (and anew after a fork)."""
        with self._lock:
            if self._inner is None or self._pid != os.getpid():
                # After a fork the parent's channel is left alone: closing it here would
                # act on gRPC state the child does not own.
                self._inner = self._make()
                self._pid = os.getpid()
            return self._inner

    def _make(self) -> Any:
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        compression = grpc.Compression.Gzip
        if self.settings.compression == "none":
            compression = grpc.Compression.NoCompression
        credentials = None
        if self._secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self.settings.ca_file),
                private_key=_read(self.settings.client_key),
                certificate_chain=_read(self.settings.client_cert),
            )
        return OTLPSpanExporter(
            endpoint=self._target,
            insecure=not self._secure,
            credentials=credentials,
            headers=self._headers or None,
            timeout=self._timeout,
            compression=compression,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.delivered_in_last_export = 0
        if not spans:
            return SpanExportResult.SUCCESS
        if self._hurry and not self.unreachable:
            # At exit, a receiver that is not there is found in one connect, not in the
            # exporter's retries (which would use the whole shutdown budget).
            failure = self._diagnose(connect_only=True)
            if failure is not None and failure.absent:
                self._report(failure)
        if self._hurry and self.unreachable:
            return SpanExportResult.FAILURE
        try:
            exporter = self._exporter()
            if self._hurry and self.unreachable:  # found absent while the exporter was made
                return SpanExportResult.FAILURE
            # A string protobuf cannot hold, or an integer beyond 64 bits, would fail the batch
            # (a name) or be dropped with a traceback on stderr (a value), in the exporter's
            # encoder: made encodable first.
            result = exporter.export([encodable(span) for span in spans])
        except OSError as exc:  # a certificate file that cannot be read
            self._report(Failure(f"cannot read a TLS file for gRPC ({exc.strerror})", retry=False))
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.unreachable = False
            self.delivered_in_last_export = len(spans)
            return result
        failure = self._diagnose()
        assert failure is not None
        self._report(failure)
        return SpanExportResult.FAILURE

    def _diagnose(self, connect_only: bool = False) -> Failure | None:
        """Why the receiver did not take the spans, found by connecting to it ourselves.

        `connect_only`: just whether it can be reached (None when it can).
        """
        try:
            with socket.create_connection((self.host, self.port), timeout=min(self._timeout, 3)):
                pass
        except OSError as exc:
            return explain(exc, self._target, self.settings.endpoint_variable, self._timeout)
        if connect_only:
            return None
        if self._secure:
            try:
                context = ssl.create_default_context(cafile=self.settings.ca_file)
                context.set_alpn_protocols(["h2"])
                with socket.create_connection((self.host, self.port), timeout=3) as raw:
                    with context.wrap_socket(raw, server_hostname=self.host):
                        pass
            except (OSError, ssl.SSLError) as exc:
                return explain(exc, self._target, self.settings.endpoint_variable, self._timeout)
        return Failure(
            f"the gRPC receiver at {self._target} did not accept the spans within "
            f"{self._timeout:g} s (is it an OTLP/gRPC port? OTLP/HTTP is usually 4318); "
            f"check {self.settings.endpoint_variable} and OTEL_EXPORTER_OTLP_PROTOCOL",
            retry=True,
        )

    def _report(self, failure: Failure) -> None:
        self.last_error = failure.message
        self.unreachable = failure.absent
        now = time.monotonic()
        if now - self._last_warning.get(failure.message, -_WARN_EVERY) >= _WARN_EVERY:
            self._last_warning[failure.message] = now
            logger.warning("traceroot: %s", failure.message)

    def hurry(self) -> None:
        """Exit has begun: if the receiver is plainly absent, cut short any retry under way."""
        self._hurry = True
        if not self.unreachable:
            failure = self._diagnose(connect_only=True)
            if failure is not None and failure.absent:
                self._report(failure)
        inner = self._inner
        if self.unreachable and inner is not None and self._pid == os.getpid():
            inner.shutdown()  # wakes the exporter's retry wait; exports now fail at once

    def shutdown(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None and self._pid == os.getpid():
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()
