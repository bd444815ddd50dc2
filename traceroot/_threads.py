"""Trace context across threads: work handed to another thread runs in its submitter's context.

A new thread starts with an empty context, so a span made there would begin a new
one-span trace instead of nesting under the span that handed the work over. Patched:

- ``threading.Thread.start`` (``Timer`` and every subclass too): the thread's ``run``
  runs in the context ``start()`` was called in, even when a subclass overrides ``run``.
- ``concurrent.futures.ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``,
  which submits to one): each task runs in the context it was submitted in, not in
  whatever context its long-lived worker thread was started in.

``asyncio`` tasks and ``asyncio.to_thread`` copy the context themselves and need nothing.
Our own wrapper rather than OpenTelemetry's threading instrumentation: that one pins
an exact ``opentelemetry-instrumentation`` release, imports ``concurrent.futures`` up
front, and misses threads whose class overrides ``run``. The executor is patched only
when a program imports it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context

from traceroot import _import_hooks as import_hooks

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["install"]

logger = logging.getLogger("traceroot")

R = TypeVar("R")

_WRAPPED = "__traceroot_wrapped__"
_lock = threading.Lock()
_installed = False


def _in_context(ctx: otel_context.Context, fn: Callable[..., R]) -> Callable[..., R]:
    """``fn``, run with ``ctx`` attached (and detached after, whatever happens)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> R:
        token = otel_context.attach(ctx)
        try:
            return fn(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return run


def _patch_thread() -> None:
    original = threading.Thread.start
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def start(self: threading.Thread) -> None:
        try:
            ctx = otel_context.get_current()
            if ctx:  # an empty context is what the thread would start with anyway
                # On the instance: the bootstrap calls self.run, whatever class defines it.
                self.run = _in_context(ctx, self.run)  # type: ignore[method-assign]
        except Exception as exc:  # the thread still starts, only in its own context
            logger.debug("traceroot: could not hand the trace context to a thread: %r", exc)
        original(self)

    setattr(start, _WRAPPED, True)
    threading.Thread.start = start  # type: ignore[method-assign]


def _patch_executor() -> None:
    from concurrent.futures import thread

    executor = thread.ThreadPoolExecutor
    original: Callable[..., Any] = executor.submit
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def submit(
        self: thread.ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        # Always wrapped, even in an empty context: a worker thread outlives the task that
        # started it, and a task must not run in that earlier task's context.
        try:
            fn = _in_context(otel_context.get_current(), fn)
        except Exception as exc:
            logger.debug("traceroot: could not hand the trace context to a task: %r", exc)
        return original(self, fn, *args, **kwargs)

    setattr(submit, _WRAPPED, True)
    executor.submit = submit  # type: ignore[method-assign,assignment]


def install() -> None:
    """Make threads and thread-pool tasks run in the context that started them.

    Idempotent; never raises. ``concurrent.futures`` is patched when first imported.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    try:
        _patch_thread()
    except Exception as exc:
        logger.warning(
            "traceroot: spans made in new threads may start their own traces "
            "(patching threading failed: %s)",
            type(exc).__name__,
        )
    import_hooks.when_imported("concurrent.futures.thread", _guarded_executor)


def _guarded_executor() -> None:
    try:
        _patch_executor()
    except Exception as exc:
        logger.warning(
            "traceroot: spans made in thread pools may start their own traces "
            "(patching concurrent.futures failed: %s)",
            type(exc).__name__,
        )
