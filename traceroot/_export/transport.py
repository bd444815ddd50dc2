"""OTLP/HTTP protobuf span exporter on urllib3, with the retry rules a hosted backend needs.

The route is the one every Python HTTP tool takes: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
(either case, credentials in the proxy URL), the CA from `OTEL_EXPORTER_OTLP_CERTIFICATE`,
else `SSL_CERT_FILE`/`SSL_CERT_DIR`, else `REQUESTS_CA_BUNDLE`, else `CURL_CA_BUNDLE`, else
the system store; a client certificate for
mTLS; `user:password@` in the URL sent as Basic auth. Connections are kept alive and
a forked child opens its own (sharing the parent's socket interleaves request bodies).

429 and 5xx are retried with exponential backoff and jitter, honouring `Retry-After`,
within the timeout; 413 splits the batch, and a span refused on its own is dropped
and counted; 401/403 are reported once and not retried; 307/308 to the same scheme,
host and port are followed, any other redirect is reported. A backend that is plainly
absent (refused, unresolvable, failing TLS, speaking another protocol) is flagged
`unreachable`, and once `hurry()` is called (at exit) its spans fail at once instead
of waiting out the retries. Every failure is described by `explain()`, the words
`--check` uses too. The body is written by `otlp_writer`, without the protobuf runtime.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from traceroot._export.otlp_writer import encode_requests
from traceroot._otlp_config import OTLPSettings
from traceroot.version import __version__

if TYPE_CHECKING:
    import urllib3

logger = logging.getLogger("traceroot")

_RETRYABLE = {429, 500, 502, 503, 504}
_MAX_BACKOFF = 8.0
_MAX_REDIRECTS = 3
# Spans per request are also bounded in bytes (before gzip): a batch of large spans is sent
# as several requests, none carrying more than this.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# Requests one batch may cost while 413 splits it: halving down to one span is ~log2(n).
_MAX_SPLIT_REQUESTS = 40
_WARN_EVERY = 60.0


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, in words, and what follows from it."""

    message: str
    retry: bool  # trying again may help
    absent: bool = False  # the backend is plainly not there: exit should not wait for it
    wait: float | None = None  # the backend's Retry-After


class _Attempt(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class Proxy:
    """The proxy a destination is reached through (no credentials in `url`)."""

    url: str
    variable: str
    headers: Mapping[str, str]

    def describe(self) -> str:
        auth = ", with credentials" if self.headers else ""
        return f"{self.url} (from {self.variable}{auth})"


def find_proxy(url: str, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy for `url` from `{scheme}_proxy`/`ALL_PROXY` (lower case first), unless NO_PROXY."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    for key in ("no_proxy", "NO_PROXY"):
        if (no_proxy := env.get(key)) is not None:
            # The standard library's matcher: host or domain suffixes, ports, `*`. Imported
            # here: urllib.request (with hashlib, email, tempfile) costs every process ~6 ms.
            import urllib.request

            bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
            if bypass(parts.hostname or "", {"no": no_proxy}):
                return None
            break
    scheme = parts.scheme
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = (env.get(name) or "").strip()
        if not value:
            continue
        if "://" not in value:
            value = "http://" + value
        proxy = urlsplit(value)
        headers: dict[str, str] = {}
        if proxy.username is not None:
            userpass = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(userpass.encode()).decode(
                "ascii"
            )
        netloc = proxy.netloc.rpartition("@")[2]
        return Proxy(f"{proxy.scheme}://{netloc}", name, headers)
    return None


# After OTEL_EXPORTER_OTLP_CERTIFICATE and SSL_CERT_FILE/SSL_CERT_DIR, the bundles requests
# and curl read, in that order (a machine set up for those tools is set up for us too).
_TOOL_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _ca_from_environment(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, path) of the CA locations the environment names, in the order they win:
    SSL_CERT_FILE and SSL_CERT_DIR together, else the first set of the tools' bundles."""
    found = [(v, env[v]) for v in ("SSL_CERT_FILE", "SSL_CERT_DIR") if env.get(v)]
    if not found:
        found = [(v, env[v]) for v in _TOOL_BUNDLES if env.get(v)][:1]
    return found


def ca_locations(settings: OTLPSettings, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, file or folder) of the CA certificates the settings and the environment
    name, in the order `tls_context` takes them; empty when none is named."""
    if settings.ca_file:
        variable = settings.sources.get("CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")
        return [(variable, settings.ca_file)]
    return _ca_from_environment(environ)


def tls_problem(settings: OTLPSettings, environ: Mapping[str, str]) -> Failure | None:
    """Why the CA or client certificates named cannot be loaded, in words; None if they load."""
    try:
        tls_context(settings, environ)
    except _Attempt as failed:
        return failed.failure
    return None


def describe_ca(settings: OTLPSettings, environ: Mapping[str, str] | None = None) -> str:
    """Which certificates verify the server: a file or folder and its variable, or the system's."""
    env = os.environ if environ is None else environ
    if settings.ca_file:
        return f"{settings.ca_file} (from {settings.sources.get('CERTIFICATE', 'settings')})"
    found = [f"{path} (from {variable})" for variable, path in _ca_from_environment(env)]
    return ", ".join(found) if found else "the system's trusted certificates"


def tls_context(settings: OTLPSettings, environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A verifying TLS context with the configured CA (or the system store) and client cert.

    Raises `_Attempt` when a certificate file cannot be loaded.
    """
    env = os.environ if environ is None else environ
    found = dict(_ca_from_environment(env))
    try:
        if settings.ca_file:
            context = ssl.create_default_context(cafile=settings.ca_file)
        elif found:
            cafile = found.get("SSL_CERT_FILE")
            capath = found.get("SSL_CERT_DIR")
            for variable in _TOOL_BUNDLES:  # requests takes a folder there too
                if variable in found:
                    path = found[variable]
                    cafile, capath = (None, path) if os.path.isdir(path) else (path, None)
            context = ssl.create_default_context(cafile=cafile, capath=capath)
        else:
            context = ssl.create_default_context()
            if not context.get_ca_certs() and not context.cert_store_stats().get("x509_ca"):
                _load_certifi(context)
    except (OSError, ssl.SSLError) as exc:
        variable = settings.sources.get("CERTIFICATE") or " or ".join(found) or "SSL_CERT_FILE"
        raise _Attempt(
            Failure(
                f"cannot load the CA certificates ({_reason(exc)}); check {variable}",
                retry=False,
                absent=True,
            )
        ) from None
    if settings.client_cert:
        try:
            context.load_cert_chain(settings.client_cert, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            variables = " and ".join(
                settings.sources.get(k, f"OTEL_EXPORTER_OTLP_{k}")
                for k in ("CLIENT_CERTIFICATE", "CLIENT_KEY")
            )
            raise _Attempt(
                Failure(
                    f"cannot load the client certificate ({_reason(exc)}); check {variables}",
                    retry=False,
                    absent=True,
                )
            ) from None
    return context


def _load_certifi(context: ssl.SSLContext) -> None:
    # Some Python builds (macOS installers) come with an empty system store.
    try:
        import certifi
    except ImportError:
        return
    context.load_verify_locations(certifi.where())


def _reason(exc: BaseException) -> str:
    """A short human reason for an OS or TLS error, never a repr."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLEOFError):
        return "the server closed the connection during the TLS handshake"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror).partition(" (_ssl.c")[0]
    return type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, its causes and contexts, and exceptions held in its args (urllib3 wraps them)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if item in seen or len(seen) > 12:
            continue
        seen.append(item)
        todo.extend(x for x in (item.__cause__, item.__context__) if x is not None)
        todo.extend(arg for arg in item.args if isinstance(arg, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return seen


def _first(chain: list[BaseException], kind: type[BaseException] | tuple[type, ...]) -> Any:
    return next((e for e in chain if isinstance(e, kind)), None)


def proxy_refusal(proxy: Proxy) -> Failure:
    """HTTP 407: the proxy, not the backend, refused us; named without its credentials."""
    answer = "HTTP 407 Proxy Authentication Required"
    if proxy.headers:
        message = (
            f"the proxy {proxy.url} refused the credentials ({answer}); check the user and "
            f"password in {proxy.variable}"
        )
    else:
        where = proxy.url.partition("://")
        message = (
            f"the proxy {proxy.url} requires credentials ({answer}); check {proxy.variable}: "
            f"give them as {where[0]}://user:password@{where[2]}"
        )
    return Failure(message, retry=False, absent=True)


def explain(
    exc: BaseException,
    where: str,
    url_variable: str,
    timeout: float,
    proxy: Proxy | None = None,
) -> Failure:
    """One line naming what went wrong reaching `where` (host:port) and what to fix."""
    import urllib3.exceptions as u3

    chain = _chain(exc)
    proxy_error = _first(chain, u3.ProxyError)
    if proxy is not None and proxy_error is not None:
        if _first(chain, ConnectionRefusedError) is not None:
            return Failure(
                f"connection refused by the proxy {proxy.url}: is it running? "
                f"check {proxy.variable}",
                retry=True,
                absent=True,
            )
        if _first(chain, socket.gaierror) is not None:
            return Failure(
                f"DNS lookup of the proxy {proxy.url} failed; check {proxy.variable}",
                retry=True,
                absent=True,
            )
        tunnel = next((str(e) for e in chain if "Tunnel connection failed" in str(e)), "")
        # urllib3's text ends in reprs (`...Required')))`): only the status line is kept.
        import re

        answer = re.search(r"Tunnel connection failed:\s*(\d{3})\s*([A-Za-z][A-Za-z -]*)", tunnel)
        if answer is not None and answer.group(1) == "407":
            return proxy_refusal(proxy)
        said = f"HTTP {answer.group(1)} {answer.group(2).strip()}" if answer else "no tunnel"
        return Failure(
            f"the proxy {proxy.url} would not connect to {where} ({said}); check "
            f"{proxy.variable}, or add the host to NO_PROXY",
            retry=False,
            absent=True,
        )
    if (dns := _first(chain, (socket.gaierror, u3.NameResolutionError))) is not None:
        gai = _first(chain, socket.gaierror)
        detail = f" ({gai.strerror})" if gai is not None and gai.strerror else ""
        host = where.rpartition(":")[0] if ":" in where else where
        del dns
        return Failure(
            f"DNS lookup of {host} failed{detail}; check {url_variable}", retry=True, absent=True
        )
    if _first(chain, ConnectionRefusedError) is not None:
        return Failure(
            f"connection refused by {where}: is the backend running? check {url_variable}",
            retry=True,
            absent=True,
        )
    if (cert := _first(chain, ssl.SSLCertVerificationError)) is not None:
        return Failure(
            f"TLS certificate of {where} not trusted ({_reason(cert)}); set "
            "OTEL_EXPORTER_OTLP_CERTIFICATE (or SSL_CERT_FILE) to the CA that signed it, "
            f"or check {url_variable}",
            retry=False,
            absent=True,
        )
    if (tls := _first(chain, ssl.SSLError)) is not None:
        reason = _reason(tls)
        if any(s in reason for s in ("wrong version number", "record layer", "packet length")):
            return Failure(
                f"{where} does not speak TLS: use http:// in {url_variable}",
                retry=False,
                absent=True,
            )
        hint = ""
        if any(word in reason for word in ("certificate", "alert", "handshake")):
            hint = (
                "; if the server requires a client certificate, set "
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
            )
        return Failure(
            f"TLS handshake with {where} failed ({reason}){hint}; check {url_variable}",
            retry=False,
            absent=True,
        )
    closed = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
    if _first(chain, closed) is not None:
        # Closed with no answer at all: a backend restarting, a load balancer's reset. Sent
        # again, as a 503 would be (a port of another protocol answers in its own bytes).
        return Failure(
            f"{where} closed the connection before answering; check {url_variable} if this goes on",
            retry=True,
        )
    if (bad := _first(chain, http.client.BadStatusLine)) is not None:
        line = str(bad.args[0]) if bad.args else ""
        if line.startswith("\x00\x00") or "\x00\x00" in line[:9]:
            return Failure(
                f"{where} answered in HTTP/2, not OTLP/HTTP: it looks like a gRPC port (4317). "
                "Set OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or send to the OTLP/HTTP port 4318",
                retry=False,
                absent=True,
            )
        if line.startswith("\x15\x03") or line.startswith("\x16\x03"):
            return Failure(
                f"{where} answered in TLS: use https:// in {url_variable}",
                retry=False,
                absent=True,
            )
        return Failure(
            f"{where} did not answer in HTTP (is it an OTLP/HTTP receiver?); check {url_variable}",
            retry=False,
            absent=True,
        )
    if _first(chain, (u3.ConnectTimeoutError,)) is not None:
        return Failure(
            f"could not connect to {where} within {timeout:g} s; check {url_variable}",
            retry=True,
            absent=True,
        )
    if _first(chain, (u3.ReadTimeoutError, TimeoutError, socket.timeout)) is not None:
        return Failure(f"no answer from {where} within {timeout:g} s (timeout)", retry=True)
    if _first(chain, (http.client.RemoteDisconnected, ConnectionResetError)) is not None:
        return Failure(f"{where} closed the connection without answering", retry=True)
    if (os_error := _first(chain, OSError)) is not None and os_error.strerror:
        return Failure(f"cannot reach {where} ({os_error.strerror})", retry=True)
    return Failure(f"cannot reach {where} ({type(exc).__name__})", retry=True)


def _check_headers(headers: Mapping[str, str]) -> str | None:
    """The name of a header whose name or value would break the request, if any."""
    for name, value in headers.items():
        if any(c in f"{name}{value}" for c in "\r\n\0"):
            return name
    return None


class OTLPHTTPExporter(SpanExporter):
    """Sends spans as one ExportTraceServiceRequest per batch (gzip'd unless told not to)."""

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str],
        timeout: float,
        settings: OTLPSettings | None = None,
        environ: Mapping[str, str] | None = None,
        key_variable: str = "TRACEROOT_API_KEY",
    ) -> None:
        self.settings = settings or OTLPSettings()
        self._environ = dict(os.environ if environ is None else environ)
        parts = urlsplit(endpoint)
        self.host = parts.hostname or ""
        self._scheme = parts.scheme
        self._netloc = parts.netloc.rpartition("@")[2]
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # The URL without credentials: the only form that is ever shown or logged.
        self.endpoint = f"{parts.scheme}://{self._netloc}{path}"
        self._url = self.endpoint
        self._url_variable = self.settings.endpoint_variable
        self._key_variable = key_variable
        self._headers = {
            "User-Agent": f"traceroot-python/{__version__}",
            **headers,
            "Content-Type": "application/x-protobuf",
        }
        if parts.username is not None and not any(k.lower() == "authorization" for k in headers):
            userpass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(userpass.encode()).decode(
                "ascii"
            )
        self._gzip = self.settings.compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = timeout
        self.proxy = find_proxy(self.endpoint, self._environ)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by shutdown() and hurry(): a retry wait ends
        self._hurry = False
        self._pool: urllib3.PoolManager | None = None
        self._pool_pid = 0
        self._broken: Failure | None = None
        if (bad := _check_headers(self._headers)) is not None:
            variable = key_variable if bad.lower() == "authorization" else "the headers"
            self._broken = Failure(
                f"the {bad!r} header holds a line break and cannot be sent; check {variable}",
                retry=False,
                absent=True,
            )
        if self.proxy is not None and not self.proxy.url.startswith(("http://", "https://")):
            scheme = self.proxy.url.partition("://")[0]
            host = urlsplit(self.endpoint).hostname
            self._broken = Failure(
                f"{self.proxy.variable} names a {scheme}:// proxy, which traceroot cannot use: "
                f"set an http:// or https:// proxy there, or add {host} to NO_PROXY",
                retry=False,
                absent=True,
            )
        self._last_warning: dict[str, float] = {}
        self.last_error: str | None = None
        self.last_status: int | None = None
        self.unreachable = False  # the last attempt found the backend plainly absent
        self.final = False  # ... or refusing us for good (401/403): exit need not wait
        self.delivered_in_last_export = 0
        self.refused = 0  # spans dropped because the backend refused them on their own (413)
        self._lone_refusals = 0

    # --- what --check shows

    def describe_route(self) -> list[tuple[str, str]]:
        """(label, value) lines: protocol, proxy, CA, client certificate, compression."""
        lines = [("protocol", "http/protobuf (OTLP/HTTP)")]
        lines.append(("proxy", self.proxy.describe() if self.proxy else "none"))
        if self._scheme == "https":
            lines.append(("CA certificates", describe_ca(self.settings, self._environ)))
            if self.settings.client_cert:
                source = self.settings.sources.get("CLIENT_CERTIFICATE", "")
                lines.append(("client certificate", f"{self.settings.client_cert} (from {source})"))
        lines.append(("compression", "gzip" if self._gzip else "none"))
        return lines

    # --- exporting

    def hurry(self) -> None:
        """Exit has begun: stop retrying a backend that is plainly absent (not a slow one)."""
        self._hurry = True
        self._wake.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.delivered_in_last_export = 0
        if not spans:
            return SpanExportResult.SUCCESS
        self._lone_refusals = 0
        refused_before = self.refused
        ok = self._export_split(spans, [_MAX_SPLIT_REQUESTS])
        if (refused := self.refused - refused_before) > 0:
            self._warn(
                "413",
                f"the backend at {self.host} refused {refused} span(s) as too large (HTTP 413), "
                f"even sent on their own; they were dropped ({self.refused} in all so far)",
            )
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _export_split(self, spans: Sequence[ReadableSpan], budget: list[int]) -> bool:
        """Send `spans` in requests of at most MAX_REQUEST_BYTES; whether all were accepted."""
        ok = True
        offset = 0
        for count, request in encode_requests(spans, MAX_REQUEST_BYTES):
            ok = self._export_one(spans[offset : offset + count], request, budget) and ok
            offset += count
        return ok

    def _export_one(self, spans: Sequence[ReadableSpan], request: bytes, budget: list[int]) -> bool:
        """Send one request holding `spans`; whether the backend accepted them all."""
        if self._stop.is_set() or (self._hurry and (self.unreachable or self.final)):
            return False
        if budget[0] <= 0:  # 413 has cost this batch enough requests: the rest is refused
            self.refused += len(spans)
            return False
        budget[0] -= 1
        # Level 1: a third of level 6's time for about 10% more bytes on span batches.
        body = gzip.compress(request, compresslevel=1) if self._gzip else request
        status = self._send(body, time.monotonic() + self._timeout)
        if status is not None and status < 300:
            self.delivered_in_last_export += len(spans)
            return True
        if status != 413:
            return False
        if len(spans) > 1:
            half = len(spans) // 2
            first = self._export_split(spans[:half], budget)
            second = self._export_split(spans[half:], budget)
            return first and second
        self.refused += 1
        self._lone_refusals += 1
        if self._lone_refusals >= 2 and self.delivered_in_last_export == 0:
            budget[0] = 0  # two spans refused on their own and none accepted: it refuses all
        return False

    def _send(self, body: bytes, deadline: float) -> int | None:
        """POST until accepted, refused for good, or out of time; the final status or None."""
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return None
            try:
                status = self._post(body, remaining)
                self.unreachable = self.final = False
                self.last_status = status
                if status < 300:  # an earlier failure no longer explains what is undelivered
                    self.last_error = None
                return status
            except _Attempt as failed:
                failure = failed.failure
            self.last_error = failure.message
            self.unreachable = failure.absent
            if not failure.retry or (failure.absent and self._hurry):
                self._warn(failure.message, failure.message)
                return None
            attempt += 1
            backoff = min(_MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            wait = failure.wait if failure.wait is not None else backoff
            if time.monotonic() + wait >= deadline:
                self._warn(failure.message, f"{failure.message}; gave up after {attempt} tries")
                return None
            logger.debug("traceroot: %s; retrying in %.2fs", failure.message, wait)
            if not self._backoff(wait, failure):
                return None

    def _backoff(self, wait: float, failure: Failure) -> bool:
        """Sleep `wait` seconds before a retry; False when the retry should not happen."""
        end = time.monotonic() + wait
        while (left := end - time.monotonic()) > 0:
            self._wake.wait(left)
            if self._stop.is_set():
                return False
            if self._hurry and failure.absent:
                self._warn(failure.message, failure.message)
                return False
            self._wake.clear()  # woken by hurry(): a slow but alive backend keeps its budget
        return True

    def _post(self, body: bytes, timeout: float) -> int:
        import urllib3

        if self._broken is not None:
            raise _Attempt(self._broken)
        pool = self._connections()
        url = self._url
        for _hop in range(_MAX_REDIRECTS + 1):
            where = urlsplit(url).netloc
            try:
                response = pool.request(
                    "POST",
                    url,
                    body=body,
                    headers=self._headers,
                    timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
                    retries=False,
                    redirect=False,
                )
            except ValueError:
                raise _Attempt(
                    Failure(
                        f"a header cannot be sent (invalid character); check {self._key_variable}"
                        " and OTEL_EXPORTER_OTLP_HEADERS",
                        retry=False,
                        absent=True,
                    )
                ) from None
            except Exception as exc:
                raise _Attempt(
                    explain(exc, where, self._url_variable, timeout, self.proxy)
                ) from None
            status = response.status
            if status in (307, 308) and (target := self._redirect_target(url, response)):
                url = target
                continue
            if 300 <= status < 400:
                location = response.headers.get("Location") or ""
                target = _without_credentials(_absolute(url, location)) if location else ""
                raise _Attempt(
                    Failure(
                        f"{where} redirects to {target or 'another URL'} (HTTP {status}); "
                        f"{self._redirect_advice(target)} (only 307/308 to the same scheme, "
                        "host and port are followed)",
                        retry=False,
                        absent=True,
                    )
                )
            self._check_status(status, response, where, url)
            return status
        raise _Attempt(
            Failure(
                f"{self.host} redirected more than {_MAX_REDIRECTS} times; check "
                f"{self._url_variable}",
                retry=False,
                absent=True,
            )
        )

    def _redirect_advice(self, target: str) -> str:
        """Which variable to set to reach `target`, and to what: the generic OTLP variable
        gets /v1/traces appended, so a full URL belongs in the TRACES_ one."""
        variable = self._url_variable
        if not target:
            return f"set {variable} to the URL it names"
        if variable != "OTEL_EXPORTER_OTLP_ENDPOINT":
            return f"set {variable} to {target}"
        parts = urlsplit(target)
        traces = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        if parts.path.rstrip("/").endswith("/v1/traces") and not parts.query:
            base = target.rstrip("/").removesuffix("/v1/traces")
            return (
                f"set {variable} to {base} (/v1/traces is appended to it), or {traces} to {target}"
            )
        return f"set {traces} to {target} (used as it is)"

    def _redirect_target(self, url: str, response: Any) -> str | None:
        location = response.headers.get("Location")
        if not location:
            return None
        target = _absolute(url, location)
        old, new = urlsplit(url), urlsplit(target)
        # Never carry the key to another host, another port of it, or down to plain http.
        try:
            same_port = _port(old) == _port(new)
        except ValueError:  # a port that is not a number
            return None
        if new.scheme != old.scheme or new.hostname != old.hostname or not same_port:
            return None
        if new.username:
            return None
        return target

    def _check_status(self, status: int, response: Any, where: str, url: str) -> None:
        if status == 407 and self.proxy is not None:  # plain http: the proxy answers itself
            self.final = True
            raise _Attempt(proxy_refusal(self.proxy))
        if status in (401, 403):
            self.final = True
            if self._key_variable == "TRACEROOT_API_KEY":
                message = (
                    f"API key rejected by {self.host} (HTTP {status}); check TRACEROOT_API_KEY"
                )
            else:
                message = (
                    f"{self.host} rejected the credentials (HTTP {status}); check "
                    "OTEL_EXPORTER_OTLP_HEADERS"
                )
            raise _Attempt(Failure(message, retry=False))
        if status in _RETRYABLE:
            raise _Attempt(
                Failure(
                    f"{self.host} answered HTTP {status}",
                    retry=True,
                    wait=_retry_after(response.headers.get("Retry-After")),
                )
            )
        if status == 404:
            hint = (
                " (the variable's URL gets /v1/traces appended)"
                if self._url_variable == "OTEL_EXPORTER_OTLP_ENDPOINT"
                else ""
            )
            raise _Attempt(
                Failure(
                    f"no trace endpoint at {url} (HTTP 404); check {self._url_variable}{hint}",
                    retry=False,
                )
            )
        if status >= 400 and status != 413:
            raise _Attempt(
                Failure(f"{self.host} refused the spans with HTTP {status}", retry=False)
            )

    def _connections(self) -> urllib3.PoolManager:
        """This process's connection pool: a forked child never reuses its parent's sockets."""
        import urllib3

        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            # In a child the parent's pool is dropped, not closed: its sockets are the parent's.
            context = tls_context(self.settings, self._environ) if self._scheme == "https" else None
            kwargs: dict[str, Any] = {"maxsize": 2, "retries": False}
            if context is not None:
                kwargs["ssl_context"] = context
            if self.proxy is not None:
                self._pool = urllib3.ProxyManager(
                    self.proxy.url, num_pools=2, proxy_headers=dict(self.proxy.headers), **kwargs
                )
            else:
                self._pool = urllib3.PoolManager(num_pools=2, **kwargs)
            self._pool_pid = pid
        return self._pool

    def _warn(self, key: str, message: str) -> None:
        # One line per kind of failure per minute: a dead backend must not flood stderr.
        now = time.monotonic()
        if now - self._last_warning.get(key, -_WARN_EVERY) >= _WARN_EVERY:
            self._last_warning[key] = now
            logger.warning("traceroot: %s", message)

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _absolute(url: str, location: str) -> str:
    """`location` (a redirect's, maybe relative) as an absolute URL."""
    from urllib.parse import urljoin

    return urljoin(url, location)


def _port(parts: Any) -> int | None:
    """The port a URL reaches, its scheme's default when it names none."""
    return parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


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
