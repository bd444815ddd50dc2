"""The configuration of one process, resolved from the settings table.

`initialize()` arguments win over the variables, which win over the defaults
(all declared once, in `_settings`). A bad value never raises: it is reported
once, naming the variable, the value (masked when secret) and the default used.
"""

from __future__ import annotations

import _thread
import os
import sys

from traceroot._frozen import field, record, replace
from traceroot._otlp_config import OTLPSettings, grpc_url, parse_headers, resolve_otlp
from traceroot._settings import (
    BY_FIELD,
    DEFAULT_HOST_URL,
    OTLP,
    PROGRAM_NAME_VARIABLE,
    Resolver,
    has_control_characters,
    logger,
    parse_bool,
    quoted,
    tracing_disabled,
)
from traceroot.version import SDK_NAME, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` and `logging` load when needed, not with the launcher
    import logging
    from collections.abc import Mapping
    from typing import Any, Literal

DEFAULT_MAX_BATCH_SIZE = 1000
TRACES_PATH = "/api/v1/public/traces"

__all__ = [
    "DEFAULT_HOST_URL",
    "Config",
    "Destination",
    "load_config",
    "mask_secret",
    "safe_url",
    "tracing_disabled",
]


def mask_secret(secret: str | None) -> str:
    """Show just enough of a secret to recognise it: `tr-a...9f2c`; never a control character."""
    if not secret:
        return "<not set>"
    if len(secret) <= 12 or has_control_characters(secret) or not secret.isascii():
        return f"<{len(secret)} characters, hidden>"
    return f"{secret[:4]}...{secret[-4:]}"


def safe_url(url: str | None) -> str:
    """`url` as it may be shown: a password in it (`user:pass@host`) is masked."""
    if not url:
        return "<not set>"
    try:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable URL>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.password is not None else "***@"
    from urllib.parse import urlunsplit

    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


@record
class Destination:
    """Where finished spans go: TraceRoot, any OTLP/HTTP endpoint, or nowhere (local).

    `refused` says why spans that should have been sent stay local (an invalid URL).
    """

    kind: Literal["traceroot", "otlp", "local"]
    endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    refused: str | None = None
    # Protocol, timeout, compression and TLS files (the OTLP variables; see _export.endpoint).
    settings: OTLPSettings = field(default_factory=OTLPSettings)

    def __repr__(self) -> str:
        return f"Destination({self.describe()})"

    def describe(self) -> str:
        """One line for logs: URL passwords and every header value masked."""
        if self.kind == "local":
            if self.refused:
                return f"nowhere ({self.refused}); the local view only"
            return "local console only (nothing is sent)"
        # Header values are credentials more often than not: only their names are shown.
        shown = [name for name in self.headers if not _is_ours(name)]
        extra = f" with headers {', '.join(shown)} (values hidden)" if shown else ""
        what = "TraceRoot" if self.kind == "traceroot" else "OTLP endpoint"
        return f"{what} {safe_url(self.endpoint)}{extra}"


def _is_ours(header: str) -> bool:
    # The SDK name and version headers carry nothing secret and are not worth a mention.
    return header.lower().startswith("x-traceroot-sdk-")


@record
class Config:
    """The resolved configuration of one process (see `_settings.SETTINGS`)."""

    api_key: str | None
    host_url: str
    enabled: bool
    environment: str | None
    service_name: str
    release: str | None
    debug: bool
    flush_interval: float
    flush_at: int
    # Spans per request: `flush_at` when the user set it (the contract's meaning),
    # else large batches so a backlog drains in few requests.
    max_batch_size: int
    timeout: float
    shutdown_timeout: float
    max_queue_size: int
    queue_wait: float
    max_attribute_length: int
    console: bool | None
    git_repo: str | None
    git_ref: str | None
    integrations: str | None
    otel_instrumentors: bool
    asgi_message_spans: bool
    sample_rate: float | None
    sampler: str
    sampler_arg: float | None
    scrub: bool
    scrub_patterns: str | None
    capture_content: bool
    local: bool | None
    local_dir: str | None
    local_max_traces: int
    local_max_mb: int
    otlp_endpoint: str | None = None
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    refused: str | None = None
    """Why nothing may be sent although a destination was configured."""
    otlp: OTLPSettings = field(default_factory=OTLPSettings)
    shown_before: bool = field(default=False, compare=False)
    """Whether its warnings were shown already, by the process that started this one: the
    warnings each process would find again (unknown integration names, OTEL_SDK_DISABLED)
    are then not repeated by every worker of a pool or a server."""

    def __repr__(self) -> str:
        # The key must never reach logs or tracebacks.
        return (
            f"Config(api_key={mask_secret(self.api_key)!r}, host_url={safe_url(self.host_url)!r}, "
            f"enabled={self.enabled}, environment={self.environment!r}, "
            f"service_name={self.service_name!r}, destination={self.destination.describe()!r})"
        )

    @property
    def destination(self) -> Destination:
        """TraceRoot when a key is set, else the standard OTLP variables, else local."""
        if self.refused:
            return Destination(kind="local", refused=self.refused)
        if self.api_key:
            return Destination(
                kind="traceroot",
                # The server's URL, or its traces endpoint pasted whole: the path not twice.
                endpoint=self.host_url.removesuffix(TRACES_PATH) + TRACES_PATH,
                headers={
                    "Authorization": f"Bearer {self.api_key}",
                    "x-traceroot-sdk-name": SDK_NAME,
                    "x-traceroot-sdk-version": __version__,
                },
                # TraceRoot speaks OTLP/HTTP; the TLS files and compression apply to it too.
                settings=replace(
                    self.otlp,
                    protocol="http/protobuf",
                    timeout=None,
                    endpoint_variable="TRACEROOT_HOST_URL",
                ),
            )
        if self.otlp_endpoint:
            return Destination(
                kind="otlp",
                endpoint=self.otlp_endpoint,
                headers=self.otlp_headers,
                settings=self.otlp,
            )
        return Destination(kind="local")

    @property
    def console_enabled(self) -> bool:
        """The trace tree is printed in local mode unless silenced, and on request otherwise."""
        if self.console is None:
            return self.destination.kind == "local"
        return self.console


def _program_name(environ: Mapping[str, str], argv0: str | None = None) -> str:
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-c", "-m"):
        # A spawned worker (`python -c`), or `-m` before runpy names the module: the
        # program traceroot-run started, when it did.
        return environ.get(PROGRAM_NAME_VARIABLE, "").strip() or "python"
    name = os.path.basename(argv0)
    if name == "__main__.py":
        name = os.path.basename(os.path.dirname(argv0)) or name
    return name.removesuffix(".py") or "python"


def resource_service_name(environ: Mapping[str, str]) -> str | None:
    """`service.name` as `OTEL_RESOURCE_ATTRIBUTES` gives it (`key=value,...`), if it does."""
    for item in (environ.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            from urllib.parse import unquote

            return unquote(value.strip())
    return None


def _check_resource_attributes(environ: Mapping[str, str]) -> None:
    """One warning for the entries of `OTEL_RESOURCE_ATTRIBUTES` OpenTelemetry will skip.

    OpenTelemetry's own words name neither the variable nor the fix, and come from every
    process; the client silences them (`QuietResourceWarnings`). An empty entry (a
    trailing comma) is harmless and goes without a word.
    """
    raw = environ.get("OTEL_RESOURCE_ATTRIBUTES") or ""
    bad = [item.strip() for item in raw.split(",") if item.strip() and "=" not in item]
    if bad:
        logger.warning(
            "traceroot: ignoring %s in OTEL_RESOURCE_ATTRIBUTES (expected key=value pairs "
            "separated by commas). Fix OTEL_RESOURCE_ATTRIBUTES.",
            ", ".join(quoted(item) for item in bad),
        )


class QuietResourceWarnings:
    """A logging filter for OpenTelemetry's resource logger: drops its warning about a
    malformed `OTEL_RESOURCE_ATTRIBUTES` entry, which `load_config` has reported in words."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Invalid key value resource attribute pair")


_warned: set[tuple[str, str]] = set()
# Words of the warning about an API key and an OTLP endpoint both set (`--check` shows it
# under Destination rather than as a problem: the precedence is by design).
BOTH_SET = "are both set: traces go to TraceRoot"


def _warn_once(key: tuple[str, str], message: str, *args: object) -> None:
    # The configuration is read again by a later initialize(): its warnings are said once.
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _clean_api_key(key: str | None, argument: str | None) -> str | None:
    """The key without what other tools leave around it: matching quotes (`docker
    --env-file` keeps them) and a leading `Bearer ` (traceroot adds its own). One warning,
    the key masked, names where it came from and the fix."""
    if not key:
        return key
    cleaned, found = key, []
    for _ in range(2):  # `"Bearer tr-..."` and `Bearer "tr-..."` alike
        if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] and cleaned[0] in "'\"":
            cleaned = cleaned[1:-1].strip()
            found.append("in quotes")
        if cleaned[:7].lower() == "bearer " or cleaned.lower() == "bearer":
            cleaned = cleaned[6:].strip()
            found.append("with a leading 'Bearer '")
    if not found:
        return key
    variable = BY_FIELD["api_key"].variable
    source = "initialize(api_key=...)" if argument is not None else variable
    fix = "Pass the key alone." if argument is not None else f"Fix {variable}: set the key alone"
    _warn_once(
        ("api_key", key),
        "traceroot: %s holds the API key %s; sending it as %s (traceroot adds 'Bearer ' "
        "itself). %s%s.",
        source,
        " and ".join(dict.fromkeys(found)),
        mask_secret(cleaned) if cleaned else "no key at all: it is empty",
        fix,
        "" if argument is not None else " (docker --env-file keeps quotes: write NAME=value)",
    )
    return cleaned or None


def _check_both_destinations(r: Resolver, config: Config, argument: str | None) -> None:
    """One warning when an API key and an OTLP endpoint are both set: the key wins (README,
    "Where traces go"), and the endpoint and its headers would otherwise be ignored silently."""
    if not config.api_key or not config.enabled:
        return
    endpoint = r.raw(OTLP["endpoint"])
    if endpoint is None:
        return
    headers = r.raw(OTLP["headers"])
    key_source = "initialize(api_key=...)" if argument is not None else "TRACEROOT_API_KEY"
    ignored = endpoint[0] + (f" (and {headers[0]})" if headers else "")
    _warn_once(
        ("both", endpoint[0] + endpoint[1]),
        "traceroot: %s and %s " + BOTH_SET + " (%s) and %s is ignored. "
        "To send to the OTLP endpoint instead, unset TRACEROOT_API_KEY; to keep TraceRoot, "
        "unset %s.",
        key_source,
        endpoint[0],
        safe_url(config.destination.endpoint),
        ignored,
        endpoint[0],
    )


def both_destinations(config: Config, environ: Mapping[str, str]) -> str | None:
    """For `--check`: the OTLP variables an API key makes us ignore, in words; else None."""
    r = Resolver(environ)
    endpoint = r.raw(OTLP["endpoint"])
    if not config.api_key or endpoint is None:
        return None
    headers = r.raw(OTLP["headers"])
    ignored = endpoint[0] + (f" and {headers[0]}" if headers else "")
    return f"{ignored} ignored: the API key wins (unset TRACEROOT_API_KEY to send there)"


def _otlp_endpoint(
    r: Resolver, otlp: OTLPSettings, used: bool = True
) -> tuple[str | None, str | None]:
    """The OTLP traces endpoint from the standard variables, and a refusal reason.

    `used`: spans will go there (no API key wins over it), so a doubled path is worth a word.
    """
    environ = r.environ
    traces = (environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    base = (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    variable = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if traces else "OTEL_EXPORTER_OTLP_ENDPOINT"
    if otlp.protocol == "grpc":  # the URL as it is, `host:port` too (see grpc_url)
        endpoint = grpc_url(traces or base, otlp.insecure)
        needs = "an http:// or https:// URL such as http://localhost:4317 (OTLP/gRPC)"
    else:
        endpoint = traces or (base.rstrip("/") + "/v1/traces" if base else "")
        needs = "an http:// or https:// URL such as http://localhost:4318 (OTLP/HTTP)"
    if not endpoint:
        return None, None
    raw = traces or base  # as the user wrote it
    valid = BY_FIELD["host_url"].parse(endpoint)
    if valid is None:
        logger.warning(
            "traceroot: invalid %s=%s: it needs %s; nothing is sent and traces stay local. Fix %s.",
            variable,
            "'" + safe_url(raw) + "'" if not has_control_characters(raw) else "(hidden)",
            needs,
            variable,
        )
        return None, f"{variable} is not a valid URL"
    doubled = base.rstrip("/").endswith("/v1/traces")
    if used and not traces and otlp.protocol != "grpc" and doubled:
        # The specification appends /v1/traces to this variable, and so do we: say so.
        given = base.rstrip("/")
        _warn_once(
            ("doubled", base),
            "traceroot: %s=%s already ends in /v1/traces, and /v1/traces is appended to that "
            "variable (as OpenTelemetry specifies): spans go to %s. Set "
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=%s (used as it is) instead, or drop the path: "
            "%s=%s.",
            variable,
            "'" + safe_url(base) + "'",
            safe_url(valid),
            safe_url(given),
            variable,
            safe_url(given.removesuffix("/v1/traces")),
        )
    return valid, None


def load_config(
    *,
    api_key: str | None = None,
    host_url: str | None = None,
    flush_interval: float | None = None,
    batch_size: int | None = None,
    timeout: float | None = None,
    enabled: bool | None = None,
    environment: str | None = None,
    git_repo: str | None = None,
    git_ref: str | None = None,
    environ: Mapping[str, str] | None = None,
    argv0: str | None = None,
    quiet: bool = False,
) -> Config:
    """Resolve the configuration: arguments win over the variables over the defaults.

    ``argv0``: the program's ``sys.argv[0]`` as it was when ``environ`` was taken (the
    default service name comes from it). ``quiet``: the warnings about these values have
    been shown already (by the launcher): this thread's are not shown again.
    """
    if not quiet:
        return _load_config(locals())
    quieted = _ThisThreadOnly()
    logger.addFilter(quieted)
    try:
        return replace(_load_config(locals()), shown_before=True)
    finally:
        logger.removeFilter(quieted)


class _ThisThreadOnly:
    """A logging filter: drops the records this thread logs (other threads' go through)."""

    def __init__(self) -> None:
        self._thread = _thread.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self._thread


def _load_config(given: dict[str, Any]) -> Config:
    host_url, batch_size = given["host_url"], given["batch_size"]
    r = Resolver(given["environ"])
    arguments: dict[str, Any] = {
        name: given[name]
        for name in (
            "api_key",
            "host_url",
            "flush_interval",
            "timeout",
            "enabled",
            "environment",
            "git_repo",
            "git_ref",
        )
    }
    arguments["flush_at"] = batch_size
    values = {name: r.value(s, arguments.get(name)) for name, s in BY_FIELD.items()}
    values["api_key"] = _clean_api_key(values["api_key"], given["api_key"])
    host = BY_FIELD["host_url"]
    host_refused = None
    if not r.given(host, host_url) and (host_url is not None or r.raw(host) is not None):
        # A wrong URL must never redirect the key to another host: nothing is sent at all
        # (the resolver's warning says so); host_url keeps the default only for display.
        host_refused = "TRACEROOT_HOST_URL is not a valid URL"
    # Protocol, timeout, compression, TLS files; the endpoint and headers are checked here.
    otlp = resolve_otlp(r.environ, report_endpoint=False)
    otlp_endpoint, otlp_refused = _otlp_endpoint(r, otlp, used=not values["api_key"])
    headers = r.raw(OTLP["headers"])  # the TRACES_ variable, else the generic one
    flush_at_set = r.given(BY_FIELD["flush_at"], batch_size)
    values["service_name"] = (
        values["service_name"]
        or resource_service_name(r.environ)
        or _program_name(r.environ, given["argv0"])
    )
    _check_resource_attributes(r.environ)
    config = Config(
        **values,
        max_batch_size=values["flush_at"] if flush_at_set else DEFAULT_MAX_BATCH_SIZE,
        otlp_endpoint=otlp_endpoint,
        otlp_headers=parse_headers(headers[1], headers[0]) if headers else {},
        otlp=otlp,
        refused=host_refused if values["api_key"] else otlp_refused,
    )
    _check_traces_exporter(r.environ, config)
    _check_both_destinations(r, config, given["api_key"])
    return config


def _check_traces_exporter(environ: Mapping[str, str], config: Config) -> None:
    """One warning when `OTEL_TRACES_EXPORTER` asks for another exporter than OTLP.

    It is `opentelemetry-instrument`'s variable, which users of that launcher carry over:
    `none` or `console` there would not mean what traceroot does with the spans.
    """
    raw = (environ.get("OTEL_TRACES_EXPORTER") or "").strip()
    others = [name.strip() for name in raw.split(",") if name.strip().lower() not in ("", "otlp")]
    if not others or not config.enabled:
        return
    logger.warning(
        "traceroot: OTEL_TRACES_EXPORTER=%s is opentelemetry-instrument's variable; traceroot "
        "does not read it: traces go to %s. To trace nothing, set TRACEROOT_ENABLED=false; to "
        "print each trace's tree on stderr, TRACEROOT_CONSOLE=true.",
        quoted(raw),
        config.destination.describe(),
    )


def sdk_disabled_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """What `OTEL_SDK_DISABLED=true` costs us, in words, when it is set; else None.

    OpenTelemetry's SDK then makes no spans at all, ours included. Agent frameworks' docs
    suggest the variable to silence their own telemetry, so users set it not knowing.
    """
    raw = (os.environ if environ is None else environ).get("OTEL_SDK_DISABLED", "")
    if parse_bool(raw) is not True:
        return None
    return (
        "OTEL_SDK_DISABLED=true turns the OpenTelemetry SDK off, so nothing is traced. "
        "To silence a framework's own telemetry only, use its switch instead (CrewAI: "
        "CREWAI_DISABLE_TELEMETRY=true); to run untraced, TRACEROOT_ENABLED=false."
    )
