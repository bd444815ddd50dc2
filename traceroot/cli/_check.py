"""``traceroot-run --check``: is tracing set up right, and does the backend accept a span?"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from traceroot import _git as git
from traceroot import _integrations as integrations
from traceroot import _sampling as sampling
from traceroot._config import Config, load_config, mask_secret, safe_url
from traceroot._export.exporters import Exporter, make_exporter
from traceroot._integrations import Integration
from traceroot._settings import SETTINGS, Setting
from traceroot.version import SDK_NAME, __version__

# A check should answer quickly even when the configured export timeout is long.
MAX_CHECK_TIMEOUT = 10.0
_PACKAGES = (
    "traceroot",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-common",
    "openinference-instrumentation",
)


class _Collect(logging.Handler):
    """Keeps the warnings the SDK logs while the check runs, to list them as problems."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().removeprefix("traceroot: ")
        if message not in self.messages:
            self.messages.append(message)


@contextmanager
def _collecting_warnings() -> Iterator[_Collect]:
    logger = logging.getLogger("traceroot")
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _line(label: str, value: object) -> None:
    click.echo(f"  {label:<28} {value}")


def _show(value: str | None, default: str = "<not set>") -> str:
    return value if value else default


def _shown(setting: Setting, config: Config) -> str:
    """A setting's resolved value as --check shows it: secrets masked, defaults marked."""
    if setting.scope == "otlp":
        value = getattr(config.otlp, setting.field)
        if setting.field == "headers":
            return ", ".join(value) + " (values hidden)" if value else "<not set>"
        if setting.field == "endpoint":
            value = config.otlp_endpoint or value
        if setting.field == "timeout" and value is not None:
            return f"{value * 1000:g} ms"
    else:
        value = getattr(config, setting.field)
    if setting.kind == "secret":
        return mask_secret(value)
    if setting.field == "console":
        return "on" if config.console_enabled else "off"
    if value is None or value == "":
        default = setting.shown_default()
        return f"{default} (default)" if default else "<not set>"
    if setting.kind == "url" or setting.field == "endpoint":
        return safe_url(value)
    if isinstance(value, bool):
        return str(value).lower()
    if setting.kind == "float":
        return f"{value:g} s" if "seconds" in setting.help else f"{value:g}"
    return str(value)


def _print_config(config: Config, env: Mapping[str, str]) -> None:
    click.echo("Configuration")
    for setting in SETTINGS:
        if setting.field in ("git_repo", "git_ref"):
            continue  # shown below as detected
        if setting.field == "service_name" and not env.get(setting.variable):
            # Unset, the name is derived from the program's own argv, unknown here.
            _line(setting.variable, "the program's name (default)")
            continue
        _line(setting.variable, _shown(setting, config))
    _line("sampling", sampling.describe(env))
    found = git.detect(config.git_repo, config.git_ref)
    _line("git repository", _show(found.repo, "<not found: set TRACEROOT_GIT_REPO>"))
    _line("git ref", _show(found.ref, "<not found: set TRACEROOT_GIT_REF>"))


def _integration_states(config: Config) -> dict[Integration, str]:
    """Instrument what the program would, importing each library to prove it works."""
    from opentelemetry.sdk.trace import TracerProvider

    integrations.activate(config.integrations, TracerProvider(), explicit=False)
    for integration, state in integrations.status().items():
        if state == "waiting for import":
            try:
                importlib.import_module(integrations.REGISTRY[integration].module)
            except Exception as exc:
                click.echo(f"  ({integration.value}: importing the library failed: {exc!r})")
    return integrations.status()


def _requested(config: Config) -> set[str]:
    text = (config.integrations or "").strip().lower()
    if text in ("", "all", "auto", "none"):
        return set()
    return {name.strip().replace("-", "_") for name in text.split(",") if name.strip()}


def _print_integrations(config: Config, problems: list[str]) -> None:
    click.echo("Integrations")
    requested = _requested(config)
    for integration, state in _integration_states(config).items():
        _line(integration.value, state)
        if state.startswith("failed"):
            problems.append(f"the {integration.value} integration {state}")
        elif integration.value in requested and state != "instrumented":
            problems.append(
                f"{integration.value} is named in TRACEROOT_INTEGRATIONS but is {state}"
            )


def _print_versions() -> None:
    click.echo("Versions")
    _line("Python", f"{sys.version.split()[0]} ({sys.executable})")
    for name in _PACKAGES:
        try:
            _line(name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            _line(name, "not installed")


def _test_span(config: Config) -> ReadableSpan:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    name = "traceroot-run --check"
    attributes: dict[str, str | list[str]] = {
        "traceroot.sdk.name": SDK_NAME,
        "traceroot.sdk.version": __version__,
        "traceroot.span.type": "span",
        "traceroot.span.path": [name],
        "traceroot.span.ids_path": [],
    }
    if config.environment:
        attributes["traceroot.environment"] = config.environment
    with provider.get_tracer("traceroot-run", __version__).start_as_current_span(
        name, attributes=attributes
    ):
        pass
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    return span


def _send_test_span(config: Config, env: Mapping[str, str]) -> str | None:
    """Send one span through the exporter real exports use; None on success, else why not."""
    destination = config.destination
    assert destination.endpoint is not None
    exporter = make_exporter(
        destination.kind,
        destination.endpoint,
        destination.headers,
        destination.settings,
        min(config.timeout, MAX_CHECK_TIMEOUT),
        environ=env,
    )
    if exporter is None:
        return "no exporter for this protocol (see above)"
    route: Exporter = exporter  # type: ignore[assignment]
    for label, value in route.describe_route():
        _line(label, value)
    _line("sent to", route.endpoint)
    route.hurry()  # like exit: a backend that is plainly absent is not retried
    started = time.monotonic()
    try:
        result = exporter.export([_test_span(config)])
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        return route.last_error or "the backend did not accept the span"
    elapsed = (time.monotonic() - started) * 1000
    answer = f"HTTP {route.last_status}" if route.last_status is not None else "gRPC OK"
    _line("result", f"accepted ({answer}, {elapsed:.0f} ms)")
    return None


def run_check(env: Mapping[str, str]) -> int:
    """Print the report for a program started with ``env``; 0 when all is well, else 1."""
    problems: list[str] = []
    with _collecting_warnings() as warnings:
        config = load_config(environ=env)
        _print_config(config, env)
        destination = config.destination
        click.echo("Destination")
        _line("traces go to", destination.describe())
        _print_integrations(config, problems)
        _print_versions()
        click.echo("Test span")
        if not config.enabled:
            problems.append("tracing is disabled (TRACEROOT_ENABLED=false): nothing is traced")
            _line("result", "not sent: tracing is disabled")
        elif destination.refused:
            problems.append(f"nothing is sent: {destination.refused}")
            _line("result", "not sent: the destination is invalid")
        elif destination.kind == "local":
            problems.append(
                "no backend: set TRACEROOT_API_KEY (or OTEL_EXPORTER_OTLP_ENDPOINT); "
                "spans are only printed locally"
            )
            _line("result", "not sent: no backend configured")
        else:
            error = _send_test_span(config, env)
            if error is not None:
                # The exporter warned it too: list it once.
                warnings.messages = [m for m in warnings.messages if not m.startswith(error)]
                _line("result", f"FAILED: {error}")
                problems.append(f"the test span was not delivered: {error}")
    problems = [*warnings.messages, *problems]
    if problems:
        click.echo(f"Problems ({len(problems)})")
        for problem in problems:
            click.echo(f"  - {problem}")
        return 1
    click.echo("All good: traces will reach the backend.")
    return 0
