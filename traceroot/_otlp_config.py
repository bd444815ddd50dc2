"""The standard OTLP exporter variables, resolved once into `OTLPSettings`.

Every `OTEL_EXPORTER_OTLP_*` variable has a `TRACES_` twin that wins over it, as
the OpenTelemetry specification says. A bad value is reported once, naming the
variable and the fix, and the default is used.
"""

from __future__ import annotations

import os

from traceroot._frozen import field, record
from traceroot._settings import OTLP, Resolver, has_control_characters, logger, quoted

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` is not loaded by the launcher
    from collections.abc import Mapping
    from typing import Literal

    Protocol = Literal["http/protobuf", "grpc"]
    Compression = Literal["gzip", "none"]

_PREFIX = "OTEL_EXPORTER_OTLP_"
# The characters of an HTTP header name (RFC 9110 `token`).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_warned: set[tuple[str, str]] = set()


@record
class OTLPSettings:
    """How to reach one OTLP destination (all fields optional; None means the default)."""

    endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds
    compression: Compression = "gzip"
    protocol: Protocol = "http/protobuf"
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    insecure: bool | None = None  # gRPC: plain text for an endpoint named without a scheme
    # The variable that named the endpoint: what a failure message tells the user to check.
    endpoint_variable: str = "OTEL_EXPORTER_OTLP_ENDPOINT"
    # Variables whose value came from the environment, for `--check` to show where each came from.
    sources: Mapping[str, str] = field(default_factory=dict)


def _warn_once(variable: str, value: str, message: str) -> None:
    if (variable, value) not in _warned:
        _warned.add((variable, value))
        logger.warning("traceroot: %s", message)


def grpc_url(endpoint: str, insecure: bool | None) -> str:
    """A gRPC endpoint as a URL: `host:port` (OpenTelemetry's gRPC exporter takes it) gets the
    scheme `OTEL_EXPORTER_OTLP_INSECURE` says, TLS unless it is true, as that exporter does."""
    if "://" in endpoint or not endpoint:
        return endpoint
    return ("http://" if insecure else "https://") + endpoint


_SUFFIXES = {
    "ENDPOINT": "endpoint",
    "INSECURE": "insecure",
    "PROTOCOL": "protocol",
    "HEADERS": "headers",
    "TIMEOUT": "timeout",
    "COMPRESSION": "compression",
    "CERTIFICATE": "ca_file",
    "CLIENT_CERTIFICATE": "client_cert",
    "CLIENT_KEY": "client_key",
}


def _pick(env: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """(variable, value) of the TRACES_ variable, else the generic one (as the settings table
    declares them); None when neither is set."""
    found = Resolver(env).raw(OTLP[_SUFFIXES[suffix]])
    return (found[0], found[1].strip()) if found is not None else None


def parse_headers(raw: str, variable: str) -> dict[str, str]:
    """`k1=v1,k2=v2`, URL-encoded (W3C baggage format); malformed entries are reported, by name."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # The entry may be a secret pasted wrong: name its position, never its text.
            _warn_once(
                variable,
                item,
                f"ignoring a malformed entry in {variable} (expected key=value pairs "
                "separated by commas).",
            )
            continue
        from urllib.parse import unquote

        name, text = unquote(key.strip()), unquote(value.strip())
        if has_control_characters(name + text):
            _warn_once(
                variable,
                item,
                f"ignoring header {name.strip()!r} in {variable}: its name or value holds a line "
                "break or another control character, which would let it forge other headers.",
            )
            continue
        if not name or any(c not in _TOKEN for c in name):
            _warn_once(
                variable,
                item,
                f"ignoring header {quoted(name)} in {variable}: a header name is letters, "
                "digits and !#$%&'*+-.^_`|~ only (no spaces, no quotes, no brackets).",
            )
            continue
        headers[name] = text
    return headers


def _file(env: Mapping[str, str], suffix: str, sources: dict[str, str]) -> str | None:
    picked = _pick(env, suffix)
    if picked is None:
        return None
    name, path = picked
    if not os.path.isfile(path):
        _warn_once(
            name, path, f"{name}={path!r} is not a readable file; the TLS connection will fail."
        )
    sources[suffix] = name
    return path


def resolve_otlp(
    environ: Mapping[str, str] | None = None, *, report_endpoint: bool = True
) -> OTLPSettings:
    """The OTLP exporter settings from `OTEL_EXPORTER_OTLP_{,TRACES_}*`.

    The variables, their types, bounds and defaults are the settings table's `otlp` rows.
    `report_endpoint=False`: the caller checks ENDPOINT and HEADERS and warns about them.
    """
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}

    resolver = Resolver(env)
    protocol: Protocol = "http/protobuf"
    if picked := _pick(env, "PROTOCOL"):
        name, raw = picked
        value = resolver.value(OTLP["protocol"])
        sources["PROTOCOL"] = name
        if value == "grpc":
            protocol = "grpc"
        elif value == "http/json":
            _warn_once(
                name,
                raw,
                f"{name}=http/json is not supported; sending http/protobuf instead, which "
                "every OTLP/HTTP receiver accepts on the same port.",
            )

    insecure: bool | None = None
    if picked := _pick(env, "INSECURE"):
        insecure = resolver.value(OTLP["insecure"])
        sources["INSECURE"] = picked[0]

    endpoint: str | None = None
    endpoint_variable = f"{_PREFIX}ENDPOINT"
    if picked := _pick(env, "ENDPOINT"):
        name, raw = picked
        endpoint_variable = name
        url = raw.rstrip("/") if name == f"{_PREFIX}ENDPOINT" else raw
        if protocol == "http/protobuf" and name == f"{_PREFIX}ENDPOINT":
            url += "/v1/traces"  # the generic variable names the base URL (specification)
        if protocol == "grpc":
            url = grpc_url(url, insecure)
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname:
            endpoint = url
            sources["ENDPOINT"] = name
        elif report_endpoint:
            shown = raw if "@" not in raw else "<hidden: it holds credentials>"
            _warn_once(
                name,
                raw,
                f"ignoring {name}={shown!r}: it needs an http:// or https:// URL such as "
                "http://localhost:4318 (OTLP/HTTP) or http://localhost:4317 (gRPC).",
            )

    headers: dict[str, str] = {}
    if (picked := _pick(env, "HEADERS")) and report_endpoint:
        sources["HEADERS"] = picked[0]
        headers = parse_headers(picked[1], picked[0])

    timeout: float | None = None
    if picked := _pick(env, "TIMEOUT"):
        millis = resolver.value(OTLP["timeout"])
        if millis is not None:
            timeout = millis / 1000
            sources["TIMEOUT"] = picked[0]

    compression: Compression = "gzip"
    if picked := _pick(env, "COMPRESSION"):
        sources["COMPRESSION"] = picked[0]
        if resolver.value(OTLP["compression"]) == "none":
            compression = "none"

    return OTLPSettings(
        endpoint=endpoint,
        headers=headers,
        timeout=timeout,
        compression=compression,
        protocol=protocol,
        insecure=insecure,
        ca_file=_file(env, "CERTIFICATE", sources),
        client_cert=_file(env, "CLIENT_CERTIFICATE", sources),
        client_key=_file(env, "CLIENT_KEY", sources),
        endpoint_variable=endpoint_variable,
        sources=sources,
    )
