"""The settings table: every setting declared once, and the one parser of each type.

A row names the setting (the `Config` field), its `initialize()` argument and
`traceroot-run` option when it has them, the variables it is read from (the
first set one wins), its type, default, bounds and help text. `load_config()`,
the launcher's options, `--check`'s printout and the README's configuration
table are all made from these rows.

This module imports nothing of traceroot and nothing outside the standard
library, and at import time nothing but `os`: the launcher and the start-up hook of
every traced process read it before deciding to load anything else.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` and `collections` are not loaded at start-up
    import logging
    from collections.abc import Callable, Mapping
    from typing import Any


class _LazyLogger:
    """The `traceroot` logger, `logging` imported at its first use (most runs never log)."""

    def __getattr__(self, name: str) -> Any:
        if name in ("debug", "info") and "logging" not in sys.modules:
            # Nothing has configured logging yet, so the level is WARNING: dropped anyway.
            return _ignore
        import logging

        return getattr(logging.getLogger("traceroot"), name)


def _ignore(*args: Any, **kwargs: Any) -> None:
    pass


logger: logging.Logger = _LazyLogger()  # type: ignore[assignment]


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(raw: str) -> bool | None:
    """`true/false`, `1/0`, `yes/no`, `on/off` in any case and spacing; None otherwise."""
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    return None


def has_control_characters(value: str) -> bool:
    """Whether `value` holds CR, LF or another control character (unsendable in a header)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


# OTEL_TRACES_SAMPLER's values (OpenTelemetry's own), the usual one first.
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)


# A plain class rather than a dataclass: `dataclasses` (and the `inspect` it loads) would
# cost every traced process several milliseconds of start-up.
class Setting:
    """One setting: where it is read from, what it may be, what it means.

    `field`: the `Config` attribute. `variables`: environment variables, the first set one
    winning. `kind`: text | secret | bool | int | float | url | list | choice. `argument`:
    the `initialize()` parameter, `option`: the `traceroot-run` option, when there is one.
    `above_minimum`: the minimum itself is not allowed (`>`, not `>=`). `default_text`: how
    the default reads in docs, when the value alone does not say it. `when_invalid`: what an
    invalid value leads to, when it is not "using the default". `choices`: the values a
    `choice` setting may take (any case). `scope`: `config` (a `Config` field) or `otlp` (a
    field of the OTLP exporter settings).
    """

    __slots__ = (
        "field",
        "variables",
        "kind",
        "default",
        "help",
        "argument",
        "option",
        "minimum",
        "maximum",
        "above_minimum",
        "default_text",
        "when_invalid",
        "choices",
        "scope",
    )

    def __init__(
        self,
        field: str,
        variables: tuple[str, ...],
        kind: str,
        default: Any,
        help: str,
        argument: str | None = None,
        option: str | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
        above_minimum: bool = False,
        default_text: str | None = None,
        when_invalid: str | None = None,
        choices: tuple[str, ...] = (),
        scope: str = "config",
    ) -> None:
        self.field = field
        self.variables = variables
        self.kind = kind
        self.default = default
        self.help = help
        self.argument = argument
        self.option = option
        self.minimum = minimum
        self.maximum = maximum
        self.above_minimum = above_minimum
        self.default_text = default_text
        self.when_invalid = when_invalid
        self.choices = choices
        self.scope = scope

    def __repr__(self) -> str:
        return f"Setting({self.field!r}, {self.variables!r}, {self.kind!r})"

    def __setattr__(self, name: str, value: Any) -> None:
        # Frozen, as the table's rows are shared by the whole process.
        if hasattr(self, name):
            raise AttributeError(f"Setting.{name} is read-only")
        object.__setattr__(self, name, value)

    @property
    def variable(self) -> str:
        """The main variable (the one the docs and messages name)."""
        return self.variables[0]

    def expected(self) -> str:
        """What a valid value looks like, for warnings and docs."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "url":
            return "an http:// or https:// URL"
        if self.kind == "choice":
            return " or ".join(self.choices)
        if self.kind == "limit":
            return "an integer >= 0, or empty for no limit"
        if self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            low = ">" if self.above_minimum else ">="
            parts = []
            if self.minimum is not None:
                parts.append(f"{low} {_number_text(self.minimum)}")
            if self.maximum is not None:
                parts.append(f"<= {_number_text(self.maximum)}")
            return f"{noun} {' and '.join(parts)}".strip()
        return "text"

    def parse(self, raw: str) -> Any:
        """The value `raw` stands for, or None when it is not valid for this setting."""
        return _PARSERS[self.kind](self, raw)

    def shown_default(self) -> str:
        """The default as the docs show it."""
        if self.default_text is not None:
            return self.default_text
        if self.default is None:
            return ""
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return str(self.default)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _text(setting: Setting, raw: str) -> str | None:
    return raw.strip() or None


def _secret(setting: Setting, raw: str) -> str | None:
    value = raw.strip()
    if not value or has_control_characters(value):
        return None  # a key with a newline would be refused by HTTP, and leak in its error
    return value


def _bool(setting: Setting, raw: str) -> bool | None:
    return parse_bool(raw)


def _number(setting: Setting, raw: str) -> int | float | None:
    import math

    text = raw.strip()
    try:
        value: int | float = int(text) if setting.kind == "int" else float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    low, high = setting.minimum, setting.maximum
    if low is not None and (value < low or (setting.above_minimum and value == low)):
        return None
    if high is not None and value > high:
        return None
    return value


def _url(setting: Setting, raw: str) -> str | None:
    from urllib.parse import urlsplit

    value = raw.strip().rstrip("/")
    if has_control_characters(value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return value


def _choice(setting: Setting, raw: str) -> str | None:
    value = raw.strip().lower()
    return value if value in setting.choices else None


def _limit(setting: Setting, raw: str) -> int | str | None:
    # OpenTelemetry's own reading: a non-negative integer, or empty for no limit at all.
    text = raw.strip()
    if not text:
        return text
    try:
        value = int(text)  # as the SDK reads it: `1e3` or `10.0` is no count
    except ValueError:
        return None
    return value if value >= 0 else None


_PARSERS: dict[str, Callable[[Setting, str], Any]] = {
    "choice": _choice,
    "limit": _limit,
    "text": _text,
    "list": _text,
    "secret": _secret,
    "bool": _bool,
    "int": _number,
    "float": _number,
    "url": _url,
}

DEFAULT_HOST_URL = "https://app.traceroot.ai"
DEFAULT_MAX_TRACES = 10_000
DEFAULT_MAX_MB = 512

# Not a user setting: `traceroot-run` records there the service name its program's
# processes default to, for those whose command line does not say it (multiprocessing
# spawn children run `python -c ...`: `uvicorn --workers 2` would name its workers "python").
PROGRAM_NAME_VARIABLE = "TRACEROOT_PROGRAM_NAME"
# Not user settings either: what traceroot-run (or the first process that read the
# configuration) found once, handed to the processes that inherit the environment.
# The modules whose import starts tracing, with the key of what they were found from:
WATCH_VARIABLE = "TRACEROOT_WATCH"
# The digest of the variables whose warnings have been shown (the configuration checked):
CHECKED_VARIABLE = "TRACEROOT_CONFIG_CHECKED"
_NOT_CONFIGURATION = (PROGRAM_NAME_VARIABLE, WATCH_VARIABLE, CHECKED_VARIABLE)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "api_key",
        ("TRACEROOT_API_KEY",),
        "secret",
        None,
        "API key; without it traces stay local (or go to the OTLP endpoint)",
        argument="api_key",
        option="--api-key",
    ),
    Setting(
        "host_url",
        ("TRACEROOT_HOST_URL",),
        "url",
        DEFAULT_HOST_URL,
        "TraceRoot server (its `/api/v1/public/traces` endpoint, pasted whole, is taken too); "
        "an invalid URL sends nothing (the key never goes to another host)",
        argument="host_url",
        option="--host-url",
        when_invalid=f"traces are not sent to any server (not even {DEFAULT_HOST_URL}: the API "
        "key goes to no other host); they stay in the local view",
    ),
    Setting(
        "enabled",
        ("TRACEROOT_ENABLED",),
        "bool",
        True,
        "`false` turns everything off: the launcher does not even import traceroot, and "
        "`@observe` returns functions undecorated (no cost per call, and a later "
        "`initialize(enabled=True)` does not trace them)",
        argument="enabled",
        option="--disabled",
    ),
    Setting(
        "environment",
        ("TRACEROOT_ENVIRONMENT",),
        "text",
        None,
        "stamped as `traceroot.environment` and `deployment.environment.name`",
        argument="environment",
        option="--environment",
    ),
    Setting(
        "service_name",
        ("OTEL_SERVICE_NAME", "TRACEROOT_SERVICE_NAME"),
        "text",
        None,
        "`service.name` of the resource; unset, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, "
        "else the program `traceroot-run` started (`uvicorn`, `gunicorn`, the script), in "
        "every process it starts, workers included",
        option="--service-name",
        default_text="program name",
    ),
    Setting(
        "release",
        ("TRACEROOT_RELEASE",),
        "text",
        None,
        "`service.version` of the resource: your application's release or commit",
        option="--release",
    ),
    Setting(
        "debug",
        ("TRACEROOT_DEBUG",),
        "bool",
        False,
        "`true` prints traceroot's own debug log on stderr (what is instrumented, each export)",
        option="--debug/--no-debug",
    ),
    Setting(
        "flush_interval",
        ("TRACEROOT_FLUSH_INTERVAL",),
        "float",
        5.0,
        "seconds between exports",
        argument="flush_interval",
        minimum=0,
        above_minimum=True,
        maximum=3600,
    ),
    Setting(
        "flush_at",
        ("TRACEROOT_FLUSH_AT",),
        "int",
        100,
        "an export starts when this many spans wait; when set, it is also the most spans one "
        "request carries (unset: up to 1,000, so a backlog drains in few requests)",
        argument="batch_size",
        minimum=1,
        maximum=100_000,
    ),
    Setting(
        "timeout",
        ("TRACEROOT_TIMEOUT",),
        "float",
        30.0,
        "seconds one export may take, retries included",
        argument="timeout",
        minimum=0,
        above_minimum=True,
        maximum=600,
    ),
    Setting(
        "shutdown_timeout",
        ("TRACEROOT_SHUTDOWN_TIMEOUT",),
        "float",
        5.0,
        "the most exit is delayed by a slow or dead backend; undelivered spans are then "
        "counted on stderr",
        minimum=0,
        maximum=600,
    ),
    Setting(
        "max_queue_size",
        ("TRACEROOT_MAX_QUEUE_SIZE",),
        "int",
        32768,
        "spans held while the backend is slow (and never more than 64 MB of their text, so "
        "large prompts during an outage cost bounded memory)",
        minimum=1,
        maximum=10_000_000,
    ),
    Setting(
        "queue_wait",
        ("TRACEROOT_QUEUE_WAIT",),
        "float",
        2.0,
        "the most a thread ending a span waits for room in a full queue while exports succeed; "
        "once a wait runs out, a full queue drops (counted) without waiting until an export "
        "succeeds again; 0 never waits",
        minimum=0,
        maximum=60,
    ),
    Setting(
        "max_attribute_length",
        ("TRACEROOT_MAX_ATTRIBUTE_LENGTH",),
        "int",
        32768,
        "longer values are cut with `...[truncated N chars]`; a string array stops at 8 "
        "times this in total, with `...[N more items]`",
        minimum=1,
        maximum=16_777_216,
    ),
    Setting(
        "console",
        ("TRACEROOT_CONSOLE",),
        "bool",
        None,
        "`true` prints the trace tree even when sending; `false` silences it",
        option="--console/--no-console",
        default_text="local mode only",
        when_invalid="the tree is printed in local mode only, as when it is unset",
    ),
    Setting(
        "git_repo",
        ("TRACEROOT_GIT_REPO",),
        "text",
        None,
        "repository stamped on spans: CI variables, then `.git` (walking up), then `git`",
        argument="git_repo",
        default_text="auto-detected",
    ),
    Setting(
        "git_ref",
        ("TRACEROOT_GIT_REF",),
        "text",
        None,
        "commit stamped on spans, found the same way",
        argument="git_ref",
        default_text="auto-detected",
    ),
    Setting(
        "integrations",
        ("TRACEROOT_INTEGRATIONS",),
        "list",
        None,
        "`openai,anthropic`, `all` or `none` (launcher)",
        option="--integrations",
        default_text="every installed",
    ),
    Setting(
        "otel_instrumentors",
        ("TRACEROOT_OTEL_INSTRUMENTORS",),
        "bool",
        True,
        "the launcher also activates installed `opentelemetry-instrumentation-*` packages",
    ),
    Setting(
        "asgi_message_spans",
        ("TRACEROOT_ASGI_MESSAGE_SPANS",),
        "bool",
        False,
        "`true` keeps FastAPI's `http send` / `http receive` spans (one per ASGI message, two "
        "or more per request); by default a request is one server span",
    ),
    Setting(
        "scrub",
        ("TRACEROOT_SCRUB",),
        "bool",
        True,
        "credentials (values under names like `api_key`, `password`, `authorization`, and values "
        "shaped like keys, tokens, JWTs, PEM private keys) are replaced by `[scrubbed:<rule>]` "
        "before export; `false` turns it off",
    ),
    Setting(
        "scrub_patterns",
        ("TRACEROOT_SCRUB_PATTERNS",),
        "text",
        None,
        "more regular expressions to scrub, separated by commas (a comma inside `()`, `[]` or "
        "`{}` belongs to its pattern); each match becomes `[scrubbed:custom-N]`",
        when_invalid="patterns that do not compile are ignored",
    ),
    Setting(
        "capture_content",
        ("TRACEROOT_CAPTURE_CONTENT",),
        "bool",
        True,
        "`false` keeps each span's structure, timing, model and token counts and withholds "
        "every input, output, prompt and message (ours and the instrumentors'; OpenInference's "
        "`OPENINFERENCE_HIDE_*` settings are turned on too)",
    ),
    Setting(
        "local",
        ("TRACEROOT_LOCAL",),
        "bool",
        None,
        "`true` keeps a copy in the local store (`traceroot ui`) even when sending; "
        "`false` turns the store off",
        default_text="local mode only",
        when_invalid="the store is on in local mode only",
    ),
    Setting(
        "local_dir",
        ("TRACEROOT_LOCAL_DIR",),
        "text",
        None,
        "directory of the local store (`traces.db`)",
        default_text="`$XDG_DATA_HOME/traceroot` or `~/.local/share/traceroot`",
    ),
    Setting(
        "local_max_traces",
        ("TRACEROOT_LOCAL_MAX_TRACES",),
        "int",
        DEFAULT_MAX_TRACES,
        "traces the local store keeps; the oldest are pruned first",
        minimum=1,
        maximum=10_000_000,
    ),
    Setting(
        "local_max_mb",
        ("TRACEROOT_LOCAL_MAX_MB",),
        "int",
        DEFAULT_MAX_MB,
        "size of the local store in MB; the oldest traces are pruned first",
        minimum=1,
        maximum=1_000_000,
    ),
    Setting(
        "sample_rate",
        ("TRACEROOT_SAMPLE_RATE",),
        "float",
        None,
        "the fraction of new traces kept, chosen by trace id so a trace is kept or dropped "
        "whole across processes; `0` keeps none started here (a trace sampled upstream is "
        "still followed)",
        minimum=0,
        maximum=1,
        default_text="every trace (or `OTEL_TRACES_SAMPLER`)",
        when_invalid="keeping every trace",
    ),
    Setting(
        "sampler",
        ("OTEL_TRACES_SAMPLER",),
        "choice",
        "parentbased_always_on",
        "the standard sampler when `TRACEROOT_SAMPLE_RATE` is unset: `parentbased_always_on`, "
        "`parentbased_always_off`, `parentbased_traceidratio`, or `always_on`, `always_off`, "
        "`traceidratio` (which ignore the parent's decision)",
        choices=SAMPLERS,
        when_invalid="keeping every trace (parentbased_always_on)",
    ),
    Setting(
        "sampler_arg",
        ("OTEL_TRACES_SAMPLER_ARG",),
        "float",
        None,
        "the fraction of new traces the `traceidratio` samplers keep",
        minimum=0,
        maximum=1,
        default_text="1",
        when_invalid="keeping every trace",
    ),
    Setting(
        "endpoint",
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        "text",
        None,
        "OTLP destination when no API key is set: the `TRACES_` URL as it is, the generic "
        "one with `/v1/traces` added (OTLP/HTTP)",
        scope="otlp",
    ),
    Setting(
        "protocol",
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "choice",
        "http/protobuf",
        "`http/protobuf`, or `grpc` with `pip install 'traceroot[grpc]'`",
        choices=("http/protobuf", "grpc", "http/json"),
        scope="otlp",
    ),
    Setting(
        "insecure",
        ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
        "bool",
        None,
        "gRPC, an endpoint named without a scheme (`localhost:4317`): `true` reaches it in "
        "plain text; unset or `false`, over TLS, as OpenTelemetry does",
        default_text="TLS for `host:port`",
        when_invalid="reaching such an endpoint over TLS",
        scope="otlp",
    ),
    Setting(
        "headers",
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        "text",
        None,
        "`key=value,...` sent with each export (values URL-encoded, never shown)",
        scope="otlp",
    ),
    Setting(
        "timeout",
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
        "float",
        None,
        "milliseconds one export may take",
        minimum=0,
        above_minimum=True,
        maximum=600_000,
        default_text="`TRACEROOT_TIMEOUT`",
        when_invalid="using TRACEROOT_TIMEOUT",
        scope="otlp",
    ),
    Setting(
        "compression",
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
        "choice",
        "gzip",
        "`gzip` or `none`",
        choices=("gzip", "none"),
        scope="otlp",
    ),
    Setting(
        "ca_file",
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "text",
        None,
        "CA bundle to trust (TraceRoot too); else `SSL_CERT_FILE`/`SSL_CERT_DIR`, else "
        "`REQUESTS_CA_BUNDLE`, else `CURL_CA_BUNDLE`, else the system store",
        scope="otlp",
    ),
    Setting(
        "client_cert",
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        "text",
        None,
        "client certificate (PEM) for mTLS",
        scope="otlp",
    ),
    Setting(
        "client_key",
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "text",
        None,
        "client key (PEM) for mTLS",
        scope="otlp",
    ),
    *(
        Setting(
            field,
            (variable,),
            "limit",
            None,
            what + " (OpenTelemetry's span limits)",
            minimum=0,
            default_text=default,
            when_invalid="OpenTelemetry's SDK would fail on it, so it is taken out of this "
            "process's environment and the default applies",
            scope="limits",
        )
        for field, variable, default, what in (
            (
                "attribute_count_limit",
                "OTEL_ATTRIBUTE_COUNT_LIMIT",
                "128",
                "most attributes of a span, an event or a link",
            ),
            (
                "span_attribute_count_limit",
                "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128",
                "most attributes of a span; past it the oldest give way, never the backend's keys",
            ),
            (
                "event_attribute_count_limit",
                "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
                "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128",
                "most attributes of an event",
            ),
            (
                "link_attribute_count_limit",
                "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
                "`OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128",
                "most attributes of a link",
            ),
            (
                "span_event_count_limit",
                "OTEL_SPAN_EVENT_COUNT_LIMIT",
                "128",
                "most events of a span",
            ),
            ("span_link_count_limit", "OTEL_SPAN_LINK_COUNT_LIMIT", "128", "most links of a span"),
            (
                "attribute_value_length_limit",
                "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                "none",
                "longest attribute value, in characters",
            ),
            (
                "span_attribute_value_length_limit",
                "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                "`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`",
                "longest span attribute value",
            ),
        )
    ),  # fmt: skip
)

BY_FIELD: dict[str, Setting] = {s.field: s for s in SETTINGS if s.scope == "config"}
OTLP: dict[str, Setting] = {s.field: s for s in SETTINGS if s.scope == "otlp"}
LIMITS: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.scope == "limits")


def drop_unusable_limits(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Take out of the environment the span limits OpenTelemetry's SDK cannot start with.

    The SDK reads `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` as `opentelemetry.sdk.trace` is imported,
    and every limit when a provider is made, and raises on a value that is not a count: the
    program's `import traceroot` would fail with it. Such a value is named in one warning (an
    empty one is valid: no limit). Run before the SDK is imported.
    """
    env = os.environ if environ is None else environ
    for setting in LIMITS:
        raw = env.get(setting.variable)
        if raw is None or setting.parse(raw) is not None:
            continue
        del env[setting.variable]
        Resolver(env)._warn(setting, setting.variable, raw)


class Resolver:
    """Picks each setting from the argument, else its variables, else the default.

    A bad value never raises: one warning (once per process) names the variable or
    argument, the value (masked when secret), what is expected and the default used.
    """

    _warned: set[tuple[str, str]] = set()

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def raw(self, setting: Setting) -> tuple[str, str] | None:
        """(variable, raw text) of the first of the setting's variables that is set."""
        for name in setting.variables:
            raw = self.environ.get(name)
            if raw is not None and raw.strip():
                return name, raw
        return None

    def given(self, setting: Setting, argument: Any = None) -> bool:
        """Whether the argument or a variable sets this setting to a valid value."""
        if argument is not None:
            return setting.parse(str(argument)) is not None
        found = self.raw(setting)
        return found is not None and setting.parse(found[1]) is not None

    def value(self, setting: Setting, argument: Any = None) -> Any:
        """The resolved value of `setting`."""
        if argument is not None:
            if setting.kind == "bool" and isinstance(argument, bool):
                return argument
            parsed = setting.parse(str(argument))
            if parsed is None:
                self._warn(setting, f"initialize({setting.argument}=...)", str(argument))
                return setting.default
            return parsed
        found = self.raw(setting)
        if found is None:
            return setting.default
        name, raw = found
        parsed = setting.parse(raw)
        if parsed is None:
            self._warn(setting, name, raw)
            return setting.default
        return parsed

    def _warn(self, setting: Setting, source: str, raw: str) -> None:
        key = (source, raw)
        if key in self._warned:
            return  # the configuration is read again by a later initialize()
        self._warned.add(key)
        if setting.kind == "secret":
            problem = (
                "it holds a line break or another control character"
                if has_control_characters(raw)
                else "it is not valid"
            )
            logger.warning(
                "traceroot: %s is not usable (%s); tracing runs without a key. Fix or unset %s.",
                source,
                problem,
                setting.variable,
            )
            return
        fix = "Fix the argument." if source.startswith("initialize(") else f"Fix or unset {source}."
        outcome = setting.when_invalid or _default_outcome(setting)
        logger.warning(
            "traceroot: invalid %s=%s (expected %s); %s. %s",
            source,
            quoted(raw),
            setting.expected(),
            outcome,
            fix,
        )


def _default_outcome(setting: Setting) -> str:
    """What an invalid value leads to, as the docs spell the default (`true`, not `True`)."""
    if setting.default is None:
        return "it is ignored, as if it were unset"
    if isinstance(setting.default, bool):
        return f"using the default {str(setting.default).lower()}"
    return f"using the default {setting.default}"


def tracing_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `TRACEROOT_ENABLED` turns tracing off (read without warnings, for hot paths)."""
    setting = BY_FIELD["enabled"]
    found = Resolver(environ).raw(setting)
    return found is not None and setting.parse(found[1]) is False


def configuration_digest(environ: Mapping[str, str]) -> str:
    """A digest of every `TRACEROOT_*` and `OTEL_*` variable: equal digests, equal warnings.

    A checksum, not a cryptographic hash: it only tells two environments apart, and
    `hashlib` would load OpenSSL in the launcher.
    """
    import zlib

    items = sorted(
        (k, v)
        for k, v in environ.items()
        if k.startswith(("TRACEROOT_", "OTEL_")) and k not in _NOT_CONFIGURATION
    )
    text = "\0".join(f"{k}={v}" for k, v in items)
    data = text.encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}{len(data):x}"


def quoted(raw: str) -> str:
    """`raw` in quotes for a message: control characters spelled out, never written."""
    return repr(raw) if has_control_characters(raw) else f"'{raw}'"


def readme_table() -> str:
    """The README's configuration table, made from the rows above."""
    lines = ["| variable | default | bounds | meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        names = ", ".join(f"`{name}`" for name in setting.variables)
        default = setting.shown_default()
        default = f"`{default}`" if default and setting.default is not None else default
        bounds = setting.expected() if setting.kind in ("int", "float", "limit") else ""
        lines.append(f"| {names} | {default} | {bounds} | {setting.help} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m traceroot._settings: the README table
    print(readme_table())
