"""``traceroot-run --check``: is tracing set up right, and does the backend accept a span?"""

from __future__ import annotations

import importlib.metadata
import logging
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from traceroot import _git as git
from traceroot import _sampling as sampling
from traceroot._config import (
    BOTH_SET,
    Config,
    both_destinations,
    load_config,
    mask_secret,
    resource_service_name,
    safe_url,
    sdk_disabled_problem,
)
from traceroot._export.exporters import Exporter, make_exporter
from traceroot._settings import SETTINGS, Resolver, Setting
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


def _shown(setting: Setting, config: Config, env: Mapping[str, str]) -> str:
    """A setting's resolved value as --check shows it: secrets masked, defaults marked."""
    if setting.scope == "otlp":
        value = getattr(config.otlp, setting.field)
        if setting.field == "headers":
            # Resolved with the endpoint (config.otlp_headers), the values never shown.
            source = Resolver(env).raw(setting)
            if source is None:
                return "<not set>"
            names = ", ".join(config.otlp_headers) or "none usable"
            return f"{names} (values hidden; from {source[0]})"
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
        if (
            setting.field == "service_name"
            and Resolver(env).raw(setting) is None
            and resource_service_name(env) is None
        ):
            # Unset, the name is derived from the program's own argv, unknown here.
            _line(setting.variable, "the program's name (default)")
            continue
        if setting.scope == "limits":  # read by OpenTelemetry's SDK itself
            raw = env.get(setting.variable)
            if raw is None:
                _line(setting.variable, f"{setting.shown_default()} (default)")
            else:
                _line(setting.variable, raw.strip() or "no limit")
            continue
        _line(setting.variable, _shown(setting, config, env))
    _line("sampling", sampling.describe(env))
    found = git.detect(config.git_repo, config.git_ref)
    _line("git repository", _show(found.repo, "<not found: set TRACEROOT_GIT_REPO>"))
    _line("git ref", _show(found.ref, "<not found: set TRACEROOT_GIT_REF>"))


def _print_integrations(config: Config, env: Mapping[str, str], problems: list[str]) -> None:
    """Each integration's fate, judged from metadata: no instrumented library is imported."""
    from traceroot._integrations import probe
    from traceroot._integrations.registry import parse_requested

    click.echo("Integrations")
    named = parse_requested(config.integrations, "TRACEROOT_INTEGRATIONS")
    for integration, finding in probe.probe_integrations(config.integrations).items():
        _line(integration.value, finding.state)
        if finding.state.startswith("version not supported"):
            problems.append(f"the {integration.value} integration cannot work: {finding.state}")
        elif named and integration in named and not finding.would_instrument:
            problems.append(
                f"{integration.value} is named in TRACEROOT_INTEGRATIONS but is {finding.state}"
            )
    click.echo("OpenTelemetry instrumentors")
    if not config.otel_instrumentors:
        _line("(all)", "off (TRACEROOT_OTEL_INSTRUMENTORS=false)")
        return
    findings = probe.probe_otel_instrumentors(env)
    if not findings:
        _line("(none installed)", "")
    for finding in findings:
        _line(finding.name, finding.state)


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
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    exporter = InMemorySpanExporter()
    # Made whatever the configured sampler keeps: the span tests the destination.
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}), sampler=ALWAYS_ON
    )
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


def _store_test_span(config: Config, env: Mapping[str, str]) -> str | None:
    """Local mode: keep one span through the local sink real runs use, and read it back.

    None on success (or when the store is off but the console shows spans), else the problem.
    """
    from traceroot._export.local_sink import reason, store_batcher
    from traceroot._local.settings import local_settings
    from traceroot._local.store import Store

    settings = local_settings(env)
    made = store_batcher(False, finish=None, max_queue_size=16, settings=settings)
    if made is None:
        _line("local store", "off (TRACEROOT_LOCAL=false)")
        if config.console_enabled:
            _line("result", "not kept: spans are only printed on the console")
            return None
        _line("result", "not kept: the local store and the console are both off")
        return (
            "traces go nowhere: no backend (set TRACEROOT_API_KEY or "
            "OTEL_EXPORTER_OTLP_ENDPOINT), TRACEROOT_LOCAL=false and the console is off"
        )
    batcher, settings = made
    _line("local store", f"{settings.path} (browse with `traceroot ui`)")
    span = _test_span(config)
    batcher.add(span)
    flushed = batcher.shutdown(MAX_CHECK_TIMEOUT)
    assert span.context is not None
    trace_id = f"{span.context.trace_id:032x}"
    why = "it was not found there after writing" if flushed else "writing timed out"
    stored = None
    if flushed:
        reader = Store(settings.path)
        try:
            stored = reader.trace(trace_id)
        except (sqlite3.Error, OSError) as exc:
            why = reason(exc)
        finally:
            reader.close()
    if stored is None or not any(s["name"] == span.name for s in stored["spans"]):
        _line("result", f"FAILED: {why}")
        return f"the test span was not kept in the local store {settings.path}: {why}"
    _line("result", f"kept and read back (trace {trace_id})")
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
        if (ignored := both_destinations(config, env)) is not None:
            # By design (README, "Where traces go"): shown here, not listed as a problem.
            _line("not used", ignored)
            warnings.messages = [m for m in warnings.messages if BOTH_SET not in m]
        _print_integrations(config, env, problems)
        _print_versions()
        click.echo("Test span")
        sdk_off = sdk_disabled_problem(env)
        if sdk_off is not None:
            problems.append(sdk_off)
            _line("result", "not sent: OTEL_SDK_DISABLED=true")
        elif not config.enabled:
            problems.append("tracing is disabled (TRACEROOT_ENABLED=false): nothing is traced")
            _line("result", "not sent: tracing is disabled")
        elif destination.refused:
            problems.append(f"nothing is sent: {destination.refused}")
            _line("result", "not sent: the destination is invalid")
        elif destination.kind == "local":
            error = _store_test_span(config, env)
            if error is not None:
                problems.append(error)
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
    if config.enabled and destination.kind == "local":
        click.echo("All good: traces are kept locally (run `traceroot ui` to browse them).")
        return 0
    click.echo("All good: traces will reach the backend.")
    return 0
