"""OTLP/gRPC export: OpenTelemetry's own gRPC exporter, under our batcher.

Needs `pip install 'traceroot[grpc]'`. The exporter (and its channel) is made
in the process that exports: a forked child makes its own, as gRPC requires,
and never touches its parent's. Failures are reported in the words `--check`
uses, once a minute, instead of the exporter's own log lines; a backend that
is plainly absent is flagged `unreachable`, so exit does not wait for it.

The server is trusted as the OTLP/HTTP exporter trusts it (`tls_context`):
OTEL_EXPORTER_OTLP_CERTIFICATE, else SSL_CERT_FILE / SSL_CERT_DIR, else gRPC's
own roots. Until a first export succeeds (and again after a failure), the
receiver is looked at directly before gRPC is let at it: the first bytes of
HTTP/2, over the same TLS. A failure that retrying cannot heal (a certificate
not trusted, plain text where TLS is expected or the reverse, an OTLP/HTTP port)
is reported at once, in words, and no export waits out the timeout on it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from traceroot import _compat as compat
from traceroot._export.finisher import encodable
from traceroot._export.transport import Failure, ca_locations, explain, tls_problem
from traceroot._otlp_config import OTLPSettings

logger = logging.getLogger("traceroot")

_WARN_EVERY = 60.0
_OTEL_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"
# What a client opens an HTTP/2 connection with: the preface and an empty SETTINGS frame.
# An HTTP/2 server (gRPC) answers with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS, _H2_GOAWAY = 0x04, 0x07
_TEXT = frozenset(b"\t\n\r" + bytes(range(0x20, 0x7F)))
# OpenSSL's names in a CA folder: the subject hash and a counter (`.r0` would be a CRL).
_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")
_NOT_TLS = ("wrong version number", "record layer", "packet length", "http request")


def grpc_available() -> bool:
    """Whether the `grpc` extra is installed (found without importing it)."""
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None
    except (ImportError, ValueError):
        return False


class _QuietFilter(logging.Filter):
    """Hides the OpenTelemetry exporter's own lines about our exports: we report them ourselves.

    A line is ours when it names one of our endpoints, or comes from a thread while it runs
    one of our exports or shutdowns ("Shutdown in progress, aborting retry." names none).
    """

    def __init__(self) -> None:
        super().__init__()
        self.targets: set[str] = set()
        self.threads: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread is not None and record.thread in self.threads:
            return False
        try:
            message = record.getMessage()
        except Exception:
            return True
        return not any(target in message for target in tuple(self.targets))


_QUIET = _QuietFilter()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The OpenTelemetry exporter's lines from this thread are hidden meanwhile."""
    ident = threading.get_ident()
    nested = ident in _QUIET.threads
    _QUIET.threads.add(ident)
    try:
        yield
    finally:
        if not nested:
            _QUIET.threads.discard(ident)


def _import_exporter() -> None:
    """Import OpenTelemetry's gRPC exporter, and with it gRPC, with gRPC's C core quiet.

    gRPC reads GRPC_VERBOSITY once, when it is imported. Unset, grpcio 1.65 and later leave
    the C core's logging at its library's default, which prints INFO lines on stderr, such as
    "I1203 ... ssl_transport_security.cc:2563] Handshake failed ..." for every TLS attempt that
    fails; before 1.65 unset meant ERROR. So, only when the user has not set GRPC_VERBOSITY
    and nothing has imported gRPC yet, it is ERROR while gRPC is imported: gRPC's errors,
    the user's own too, are still printed. The variable is removed again right after, so the
    program and its children see the environment they were given.
    """
    if "grpc" in sys.modules or "GRPC_VERBOSITY" in os.environ:
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401

        return
    os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401
    finally:
        if os.environ.get("GRPC_VERBOSITY") == "ERROR":
            del os.environ["GRPC_VERBOSITY"]


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
        # How the receiver is looked at directly (TLS as gRPC does it; None: plain text).
        self._probe_context: ssl.SSLContext | None = None
        self._verified = False  # an export went through: no more looking first
        self.last_error: str | None = None
        self.last_status: int | None = None
        self.unreachable = False
        self.final = False
        self.delivered_in_last_export = 0
        _QUIET.targets.add(self._target)
        otel_logger = logging.getLogger(_OTEL_LOGGER)
        if _QUIET not in otel_logger.filters:
            otel_logger.addFilter(_QUIET)
        # Imported now, not on first export: that may come at interpreter exit, when the
        # module's own import-time work (thread pools) can no longer run. No channel yet.
        _import_exporter()

    def describe_route(self) -> list[tuple[str, str]]:
        """(label, value) lines for `--check`."""
        from traceroot._export.transport import describe_ca

        lines = [
            ("protocol", "grpc (OTLP/gRPC)"),
            ("proxy", "left to gRPC, which reads grpc_proxy / https_proxy and no_proxy itself"),
        ]
        if self._secure:
            if ca_locations(self.settings, os.environ):
                lines.append(("CA certificates", describe_ca(self.settings)))
            elif default := os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"):
                lines.append(
                    ("CA certificates", f"{default} (from GRPC_DEFAULT_SSL_ROOTS_FILE_PATH)")
                )
            else:
                lines.append(("CA certificates", "the root certificates grpcio comes with"))
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
            roots, self._probe_context = _trust(self.settings, os.environ)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=roots,
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
            if not self._verified and (failure := self._probe()) is not None:
                self._report(failure)  # one that retrying will not heal: gRPC is not let at it
                return SpanExportResult.FAILURE
            # A string protobuf cannot hold, or an integer beyond 64 bits, would fail the batch
            # (a name) or be dropped with a traceback on stderr (a value), in the exporter's
            # encoder: made encodable first.
            with _quiet():
                result = exporter.export([encodable(span) for span in spans])
        except _Unloadable as failed:  # CA certificates or a client certificate that do not load
            self._report(failed.failure)
            return SpanExportResult.FAILURE
        except OSError as exc:  # a certificate file that cannot be read
            self._report(Failure(f"cannot read a TLS file for gRPC ({exc.strerror})", retry=False))
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.unreachable = False
            self.last_error = None  # an earlier failure no longer explains what is undelivered
            self._verified = True
            self.delivered_in_last_export = len(spans)
            return result
        self._verified = False
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
        if (failure := self._probe()) is not None:
            return failure
        return Failure(
            f"the gRPC receiver at {self._target} did not accept the spans within "
            f"{self._timeout:g} s (is it an OTLP/gRPC port? OTLP/HTTP is usually 4318); "
            f"check {self.settings.endpoint_variable} and OTEL_EXPORTER_OTLP_PROTOCOL",
            retry=True,
        )

    def _probe(self) -> Failure | None:
        """What is plainly wrong with the receiver, seen by opening HTTP/2 to it as gRPC would.

        None when it answers in HTTP/2, or when nothing can be told (not reachable, slow, a
        proxy on the way): gRPC is then left to try, and to retry.
        """
        if _proxied(self.host, os.environ):
            return None  # gRPC goes through the proxy: a direct look says nothing of its route
        where, variable = self._target, self.settings.endpoint_variable
        wait = min(self._timeout, 3.0)
        if self._secure:
            if self._probe_context is None:
                return None
            try:
                answer = _first_bytes(self.host, self.port, wait, self._probe_context)
            except ssl.SSLCertVerificationError as exc:
                return explain(exc, where, variable, self._timeout)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                return None  # closed during the handshake: could be a passing hiccup
            except ssl.SSLError as exc:
                if any(s in str(exc).lower().replace("_", " ") for s in _NOT_TLS):
                    return self._not_tls(exc)
                return explain(exc, where, variable, self._timeout)  # e.g. client certificate
            except OSError:
                return None
        else:
            try:
                answer = _first_bytes(self.host, self.port, wait, None)
            except OSError:
                return None
            if answer[:2] in (b"\x15\x03", b"\x16\x03") or (
                not answer and _speaks_tls(self.host, self.port, wait)
            ):
                return Failure(
                    f"{where} speaks TLS, not plain text: use https:// in {variable} "
                    "(and OTEL_EXPORTER_OTLP_CERTIFICATE if its CA is not a public one)",
                    retry=False,
                    absent=True,
                )
        if answer and all(byte in _TEXT for byte in answer):
            return self._http_port()
        return None

    def _not_tls(self, exc: ssl.SSLError) -> Failure:
        """The receiver answered a TLS greeting in something else: what does it speak?"""
        try:
            answer = _first_bytes(self.host, self.port, min(self._timeout, 3.0), None)
        except OSError:
            answer = b""
        if _is_http2(answer):
            return Failure(
                f"{self._target} speaks plain-text gRPC, not TLS: use http:// in "
                f"{self.settings.endpoint_variable}, or set OTEL_EXPORTER_OTLP_INSECURE=true "
                "for an endpoint written without a scheme",
                retry=False,
                absent=True,
            )
        if answer and all(byte in _TEXT for byte in answer):
            return self._http_port()
        return explain(exc, self._target, self.settings.endpoint_variable, self._timeout)

    def _http_port(self) -> Failure:
        variable = self.settings.sources.get("PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        return Failure(
            f"{self._target} answered in HTTP/1, not gRPC: it looks like an OTLP/HTTP port "
            f"(4318). Set {variable}=http/protobuf and send to the OTLP/HTTP port 4318, or send "
            f"gRPC to the receiver's gRPC port (4317); check {self.settings.endpoint_variable}",
            retry=False,
            absent=True,
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
            with _quiet():
                inner.shutdown()  # wakes the exporter's retry wait; exports now fail at once

    def shutdown(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None and self._pid == os.getpid():
            with _quiet():
                inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


class _Unloadable(Exception):
    """The CA certificates or the client certificate cannot be loaded (the failure, in words)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _trust(
    settings: OTLPSettings, environ: Mapping[str, str]
) -> tuple[bytes | None, ssl.SSLContext | None]:
    """(root certificates for gRPC, a TLS context trusting exactly those, for looking first).

    The certificates are those the OTLP/HTTP exporter trusts (`ca_locations`). When no
    variable names any, gRPC keeps its own (None): GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else
    those grpcio comes with. The context is None when gRPC's trust cannot be had, and then
    nothing is looked at first. Raises `_Unloadable` (in words) when the certificates or the
    client certificate cannot be loaded.
    """
    locations = ca_locations(settings, environ)
    if locations or settings.client_cert:
        # Loaded as the OTLP/HTTP exporter loads them, for its words when they do not load.
        if (problem := tls_problem(settings, environ)) is not None:
            raise _Unloadable(problem)
    roots = _pem_roots(locations) or None
    try:
        if roots is not None:
            context = ssl.create_default_context(cadata=roots.decode("ascii", "replace"))
        elif default := (
            environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH") or compat.grpcio_root_certificates()
        ):
            context = ssl.create_default_context(cafile=default)
        else:
            return None, None
        if settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key)
    except (OSError, ssl.SSLError):
        return roots, None  # gRPC reports it in its own way
    return roots, _like_grpc(context)


def _pem_roots(locations: Sequence[tuple[str, str]]) -> bytes:
    """The certificates in these files and folders (a folder's hashed names, as OpenSSL looks
    them up), as one PEM bundle, each once."""
    texts: list[bytes] = []
    for _variable, location in locations:
        if not os.path.isdir(location):
            with contextlib.suppress(OSError):
                texts.append(_read(location) or b"")
            continue
        try:
            names = sorted(os.listdir(location))
        except OSError:
            continue
        for name in names:
            if _HASHED_NAME.fullmatch(name):
                with contextlib.suppress(OSError):
                    texts.append(_read(os.path.join(location, name)) or b"")
    blocks = re.findall(
        rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", b"\n".join(texts), re.S
    )
    return b"\n".join(dict.fromkeys(blocks))


def _like_grpc(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context`, offering HTTP/2 as gRPC does, and no stricter than gRPC's TLS library."""
    context.set_alpn_protocols(["h2"])
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT  # Python 3.13 sets it; BoringSSL does not
    return context


def _first_bytes(host: str, port: int, wait: float, context: ssl.SSLContext | None) -> bytes:
    """The first bytes (at most a frame header) the receiver answers HTTP/2's opening with."""
    with socket.create_connection((host, port), timeout=wait) as raw:
        with context.wrap_socket(raw, server_hostname=host) if context else raw as sock:
            sock.sendall(_H2_PREFACE)
            answer = b""
            while len(answer) < 9:
                chunk = sock.recv(9 - len(answer))
                if not chunk:
                    break
                answer += chunk
            return answer


def _is_http2(answer: bytes) -> bool:
    return len(answer) == 9 and answer[3] in (_H2_SETTINGS, _H2_GOAWAY)


def _speaks_tls(host: str, port: int, wait: float) -> bool:
    """Whether a TLS handshake (of any certificate) with the receiver completes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=wait) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return True
    except OSError:
        return False


def _proxied(host: str, environ: Mapping[str, str]) -> bool:
    """Whether gRPC reaches `host` through a proxy (grpc_proxy, https_proxy, http_proxy)."""
    names = ("grpc_proxy", "https_proxy", "http_proxy")
    if not any(environ.get(n) or environ.get(n.upper()) for n in names):
        return False
    import urllib.request

    for key in ("no_grpc_proxy", "no_proxy", "NO_PROXY"):
        if (no_proxy := environ.get(key)) is not None:
            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            return not bypass(host, {"no": no_proxy})
    return True
