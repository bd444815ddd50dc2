"""What is requested, hooked and instrumented in this process, and the calls that change it.

Nothing here imports an instrumented library. Each requested integration gets an
import hook; the library is instrumented the moment its module finishes executing
(or at once when it is already imported), so a program pays only for what it uses.
"""

from __future__ import annotations

import sys

from traceroot import _compat as compat
from traceroot import _distributions as distributions
from traceroot import _import_hooks as import_hooks
from traceroot._errors import in_words
from traceroot._integrations import entry_points
from traceroot._integrations.deferred import DeferredProvider, resolve
from traceroot._integrations.registry import REGISTRY, Integration, parse_requested, pip_hint
from traceroot._settings import logger

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing`, `logging`, `threading` are not loaded by the launcher
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

if TYPE_CHECKING:  # OpenTelemetry and the duplicates table load with the first instrumentor
    from opentelemetry.trace import TracerProvider

    from traceroot._integrations.first_call import Armed


def _load_object(target: str) -> Any:
    module, _, name = target.partition(":")
    import importlib

    return getattr(importlib.import_module(module), name)


class _State:
    """What has been requested, hooked and instrumented in this process."""

    def __init__(self) -> None:
        self.lock = compat.rlock()
        self.provider: TracerProvider | DeferredProvider | None = None
        self.duplicates_pending = False  # decided when a deferred provider is made
        self.explicit = False
        self.hooks: dict[Integration, Callable[[], None]] = {}
        # Imported, waiting for the first call to instrument (see `first_call`).
        self.armed: dict[Integration, Armed] = {}
        self.instrumented: dict[Integration, Any] = {}
        self.in_progress: set[Integration] = set()
        self.failed: dict[Integration, str] = {}
        # Libraries first imported by an instrumentor (Agno's imports every agno.models
        # module, and so litellm, anthropic, ...), not by the program: a missing instrumentor
        # for one of them is not worth a warning.
        self.incidental: set[Integration] = set()


_state = _State()


def activate(
    requested: Sequence[Integration | str] | str | None,
    tracer_provider: TracerProvider | DeferredProvider,
    *,
    explicit: bool,
    warn: bool = True,
) -> None:
    """Instrument the requested integrations on import, with ``tracer_provider``.

    ``tracer_provider`` may be a `DeferredProvider`: it is made when the first requested
    library is imported. ``explicit=True``: ``requested`` is the user's
    ``initialize(integrations=...)`` list (None does nothing); it replaces hooks left by an
    earlier automatic activation.
    ``explicit=False``: ``requested`` is ``TRACEROOT_INTEGRATIONS`` ("a,b", "all", "none")
    or None for every integration whose library is installed; ignored after an explicit
    activation; ``warn=False``: its unknown names were reported already (by the launcher
    or the parent process). Never raises; problems are logged on the ``traceroot`` logger.
    """
    try:
        _activate(requested, tracer_provider, explicit=explicit, warn=warn or explicit)
    except Exception as exc:
        logger.warning(
            "traceroot: could not activate integrations (%s); the program runs on untraced by them",
            in_words(exc),
        )
        logger.debug("traceroot: activation failure", exc_info=exc)


def _activate(
    requested: Sequence[Integration | str] | str | None,
    tracer_provider: TracerProvider | DeferredProvider,
    *,
    explicit: bool,
    warn: bool,
) -> None:
    source = "initialize(integrations=...)" if explicit else "TRACEROOT_INTEGRATIONS"
    chosen = parse_requested(requested, source, warn=warn)
    if explicit and chosen is None:
        return
    with _state.lock:
        if not explicit and _state.explicit:
            logger.debug(
                "traceroot: integrations already chosen by initialize(); %s ignored",
                "TRACEROOT_INTEGRATIONS",
            )
            return
        previous, _state.provider = _state.provider, tracer_provider
        if explicit and not _state.explicit:
            _state.explicit = True
            waiting = (*_state.hooks, *_state.armed)
            for integration in [i for i in waiting if i not in (chosen or [])]:
                _withdraw_hook(integration)
        named = chosen is not None
        ready = [
            integration
            for integration in (chosen if chosen is not None else list(Integration))
            if _request(integration, named=named)
        ]
        if isinstance(tracer_provider, DeferredProvider):
            _state.duplicates_pending = True
        else:
            _state.duplicates_pending = False
            _yield_duplicates_on(tracer_provider, ready)
    # Instrumenting imports modules, so it happens without the lock: another thread may be
    # inside an import, waiting for the lock in its hook.
    if (
        previous is not None
        and previous is not tracer_provider
        and not isinstance(tracer_provider, DeferredProvider)
    ):
        _rebind(tracer_provider)
    for integration in ready:
        _instrument(integration)


def _yield_duplicates_on(tracer_provider: TracerProvider, ready: Iterable[Integration]) -> None:
    """Under the lock: give the provider yielding tracers when an active integration has
    duplicates to silence."""
    active = {*ready, *_state.hooks, *_state.armed, *_state.instrumented, *_state.in_progress}
    if not active:
        return
    from traceroot._integrations.duplicates import DUPLICATES, yield_duplicates

    if any(c.integration in active for covers in DUPLICATES.values() for c in covers):
        yield_duplicates(tracer_provider, lambda i: i in _state.instrumented)


def provider_ready(tracer_provider: TracerProvider) -> None:
    """A `DeferredProvider` has been made: integrations use this provider from now on.

    Called before anything is instrumented with it, as the duplicates table must be in
    place before instrumentors take their tracers.
    """
    with _state.lock:
        deferred = _state.provider
        if not isinstance(deferred, DeferredProvider):
            return
        _state.provider = tracer_provider
        if _state.duplicates_pending:
            _state.duplicates_pending = False
            _yield_duplicates_on(tracer_provider, ())
    deferred.made(tracer_provider)  # outside the lock: what waited instruments now


def _rebind(tracer_provider: TracerProvider) -> None:
    """Point everything already instrumented at a new provider (after a re-initialize)."""
    for integration, instrumentor in list(_state.instrumented.items()):
        try:
            instrumentor.uninstrument()
            instrumentor.instrument(tracer_provider=tracer_provider)
        except Exception as exc:
            with _state.lock:
                _state.instrumented.pop(integration, None)
            _fail(integration, exc)


def _request(integration: Integration, *, named: bool) -> bool:
    """Hook ``integration``; True when its library is already imported, to instrument now."""
    spec = REGISTRY[integration]
    if integration in _state.instrumented or integration in _state.hooks:
        return False
    if not any(distributions.installed(dist) for dist in spec.dists):
        log = logger.warning if named else logger.debug
        log(
            "traceroot: skipping the %s integration: %s is not installed",
            integration.value,
            " or ".join(spec.dists),
        )
        return False
    if import_hooks.imported(spec.module):
        return True

    def hook() -> None:
        with _state.lock:
            if _state.hooks.get(integration) is not hook:
                return
            del _state.hooks[integration]
        _instrument(integration)

    _state.hooks[integration] = hook
    import_hooks.when_imported(spec.module, hook)
    return False


def modules_to_watch(
    requested: str | None, otel_instrumentors: bool, environ: Mapping[str, str]
) -> list[str] | None:
    """The modules whose import should start activation: the libraries of the requested
    integrations that are installed, and those of the OpenTelemetry instrumentors found by
    entry point (with ``otel_instrumentors``). None when activation cannot wait for an
    import (an instrumentor that needs none). Reads metadata only; never raises."""
    try:
        chosen = parse_requested(requested, "TRACEROOT_INTEGRATIONS", warn=False)
        modules = [
            spec.module
            for integration, spec in REGISTRY.items()
            if (chosen is None or integration in chosen)
            and any(distributions.installed(dist) for dist in spec.dists)
        ]
        if otel_instrumentors:
            others = entry_points.modules_to_watch(environ)
            if others is None:
                return None
            modules.extend(others)
    except Exception:
        return None
    return list(dict.fromkeys(modules))


def _withdraw_hook(integration: Integration) -> None:
    hook = _state.hooks.pop(integration, None)
    if hook is not None:
        import_hooks.forget(REGISTRY[integration].module, hook)
    armed = _state.armed.pop(integration, None)
    if armed is not None:
        armed.disarm()


def _instrument(integration: Integration, *, first_call: bool = False) -> None:
    """Instrument ``integration`` once; its library has just been imported (or, with
    ``first_call``, called for the first time)."""
    spec = REGISTRY[integration]
    with _state.lock:
        if integration in _state.instrumented or integration in _state.in_progress:
            return
        deferred = _state.provider
        if not first_call and _arm(integration, deferred):
            return
        _state.in_progress.add(integration)
    # Outside the lock: making a deferred provider starts tracing, which takes other locks.
    provider = resolve(deferred)
    if isinstance(deferred, DeferredProvider):
        with _state.lock:  # provider_ready() has run; else keep what get() gave
            current = _state.provider
            if current is not None and not isinstance(current, DeferredProvider):
                provider = current
            elif provider is None:
                # Another thread is starting tracing: instrument once it has.
                _state.in_progress.discard(integration)
                deferred.when_made(lambda _provider: _instrument(integration))
                return
    # The lock is not held while instrumenting: that imports modules, and another
    # thread may be inside an import waiting for the lock in its hook.
    try:
        if not distributions.installed(spec.instrumentor_dist):
            log = logger.debug if integration in _state.incidental else logger.warning
            log(
                "traceroot: cannot trace %s: the instrumentor %s is not installed; run: %s",
                integration.value,
                spec.instrumentor_dist,
                pip_hint(integration),
            )
            return
        from traceroot._content import hide_content_in_instrumentors

        instrumentor = _load_object(spec.instrumentor)()
        hide_content_in_instrumentors()  # OpenInference reads its hide settings now
        before = set(sys.modules)
        try:
            instrumentor.instrument(tracer_provider=provider)
        finally:
            _note_incidental(before)
        # BaseInstrumentor declines, with its own log line, on a library version conflict.
        if not getattr(instrumentor, "is_instrumented_by_opentelemetry", True):
            with _state.lock:
                _state.failed[integration] = "failed: DependencyConflict"
            from traceroot._integrations.probe import version_advice  # this rare path only

            logger.warning(
                "traceroot: cannot trace %s: %s", integration.value, version_advice(integration)
            )
            return
        with _state.lock:
            _state.instrumented[integration] = instrumentor
            _state.failed.pop(integration, None)
        logger.debug("traceroot: instrumented %s", integration.value)
    except Exception as exc:
        _fail(integration, exc)
    finally:
        with _state.lock:
            _state.in_progress.discard(integration)


def _arm(integration: Integration, provider: TracerProvider | DeferredProvider | None) -> bool:
    """Under the lock: whether ``integration`` waits for its library's first call (armed now
    or before). Only while tracing has not started (``provider`` deferred): once it has, the
    instrumentor is all that is left to load."""
    spec = REGISTRY[integration]
    if integration in _state.armed:
        return True
    if not (spec.first_call and isinstance(provider, DeferredProvider)):
        return False
    if not distributions.installed(spec.instrumentor_dist):
        return False  # instrumenting now says what is missing, at the import
    from traceroot._integrations import first_call

    armed = first_call.arm(spec.first_call, lambda: _first_called(integration))
    if armed is None:
        return False
    _state.armed[integration] = armed
    logger.debug("traceroot: %s is instrumented at its first call", integration.value)
    return True


def _first_called(integration: Integration) -> None:
    with _state.lock:
        if _state.armed.pop(integration, None) is None:
            return  # disarmed meanwhile (deactivated, or left out by initialize())
    _instrument(integration, first_call=True)


def _note_incidental(before: set[str]) -> None:
    """Mark the integrations whose library was imported since ``before`` (by an instrumentor)."""
    new = set(sys.modules) - before
    with _state.lock:
        _state.incidental.update(i for i, spec in REGISTRY.items() if spec.module in new)


def _fail(integration: Integration, exc: BaseException) -> None:
    with _state.lock:
        _state.failed[integration] = f"failed: {type(exc).__name__}"
    logger.warning(
        "traceroot: instrumenting %s failed (%s); other integrations are unaffected",
        integration.value,
        in_words(exc),
    )
    logger.debug("traceroot: instrumenting %s failure", integration.value, exc_info=exc)


def status() -> dict[Integration, str]:
    """Each integration's state, for ``traceroot-run --check``.

    One of "instrumented", "waiting for first call", "waiting for import", "not requested",
    "library not installed", "instrumentor missing (pip install ...)" or "failed: <ExcType>".
    """
    result: dict[Integration, str] = {}
    with _state.lock:
        for integration, spec in REGISTRY.items():
            if integration in _state.instrumented:
                result[integration] = "instrumented"
            elif integration in _state.failed:
                result[integration] = _state.failed[integration]
            elif not any(distributions.installed(dist) for dist in spec.dists):
                result[integration] = "library not installed"
            elif not distributions.installed(spec.instrumentor_dist):
                result[integration] = f"instrumentor missing ({pip_hint(integration)})"
            elif integration in _state.armed:
                result[integration] = "waiting for first call"
            elif integration in _state.hooks:
                result[integration] = "waiting for import"
            else:
                result[integration] = "not requested"
    return result


def deactivate() -> None:
    """Uninstrument everything instrumented here and remove every pending import hook."""
    with _state.lock:
        for integration in [*_state.hooks, *_state.armed]:
            _withdraw_hook(integration)
        instrumentors = [*_state.instrumented.values(), *entry_points.withdraw()]
        _state.instrumented.clear()
        _state.failed.clear()
        _state.incidental.clear()
        _state.provider = None
        _state.explicit = False
        _state.duplicates_pending = False
        if "traceroot._integrations.duplicates" in sys.modules:
            from traceroot._integrations.duplicates import yield_duplicates

            yield_duplicates(None)
    for instrumentor in instrumentors:
        try:
            instrumentor.uninstrument()
        except Exception:
            logger.debug("traceroot: uninstrumenting %r failed", instrumentor, exc_info=True)


def current_provider() -> TracerProvider | None:
    """The provider integrations were last activated with, if any (and made yet)."""
    provider = _state.provider
    return None if isinstance(provider, DeferredProvider) else provider
