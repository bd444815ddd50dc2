"""Every use of an OpenTelemetry or CPython private name, each with a fallback.

Nothing else in traceroot reaches into another library's private names: when
one of these moves in a new release, this module is the one place to mend, and
until then the fallback keeps the program (and tracing) running.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # imported where used: the start-up hook loads this module before them
    from collections.abc import Callable
    from types import FrameType, ModuleType
    from typing import Any

    from opentelemetry.context import Context
    from opentelemetry.trace import SpanContext
    from opentelemetry.util import types


def caller_frame(depth: int) -> FrameType | None:
    """The frame `depth` levels above the caller (CPython's `sys._getframe`)."""
    getframe = getattr(sys, "_getframe", None)
    if getframe is None:  # another Python: walk from the current frame
        import inspect

        frame = inspect.currentframe()
        for _ in range(depth + 1):
            frame = frame.f_back if frame is not None else None
        return frame
    try:
        return getframe(depth + 1)  # type: ignore[no-any-return]
    except ValueError:  # the stack is not that deep
        return None


def module_initializing(module: ModuleType) -> bool:
    """Whether `module` is still executing its body (importlib's `ModuleSpec._initializing`).

    Without the flag a module in `sys.modules` counts as imported, the previous rule.
    """
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def plain_json_encoder() -> Callable[[Any], str]:
    """`json.dumps` with its defaults for values known to hold no cycle, built once.

    `json.dumps` builds a C encoder per call; `json.encoder.c_make_encoder` (private)
    gives one to reuse. Without it, `json.dumps` itself.
    """
    import json
    import json.encoder

    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.dumps
    try:
        # markers (no cycle check: the caller rules cycles out), default, string encoder, indent,
        # separators, sort_keys, skipkeys, allow_nan: what json.dumps passes by default.
        encoder = make(
            None,
            json.JSONEncoder().default,
            json.encoder.encode_basestring_ascii,
            None,
            ": ",
            ", ",
            False,
            False,
            True,
        )
        encoded = "".join(encoder({"probe": [1, "x"]}, 0))
    except Exception:  # its signature changed
        return json.dumps
    if encoded != json.dumps({"probe": [1, "x"]}):
        return json.dumps
    return lambda value: "".join(encoder(value, 0))


def set_process_default_context(ctx: Context) -> bool:
    """Make `ctx` the current context of every thread, present and future.

    `context.attach()` reaches only the calling thread (and the tasks it starts):
    threads begin with an empty context. Replacing the runtime context's variable
    (OpenTelemetry's private `_RUNTIME_CONTEXT._current_context`) by one whose
    default is `ctx` reaches them all. Only safe while nothing is attached yet (tokens
    of the old variable would not reset on the new one), on the main thread. False
    when it cannot be done; the caller then attaches to this thread instead.
    """
    import threading
    from contextvars import ContextVar

    from opentelemetry import context as otel_context

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if (
        not isinstance(var, ContextVar)
        or threading.current_thread() is not threading.main_thread()
        or otel_context.get_current()
    ):
        return False
    try:
        runtime._current_context = ContextVar(var.name, default=ctx)  # type: ignore[union-attr]
    except Exception:
        return False
    return True


def is_valid_link(context: SpanContext | None, attributes: types.Attributes) -> bool:
    """Whether the SDK would keep a link to `context` (its private `_is_valid_link`)."""
    if context is None:
        return False
    try:
        from opentelemetry.sdk.trace import _is_valid_link  # type: ignore[attr-defined]
    except ImportError:  # older SDKs: a link needs a valid context
        return bool(context.is_valid)
    return bool(_is_valid_link(context, attributes))


def add_valid_attributes(span: Any, attributes: dict[str, Any]) -> None:
    """Add to a just-started SDK span attributes that are valid already (strings, tuples
    of strings) without the SDK's per-value check (its `BoundedAttributes._dict`).

    The check copies and inspects every tuple element, and most of a stamped span's
    start is spent there. The store is written directly only when nothing it does
    would change the outcome: it is mutable, bounds no value's length, and has room for
    all of them; otherwise, and on any other SDK layout, `set_attributes` runs.
    """
    store = getattr(span, "_attributes", None)
    inner = getattr(store, "_dict", None)
    lock = getattr(store, "_lock", None)
    if (
        type(inner) is dict
        and lock is not None
        and getattr(store, "_immutable", True) is False
        and getattr(store, "max_value_len", 0) is None
        and getattr(span, "end_time", 0) is None
    ):
        maxlen = getattr(store, "maxlen", 0)
        with lock:
            if maxlen is None or len(inner) + len(attributes) <= maxlen:
                for key in attributes.keys() & inner.keys():
                    del inner[key]  # a set key moves to the end, as the SDK's own setter does
                inner.update(attributes)
                return
    span.set_attributes(attributes)


def start_span_as(tracer: Any, proxy: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Run `tracer`'s own `method` with `proxy` as self (the SDK `Tracer`'s internals).

    OpenInference's tracer wraps the one it is given and calls its `start_span` on
    itself, to use its own id generator; a proxy that forwards attributes keeps that
    working. When the method cannot run on the proxy, the tracer's own is used.
    """
    try:
        return getattr(type(tracer), method)(proxy, *args, **kwargs)
    except AttributeError:
        return getattr(tracer, method)(*args, **kwargs)


def simple_queue_get(queue: Any, slice_seconds: float) -> Any:
    """`queue.get()` of a `multiprocessing` SimpleQueue, waiting in slices of `slice_seconds`.

    A signal caught just before a single blocking wait begins leaves its Python handler
    pending until that wait ends, which may be never (a pool worker waiting for a task it
    will not get). Between slices the interpreter runs Python code, so the handler runs.
    Uses the queue's private `_rlock` and `_reader`; without them, a plain `get()`.
    """
    rlock = getattr(queue, "_rlock", None)
    reader: Any = getattr(queue, "_reader", None)
    if rlock is None or not hasattr(reader, "poll") or not hasattr(reader, "recv_bytes"):
        return queue.get()
    from multiprocessing.reduction import ForkingPickler

    while not rlock.acquire(timeout=slice_seconds):
        pass
    try:
        while not reader.poll(slice_seconds):
            pass
        data = reader.recv_bytes()
    finally:
        rlock.release()
    return ForkingPickler.loads(data)  # after releasing the lock, as SimpleQueue.get does


def signal_module() -> Any:
    """The functions and constants of `signal`, without importing it when it is not loaded.

    The `signal` module builds its enums at import (it loads `enum`), which the start-up
    hook should not pay for; CPython's `_signal` holds the same functions and constants
    (plain integers instead of enum members). Where there is no `_signal`, `signal` itself.
    """
    loaded = sys.modules.get("signal")
    if loaded is not None:
        return loaded
    try:
        import _signal
    except ImportError:
        import signal

        return signal
    return _signal


def died_of_keyboard_interrupt() -> bool:
    """Whether the program is ending because an unhandled KeyboardInterrupt escaped it.

    The interpreter prints such an exception (setting `sys.last_type`) before it runs the
    atexit hooks; a program that handled it exits as it chose."""
    return getattr(sys, "last_type", None) is KeyboardInterrupt


def keep_interrupted_exit_status() -> None:
    """Have the process still end by SIGINT (status 130) after an unhandled Ctrl-C.

    CPython remembers the unhandled KeyboardInterrupt in a private flag that every
    evaluation of source text clears on the way in (`exec`/`eval` of a string, which
    `namedtuple` and `dataclass` do): an exit flush that imports a module can so turn the
    status into 1. Such an evaluation that raises KeyboardInterrupt sets the flag again.
    Where that does not hold, the status is what it was.
    """
    try:
        exec("raise KeyboardInterrupt")  # a constant, run for its side effect on the flag
    except KeyboardInterrupt:
        pass


def grpcio_root_certificates() -> str | None:
    """The file of root certificates grpcio comes with and trusts by default (its private
    `grpc/_cython/_credentials/roots.pem`); None where it is not found."""
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec("grpc._cython")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "_credentials", "roots.pem")
        if os.path.isfile(path):
            return path
    return None


def rlock() -> Any:
    """A reentrant lock without importing `threading` (the C lock `threading.RLock` makes)."""
    import _thread

    make = getattr(_thread, "RLock", None)
    if make is None:  # not CPython: threading's own
        import threading

        return threading.RLock()
    return make()


def span_processor_of(provider: Any) -> Any:
    """The one processor an SDK `TracerProvider` hands every span to: all its processors,
    those added later too (the SDK's private `_active_span_processor`). None when absent."""
    from opentelemetry.sdk.trace import SpanProcessor

    processor = getattr(provider, "_active_span_processor", None)
    return processor if isinstance(processor, SpanProcessor) else None


# The hook `opentelemetry.trace.set_tracer_provider` asks first (see intercept_set_provider).
_provider_hook: Callable[[Any], bool] | None = None


def intercept_set_provider(hook: Callable[[Any], bool] | None) -> None:
    """Have `hook(provider)` see every later `opentelemetry.trace.set_tracer_provider` call
    first; when it returns True the call is done, and OpenTelemetry's own (which refuses a
    second provider with a warning and no effect) does not run. None removes the hook.

    It replaces the public function on its module: a program that bound the name before
    (`from opentelemetry.trace import set_tracer_provider`, before tracing started) calls
    OpenTelemetry's own, as without the hook."""
    global _provider_hook
    _provider_hook = hook
    import opentelemetry.trace as api

    if getattr(api.set_tracer_provider, "_traceroot_hook", False):
        return
    original = api.set_tracer_provider

    def set_tracer_provider(tracer_provider: Any) -> None:
        hook = _provider_hook
        if hook is not None and hook(tracer_provider):
            return
        original(tracer_provider)

    set_tracer_provider._traceroot_hook = True  # type: ignore[attr-defined]
    set_tracer_provider.__doc__ = original.__doc__
    api.set_tracer_provider = set_tracer_provider
