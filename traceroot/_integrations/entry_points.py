"""Standard OpenTelemetry instrumentors, found by their ``opentelemetry_instrumentor`` entry points.

Each is activated when its library is imported, and skipped when one of our LLM
integrations already traces that library (it would make a second span per call).
"""

from __future__ import annotations

import functools
import os

from traceroot import _compat as compat
from traceroot import _distributions as distributions
from traceroot import _import_hooks as import_hooks
from traceroot._errors import in_words
from traceroot._integrations.registry import OI, REGISTRY, Integration
from traceroot._settings import logger

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing`, `logging` and `threading` are not loaded by the launcher
    import importlib.metadata
    import re
    from collections.abc import Callable, Mapping
    from typing import Any

    from opentelemetry.trace import TracerProvider

    from traceroot._integrations.deferred import DeferredProvider

    # Ours at start-up; importlib's when opentelemetry-instrument hands one to the distro.
    AnyEntryPoint = distributions.EntryPoint | importlib.metadata.EntryPoint

ENTRY_POINT_GROUP = "opentelemetry_instrumentor"


class _Seen:
    """Entry points handled, their pending import hooks, and the instrumentors made."""

    def __init__(self) -> None:
        self.lock = compat.rlock()
        self.otel_seen: set[str] = set()
        self.otel_hooks: list[tuple[str, Callable[[], None]]] = []
        self.otel_instrumented: list[Any] = []


_seen = _Seen()


def withdraw() -> list[Any]:
    """Forget every entry point: remove pending hooks; the instrumentors made, to undo."""
    with _seen.lock:
        for module, hook in _seen.otel_hooks:
            import_hooks.forget(module, hook)
        made = list(_seen.otel_instrumented)
        _seen.otel_hooks.clear()
        _seen.otel_instrumented.clear()
        _seen.otel_seen.clear()
    return made


def activate_otel_instrumentors(
    tracer_provider: TracerProvider | DeferredProvider, *, message_spans: bool = False
) -> None:
    """Activate installed ``opentelemetry_instrumentor`` entry points, each on import.

    For the launcher path (which skips it when ``TRACEROOT_OTEL_INSTRUMENTORS`` is false); honours
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``. ``message_spans``: FastAPI keeps its per-message
    ASGI spans (``TRACEROOT_ASGI_MESSAGE_SPANS``). Never raises.
    """
    for entry_point in _enabled_entry_points(os.environ):
        activate_otel_entry_point(entry_point, tracer_provider, message_spans=message_spans)


def _enabled_entry_points(environ: Mapping[str, str]) -> list[distributions.EntryPoint]:
    """The installed entry points ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` leaves on."""
    disabled = {
        name.strip() for name in environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")
    }
    if "*" in disabled:
        return []
    try:
        entry_points = distributions.entry_points(ENTRY_POINT_GROUP)
    except Exception as exc:
        logger.warning(
            "traceroot: could not list OpenTelemetry instrumentors (%s)",
            in_words(exc),
        )
        return []
    return [entry_point for entry_point in entry_points if entry_point.name not in disabled]


def modules_to_watch(environ: Mapping[str, str]) -> list[str] | None:
    """The modules whose import would activate an entry point; None when one needs none
    (its instrumentor is activated at once). Never raises."""
    modules: list[str] = []
    for entry_point in _enabled_entry_points(environ):
        try:
            waits_for = _waits_for(entry_point)
        except Exception:
            return None  # activation itself will say what is wrong
        if waits_for == []:
            return None
        modules.extend(waits_for or ())
    return list(dict.fromkeys(modules))


def _waits_for(entry_point: AnyEntryPoint) -> list[str] | None:
    """The modules whose import activates the entry point: [] for "none, at once", None
    for "never" (an LLM integration covers it, or its library is not installed)."""
    # OpenInference's own entry points are ours already: no need to read their metadata.
    libraries = (
        [] if entry_point.value.startswith(OI + ".") else instrumented_libraries(entry_point)
    )
    if covered_by_registry(entry_point, set(libraries)):
        logger.debug("traceroot: %s left to the LLM integrations", entry_point.value)
        return None
    modules = [
        m for lib in libraries if distributions.installed(lib) for m in _top_level_modules(lib)
    ]
    if libraries and not modules:
        logger.debug("traceroot: %s skipped: its library is not installed", entry_point.name)
        return None
    return modules


@functools.cache
def _ours() -> frozenset[str]:
    """The distributions and integration names our LLM integrations cover, normalized."""
    ours = {distributions.normalize(dist) for spec in REGISTRY.values() for dist in spec.dists}
    ours |= {distributions.normalize(member.value) for member in Integration}
    return frozenset(ours)


def covered_by_registry(entry_point: AnyEntryPoint, libraries: set[str]) -> bool:
    """Whether an LLM integration of ours already traces what this entry point would."""
    if entry_point.value.startswith(OI + "."):
        return True
    ours = _ours()
    return distributions.normalize(entry_point.name) in ours or bool(libraries & ours)


def activate_otel_entry_point(
    entry_point: AnyEntryPoint,
    tracer_provider: TracerProvider | DeferredProvider,
    *,
    message_spans: bool = False,
    **kwargs: Any,
) -> None:
    """Instrument one OpenTelemetry instrumentor entry point when its library is imported.

    Entry points for libraries an LLM integration covers are skipped (they would make a
    second span per call), as are ones already handled. FastAPI's ``http send`` and
    ``http receive`` spans are left out unless ``message_spans``. Never raises.
    """
    if entry_point.name == "fastapi" and not message_spans:
        # One span per ASGI message (the response's start and each body chunk, each request
        # body chunk): the request's server span already says what they do, at a fraction
        # of the spans. A release older than the argument reads its keywords by name, so it
        # ignores this one.
        kwargs.setdefault("exclude_spans", ["receive", "send"])
    try:
        with _seen.lock:
            if entry_point.name in _seen.otel_seen:
                return
            _seen.otel_seen.add(entry_point.name)
        modules = _waits_for(entry_point)
        if modules is None:
            return
        import threading

        done = threading.Event()

        def hook() -> None:
            if done.is_set():
                return
            done.set()
            from traceroot._integrations.deferred import DeferredProvider, resolve

            provider = resolve(tracer_provider)  # a deferred one starts tracing now
            if provider is None and isinstance(tracer_provider, DeferredProvider):
                # Another thread is starting tracing: instrument once it has.
                tracer_provider.when_made(
                    lambda made: _instrument_entry_point(entry_point, made, hook, kwargs)
                )
                return
            _instrument_entry_point(entry_point, provider, hook, kwargs)

        if not modules:  # the standard library or an unknown target: nothing to wait for
            hook()
            return
        for module in modules:
            with _seen.lock:
                _seen.otel_hooks.append((module, hook))
            import_hooks.when_imported(module, hook)
    except Exception as exc:
        _warn_failed(entry_point, exc)


def _instrument_entry_point(
    entry_point: AnyEntryPoint,
    provider: TracerProvider | None,
    hook: Callable[[], None],
    kwargs: dict[str, Any],
) -> None:
    """Load and run one OpenTelemetry instrumentor with ``provider``; never raises."""
    try:
        from traceroot._content import hide_content_in_instrumentors

        instrumentor = entry_point.load()()
        hide_content_in_instrumentors()
        instrumentor.instrument(tracer_provider=provider, **kwargs)
        with _seen.lock:
            _seen.otel_instrumented.append(instrumentor)
            for module, other in [h for h in _seen.otel_hooks if h[1] is hook]:
                import_hooks.forget(module, other)
    except Exception as exc:
        _warn_failed(entry_point, exc)


def _warn_failed(entry_point: AnyEntryPoint, exc: Exception) -> None:
    logger.warning(
        "traceroot: the OpenTelemetry instrumentor %s failed (%s); the program runs on without it",
        entry_point.name,
        in_words(exc),
    )
    logger.debug("traceroot: instrumentor %s failure", entry_point.name, exc_info=exc)


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A requirement line (name; marker), and the `instruments` extra in a marker."""
    import re  # compiled on first need: most environments have no entry point to read

    return (
        re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;(.*)$"),
        re.compile(r"""extra\s*==\s*["']instruments(-any)?["']"""),
    )


def instrumented_libraries(entry_point: AnyEntryPoint) -> list[str]:
    """Distributions the entry point's package instruments, from its ``instruments`` extras.

    A regular expression rather than ``packaging``: this runs at every process start, and
    only the name and the extra marker of each line matter.
    """
    dist = entry_point.dist
    if dist is None:
        return []
    libraries: list[str] = []
    requirement, instruments_extra = _patterns()
    for line in dist.requires or []:
        match = requirement.match(line)
        if match is not None and instruments_extra.search(match.group(2)):
            libraries.append(match.group(1))
    return libraries


def _top_level_modules(dist_name: str) -> list[str]:
    """Top-level import names a distribution provides, read from its metadata only."""
    dist = distributions.find(dist_name)
    return dist.top_level_modules() if dist is not None else []
