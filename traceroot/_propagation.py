"""Trace context across process boundaries.

A parent hands its current span to the Python processes it starts as W3C
``TRACEPARENT`` / ``TRACESTATE`` (the OpenTelemetry environment-variable
carrier); a child started that way continues the parent's trace. Covered:
``subprocess`` (and everything built on it, e.g. ``asyncio`` subprocesses) and
``multiprocessing`` with the spawn and forkserver start methods; forked
children inherit the context in memory and need nothing. A task given to a
``multiprocessing`` pool (``apply_async``, ``map``, ``imap``, ``starmap``...) carries
the span that submitted it, so its spans nest under that span whenever the pool's
workers were started (and however often they are replaced).

`install()` runs in the start-up hook of every traced process: this module loads nothing at
import that Python has not loaded already, and OpenTelemetry only once there is a context.
"""

from __future__ import annotations

import _thread
import os
import sys

from traceroot import _compat as compat
from traceroot import _import_hooks as import_hooks
from traceroot._errors import in_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import subprocess
    from collections.abc import Callable, Mapping, MutableMapping
    from multiprocessing import process as mp_process
    from typing import Any

    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "attach_parent_from_environment",
    "carry_context_into_pools",
    "current_carrier",
    "drop_unknown_propagators",
    "install",
]


def _none_understood() -> bool:
    """Whether the installed OpenTelemetry API takes `OTEL_PROPAGATORS=none` (newer releases
    do; older ones fail on it as on any unknown name). Told by its source; True if unread."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("opentelemetry.propagate")
        origin = spec.origin if spec is not None else None
        if origin is None:
            return True
        with open(origin, encoding="utf-8") as source:
            return '"none"' in source.read()
    except (OSError, ImportError, ValueError, UnicodeDecodeError):
        return True


# Where the propagators OTEL_PROPAGATORS may name come from, for the warning's fix.
_PROPAGATOR_PACKAGES = {
    "b3": "opentelemetry-propagator-b3",
    "b3multi": "opentelemetry-propagator-b3",
    "jaeger": "opentelemetry-propagator-jaeger",
    "xray": "opentelemetry-propagator-aws-xray",
    "ottrace": "opentelemetry-propagator-ot-trace",
}


def drop_unknown_propagators(environ: MutableMapping[str, str] | None = None) -> None:
    """Take the propagators no installed package provides out of `OTEL_PROPAGATORS`.

    OpenTelemetry reads the variable as `opentelemetry.propagate` is imported, and fails the
    import on a name it cannot find: every instrumentor importing it failed, and the program's
    own `from opentelemetry import propagate`. One warning names what was left out. Run
    before OpenTelemetry's API is imported; only when the variable is set.
    """
    env = os.environ if environ is None else environ
    raw = env.get("OTEL_PROPAGATORS")
    if not raw or not raw.strip():
        return
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if any(name.lower() == "none" for name in names) and _none_understood():
        return  # no propagator at all, whatever else is named
    from traceroot import _distributions as distributions

    try:
        installed = {ep.name for ep in distributions.entry_points("opentelemetry_propagator")}
    except Exception:  # a broken distribution: leave the variable to OpenTelemetry
        return
    unknown = [name for name in names if name not in installed]
    if not unknown:
        return
    kept = [name for name in names if name in installed]
    if kept:
        env["OTEL_PROPAGATORS"] = ",".join(kept)
    else:
        del env["OTEL_PROPAGATORS"]
    hints = sorted({_PROPAGATOR_PACKAGES[n] for n in unknown if n in _PROPAGATOR_PACKAGES})
    if any(name.lower() == "none" for name in unknown):
        hints.append("'opentelemetry-api>=1.33' (for none)")
    _logger().warning(
        "traceroot: OTEL_PROPAGATORS names %s, which no installed package provides, and "
        "OpenTelemetry would fail on it: it is left out for this process and the ones it "
        "starts, which use %s. Fix OTEL_PROPAGATORS%s.",
        ", ".join(f"'{name}'" for name in unknown),
        ",".join(kept) if kept else "tracecontext,baggage (the default)",
        f" or pip install {' '.join(hints)}" if hints else "",
    )


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("traceroot")


TRACEPARENT = "TRACEPARENT"
TRACESTATE = "TRACESTATE"

# OpenTelemetry is imported on first need: until a span exists (or TRACEPARENT names a
# parent) there is no context to pass on, and the start-up hook stays cheap.
_CONTEXT_MODULE = "opentelemetry.context"
# Attribute of a multiprocessing.Process holding the carrier captured at start();
# it travels with the pickled process object to spawn/forkserver children.
_PROCESS_ATTR = "_traceroot_carrier"
_WRAPPED = "__traceroot_wrapped__"

_lock = _thread.allocate_lock()
_installed = False
_parent_attached = False
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        _logger().warning(message, *args)


_made: list[TraceContextTextMapPropagator] = []


def _propagator() -> TraceContextTextMapPropagator:
    if not _made:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _made.append(TraceContextTextMapPropagator())
    return _made[0]


def current_carrier() -> dict[str, str]:
    """``TRACEPARENT`` (and ``TRACESTATE``) of the current span; empty when none is current."""
    if _CONTEXT_MODULE not in sys.modules:
        return {}  # OpenTelemetry not loaded yet: no context can be current
    headers: dict[str, str] = {}
    _propagator().inject(headers)
    return {key.upper(): value for key, value in headers.items()}


def _extract(carrier: Mapping[str, str]) -> Context | None:
    from opentelemetry import trace
    from opentelemetry.context import Context

    headers = {key.lower(): value for key, value in carrier.items() if value}
    ctx = _propagator().extract(headers, context=Context())
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def attach_parent_from_environment() -> None:
    """Continue the trace named by ``TRACEPARENT`` / ``TRACESTATE`` in ``os.environ``.

    The parent span becomes the default context of the whole process, so root
    spans in every thread and every asyncio task join the parent's trace. Runs
    once per process (a forked child inherits the result); never raises.
    """
    global _parent_attached
    with _lock:
        if _parent_attached:
            return
        _parent_attached = True
    try:
        value = os.environ.get(TRACEPARENT, "").strip()
        if not value:
            return
        ctx = _extract({TRACEPARENT: value, TRACESTATE: os.environ.get(TRACESTATE, "")})
        if ctx is None:
            _logger().warning(
                "traceroot: TRACEPARENT=%r is not a W3C traceparent "
                "(00-<32 hex>-<16 hex>-<2 hex>); ignored, this process starts its own traces. "
                "Unset TRACEPARENT or fix its value.",
                value,
            )
            return
        _set_process_default(ctx)
    except Exception as exc:  # never break the host program
        _logger().warning(
            "traceroot: could not continue the parent's trace from TRACEPARENT: %r", exc
        )


def _set_process_default(ctx: Context) -> None:
    from opentelemetry import context as otel_context

    # Every thread must continue the parent's trace, not only this one: see compat.
    if not compat.set_process_default_context(ctx):
        otel_context.attach(ctx)


def _env_with_carrier(env: Any, carrier: Mapping[str, str]) -> Any:
    """A copy of the child's ``env`` (``None``: ours) carrying ``carrier``; never mutated."""
    from collections.abc import Mapping

    if env is None:
        env = os.environ
    elif not isinstance(env, Mapping):
        return env  # not something we understand; leave it to Popen to judge
    as_bytes = any(isinstance(key, bytes) for key in env)
    parent_key: str | bytes = TRACEPARENT.encode() if as_bytes else TRACEPARENT
    inherited = os.environ.get(TRACEPARENT)
    given = env.get(parent_key)
    if isinstance(given, bytes):
        given = given.decode(errors="surrogateescape")
    if given is not None and given != inherited:
        return env  # the caller chose a parent for this child explicitly
    merged = dict(env)
    for key in (TRACEPARENT, TRACESTATE):
        name: str | bytes = key.encode() if as_bytes else key
        merged.pop(name, None)
        if key in carrier:
            merged[name] = carrier[key].encode() if as_bytes else carrier[key]
    return merged


def _patch_popen() -> None:
    import functools
    import subprocess

    original = subprocess.Popen.__init__
    if getattr(original, _WRAPPED, False):
        return
    env_index = _positional_index(original, "env") - 1  # after ``self``

    @functools.wraps(original)
    def __init__(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        try:
            carrier = current_carrier()
            if carrier:
                if len(args) > env_index:
                    args = (
                        *args[:env_index],
                        _env_with_carrier(args[env_index], carrier),
                        *args[env_index + 1 :],
                    )
                else:
                    kwargs["env"] = _env_with_carrier(kwargs.get("env"), carrier)
        except Exception as exc:  # the child still starts, just without our context
            _warn_once(
                "popen",
                "traceroot: could not pass the trace context to a child (%s)",
                in_words(exc),
            )
        original(self, *args, **kwargs)

    setattr(__init__, _WRAPPED, True)
    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]


def _positional_index(function: Callable[..., Any], name: str) -> int:
    """Where parameter `name` stands among `function`'s positional parameters.

    Read from the code object where it can be: `inspect` would add its import to every
    program that imports subprocess.
    """
    inner = function
    while hasattr(inner, "__wrapped__"):
        inner = inner.__wrapped__
    code = getattr(inner, "__code__", None)
    if code is not None and name in code.co_varnames[: code.co_argcount]:
        return list(code.co_varnames[: code.co_argcount]).index(name)
    import inspect

    return list(inspect.signature(function).parameters).index(name)


def _patch_multiprocessing() -> None:
    import functools
    from multiprocessing import process as mp_process

    process_cls = mp_process.BaseProcess
    original_start = process_cls.start
    original_bootstrap = process_cls._bootstrap  # type: ignore[attr-defined]
    if getattr(original_start, _WRAPPED, False):
        return

    @functools.wraps(original_start)
    def start(self: mp_process.BaseProcess) -> None:
        try:
            carrier = current_carrier()
            if carrier:
                setattr(self, _PROCESS_ATTR, carrier)
        except Exception as exc:
            _warn_once(
                "mp-start", "traceroot: could not pass the trace context on (%s)", in_words(exc)
            )
        original_start(self)

    @functools.wraps(original_bootstrap)
    def _bootstrap(self: mp_process.BaseProcess, *args: Any, **kwargs: Any) -> Any:
        token = None
        try:
            carrier = self.__dict__.pop(_PROCESS_ATTR, None)
            # A forked child already runs in the context start() was called in.
            if carrier and carrier != current_carrier():
                from opentelemetry import context as otel_context

                ctx = _extract(carrier)
                if ctx is not None:
                    token = otel_context.attach(ctx)
        except Exception as exc:
            _warn_once(
                "mp-child", "traceroot: could not continue the parent's trace (%s)", in_words(exc)
            )
        try:
            return original_bootstrap(self, *args, **kwargs)
        finally:
            if token is not None:
                from opentelemetry import context as otel_context

                otel_context.detach(token)

    setattr(start, _WRAPPED, True)
    process_cls.start = start  # type: ignore[method-assign]
    process_cls._bootstrap = _bootstrap  # type: ignore[attr-defined]


def install() -> None:
    """Make this process continue ``TRACEPARENT`` and pass its current span to children.

    Idempotent; never raises. The parent's ``os.environ`` is never modified:
    children get the context through their own environment or process object.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    attach_parent_from_environment()
    # Patched when the program imports them (at once if it has): most programs never do.
    import_hooks.when_imported("subprocess", _guarded(_patch_popen))
    import_hooks.when_imported("multiprocessing.process", _guarded(_patch_multiprocessing))
    carry_context_into_pools()


def carry_context_into_pools() -> None:
    """Make each task submitted to a ``multiprocessing`` pool run in the submitter's context.

    Idempotent; never raises; patches ``multiprocessing.pool`` when it is imported.
    """
    import_hooks.when_imported("multiprocessing.pool", _guarded(_patch_pool))
    import_hooks.when_imported("concurrent.futures.process", _guarded(_patch_process_pool))


class _TaskInContext:
    """A pool task that runs in the context of the span that submitted it.

    Picklable whenever the task is: a process pool sends only the W3C carrier; a thread
    pool keeps the context itself.
    """

    __slots__ = ("func", "carrier", "context")

    def __init__(
        self, func: Callable[..., Any], carrier: dict[str, str], context: Context | None = None
    ) -> None:
        self.func = func
        self.carrier = carrier
        self.context = context

    def __reduce__(self) -> tuple[Any, ...]:
        return (_TaskInContext, (self.func, self.carrier))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry import context as otel_context

        token = None
        try:
            ctx = self.context if self.context is not None else _extract(self.carrier)
            if ctx is not None:
                token = otel_context.attach(ctx)
        except Exception as exc:  # the task still runs, just outside the caller's trace
            _warn_once(
                "pool-task", "traceroot: could not continue the caller's trace (%s)", in_words(exc)
            )
        try:
            return self.func(*args, **kwargs)
        finally:
            if token is not None:
                otel_context.detach(token)


def _in_current_context(pool: Any, func: Any) -> Any:
    if _CONTEXT_MODULE not in sys.modules:
        return func  # OpenTelemetry not loaded yet: no span to join
    from multiprocessing import pool as mp_pool

    from opentelemetry import context as otel_context
    from opentelemetry import trace

    ctx = otel_context.get_current()
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return func  # no span to join: the task is sent exactly as given
    if isinstance(pool, mp_pool.ThreadPool):
        return _TaskInContext(func, {}, ctx)
    return _TaskInContext(func, current_carrier())


def _patch_pool() -> None:
    from multiprocessing import pool as mp_pool

    # Every way of submitting work goes through one of these (map, starmap, apply...).
    for name in ("apply_async", "_map_async", "imap", "imap_unordered"):
        original = getattr(mp_pool.Pool, name, None)
        if original is None or getattr(original, _WRAPPED, False):
            continue
        setattr(mp_pool.Pool, name, _submitting(original))


def _patch_process_pool() -> None:
    from concurrent.futures import process

    # map() submits through submit(); the task (fn) travels pickled to a worker process.
    original = process.ProcessPoolExecutor.submit
    if not getattr(original, _WRAPPED, False):
        process.ProcessPoolExecutor.submit = _submitting(original)  # type: ignore[method-assign]


def _submitting(original: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(original)
    def submit(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if args:
                args = (_in_current_context(self, args[0]), *args[1:])
            elif "func" in kwargs and not _is_process_pool_executor(self):
                kwargs["func"] = _in_current_context(self, kwargs["func"])
        except Exception as exc:  # the task still runs, just outside the caller's trace
            _warn_once(
                "pool", "traceroot: could not pass the trace context to a pool (%s)", in_words(exc)
            )
        return original(self, *args, **kwargs)

    setattr(submit, _WRAPPED, True)
    return submit


def _is_process_pool_executor(pool: Any) -> bool:
    # Its submit(fn, /, *args, **kwargs): a keyword "func" is the task's own argument.
    process = sys.modules.get("concurrent.futures.process")
    return process is not None and isinstance(pool, process.ProcessPoolExecutor)


def _guarded(patch: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            patch()
        except Exception as exc:
            _logger().warning(
                "traceroot: child processes will not join this trace (%s failed: %s)",
                patch.__name__,
                in_words(exc),
            )

    return run
