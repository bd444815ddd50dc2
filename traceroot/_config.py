"""Configuration: `initialize()` arguments, then `TRACEROOT_*` variables, then defaults.

A bad value never raises: it is reported once, naming the variable, the value and
the default used instead.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from traceroot._export.endpoint import OTLPSettings, resolve_otlp
from traceroot.version import SDK_NAME, __version__

logger = logging.getLogger("traceroot")

DEFAULT_HOST_URL = "https://app.traceroot.ai"
DEFAULT_MAX_BATCH_SIZE = 1000
TRACES_PATH = "/api/v1/public/traces"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

T = TypeVar("T")


def mask_secret(secret: str | None) -> str:
    """Show just enough of a secret to recognise it: `tr-a...9f2c`."""
    if not secret:
        return "<not set>"
    if len(secret) <= 8:
        return "*" * len(secret)
    return f"{secret[:4]}...{secret[-4:]}"


@dataclass(frozen=True)
class Destination:
    """Where finished spans go: TraceRoot, any OTLP/HTTP endpoint, or nowhere (local)."""

    kind: Literal["traceroot", "otlp", "local"]
    endpoint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Protocol, timeout, compression and TLS files (the OTLP variables; see _export.endpoint).
    settings: OTLPSettings = field(default_factory=OTLPSettings)

    def __repr__(self) -> str:
        return f"Destination({self.describe()})"

    def describe(self) -> str:
        """One line for logs, with secrets masked."""
        if self.kind == "local":
            return "local console only (nothing is sent)"
        shown = {
            k: (mask_secret(v) if _is_secret_header(k) else v) for k, v in self.headers.items()
        }
        extra = f" headers={shown}" if shown else ""
        what = "TraceRoot" if self.kind == "traceroot" else "OTLP endpoint"
        return f"{what} {self.endpoint}{extra}"


def _is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in {"authorization", "x-api-key", "api-key"}
        or "token" in lowered
        or ("key" in lowered and "sdk" not in lowered)
    )


@dataclass(frozen=True)
class Config:
    """The resolved configuration of one process."""

    api_key: str | None = None
    host_url: str = DEFAULT_HOST_URL
    enabled: bool = True
    environment: str | None = None
    service_name: str = "python"
    flush_interval: float = 5.0
    flush_at: int = 100
    # Spans per request: `flush_at` when the user set it (the contract's meaning),
    # else large batches so a backlog drains in few requests.
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    timeout: float = 30.0
    shutdown_timeout: float = 5.0
    max_queue_size: int = 32768
    max_attribute_length: int = 32768
    console: bool | None = None
    git_repo: str | None = None
    git_ref: str | None = None
    integrations: str | None = None
    otlp_endpoint: str | None = None
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    otlp: OTLPSettings = field(default_factory=OTLPSettings)

    def __repr__(self) -> str:
        # The key must never reach logs or tracebacks.
        return (
            f"Config(api_key={mask_secret(self.api_key)!r}, host_url={self.host_url!r}, "
            f"enabled={self.enabled}, environment={self.environment!r}, "
            f"service_name={self.service_name!r}, destination={self.destination.describe()!r})"
        )

    @property
    def destination(self) -> Destination:
        """TraceRoot when a key is set, else the standard OTLP variables, else local."""
        if self.api_key:
            return Destination(
                kind="traceroot",
                endpoint=self.host_url + TRACES_PATH,
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


_warned: set[tuple[str, str]] = set()


def _warn_bad(name: str, raw: object, expected: str, default: object) -> None:
    # Once per process: the configuration is read again by a later initialize().
    if (name, repr(raw)) in _warned:
        return
    _warned.add((name, repr(raw)))
    fix = "Fix the argument." if name.startswith("initialize(") else f"Fix or unset {name}."
    logger.warning(
        "traceroot: invalid %s=%r (expected %s); using the default %r. %s",
        name,
        raw,
        expected,
        default,
        fix,
    )


def _parse_bool(raw: str) -> bool | None:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def disabled_by_environment(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `TRACEROOT_ENABLED` turns tracing off (read without warnings, for hot paths)."""
    raw = (os.environ if environ is None else environ).get("TRACEROOT_ENABLED")
    return raw is not None and _parse_bool(raw) is False


def _positive(kind: Callable[[str], T], allow_zero: bool = False) -> Callable[[str], T | None]:
    def parse(raw: str) -> T | None:
        try:
            value = kind(raw.strip())
        except ValueError:
            return None
        number = float(value)  # type: ignore[arg-type]
        if number != number or number in (float("inf"), float("-inf")):
            return None
        if number < 0 or (number == 0 and not allow_zero):
            return None
        return value

    return parse


def _parse_url(raw: str) -> str | None:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return value


def _program_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-c", "-m"):
        return "python"
    name = os.path.basename(argv0)
    if name == "__main__.py":
        name = os.path.basename(os.path.dirname(argv0)) or name
    return name.removesuffix(".py") or "python"


class _Resolver:
    """Picks each setting from the argument, else the variable, else the default."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, arg: str | None, name: str) -> str | None:
        if arg is not None:
            return arg.strip() or None
        raw = self.environ.get(name)
        return raw.strip() or None if raw is not None else None

    def value(
        self,
        arg: Any,
        name: str,
        parse: Callable[[str], Any],
        default: Any,
        expected: str,
        arg_name: str,
    ) -> Any:
        if arg is not None:
            parsed = parse(str(arg))
            if parsed is None:
                _warn_bad(f"initialize({arg_name}=...)", arg, expected, default)
                return default
            return parsed
        raw = self.environ.get(name)
        if raw is None or not raw.strip():
            return default
        parsed = parse(raw)
        if parsed is None:
            _warn_bad(name, raw, expected, default)
            return default
        return parsed


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
) -> Config:
    """Resolve the configuration: arguments win over `TRACEROOT_*` variables over defaults."""
    env = os.environ if environ is None else environ
    r = _Resolver(env)

    resolved_host = r.value(
        host_url,
        "TRACEROOT_HOST_URL",
        _parse_url,
        DEFAULT_HOST_URL,
        "an http:// or https:// URL such as https://app.traceroot.ai",
        "host_url",
    )
    otlp = resolve_otlp(env)

    flush_at = r.value(
        batch_size, "TRACEROOT_FLUSH_AT", _positive(int), 100, "an integer > 0", "batch_size"
    )
    given = batch_size if batch_size is not None else env.get("TRACEROOT_FLUSH_AT")
    flush_at_set = given is not None and _positive(int)(str(given)) is not None
    return Config(
        api_key=r.text(api_key, "TRACEROOT_API_KEY"),
        host_url=resolved_host,
        enabled=r.value(
            enabled, "TRACEROOT_ENABLED", _parse_bool, True, "true or false", "enabled"
        ),
        environment=r.text(environment, "TRACEROOT_ENVIRONMENT"),
        service_name=r.text(None, "OTEL_SERVICE_NAME") or _program_name(),
        flush_interval=r.value(
            flush_interval,
            "TRACEROOT_FLUSH_INTERVAL",
            _positive(float),
            5.0,
            "a number of seconds > 0",
            "flush_interval",
        ),
        flush_at=flush_at,
        max_batch_size=flush_at if flush_at_set else DEFAULT_MAX_BATCH_SIZE,
        timeout=r.value(
            timeout,
            "TRACEROOT_TIMEOUT",
            _positive(float),
            30.0,
            "a number of seconds > 0",
            "timeout",
        ),
        shutdown_timeout=r.value(
            None,
            "TRACEROOT_SHUTDOWN_TIMEOUT",
            _positive(float, allow_zero=True),
            5.0,
            "a number of seconds >= 0",
            "shutdown_timeout",
        ),
        max_queue_size=r.value(
            None, "TRACEROOT_MAX_QUEUE_SIZE", _positive(int), 32768, "an integer > 0", ""
        ),
        max_attribute_length=r.value(
            None, "TRACEROOT_MAX_ATTRIBUTE_LENGTH", _positive(int), 32768, "an integer > 0", ""
        ),
        console=r.value(None, "TRACEROOT_CONSOLE", _parse_bool, None, "true or false", ""),
        git_repo=r.text(git_repo, "TRACEROOT_GIT_REPO"),
        git_ref=r.text(git_ref, "TRACEROOT_GIT_REF"),
        integrations=r.text(None, "TRACEROOT_INTEGRATIONS"),
        otlp_endpoint=otlp.endpoint,
        otlp_headers=otlp.headers,
        otlp=otlp,
    )
