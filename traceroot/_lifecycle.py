"""Getting spans out before a process ends: normal exit, multiprocessing children, SIGTERM."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("traceroot")

Handler = Callable[[int, FrameType | None], Any] | int | None


def on_exit(shutdown: Callable[[], None]) -> None:
    """Run `shutdown` at interpreter exit and when a multiprocessing child finishes.

    multiprocessing ends its forked children with `os._exit`, which skips atexit,
    but it runs its own finalizers first: we register one in each such child.
    """
    atexit.register(shutdown)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=lambda: _register_mp_finalizer(shutdown))


_fork_callbacks: list[weakref.WeakMethod[Callable[[], None]]] = []
_fork_hooked = False


def after_fork_in_child(callback: Callable[[], None]) -> None:
    """Run the bound method `callback` in each forked child, for as long as its object lives.

    One process-wide hook serves every caller and holds their objects weakly, so a
    re-initialized client does not leave its old pipelines registered and alive.
    """
    global _fork_hooked
    _fork_callbacks[:] = [ref for ref in _fork_callbacks if ref() is not None]
    _fork_callbacks.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]
    if not _fork_hooked and hasattr(os, "register_at_fork"):
        _fork_hooked = True
        os.register_at_fork(after_in_child=_run_fork_callbacks)


def _run_fork_callbacks() -> None:
    for ref in list(_fork_callbacks):
        callback = ref()
        if callback is None:
            continue
        try:
            callback()
        except Exception as exc:  # the child must start, whatever happens to our state
            logger.warning(
                "traceroot: resetting tracing after fork failed (%s)", type(exc).__name__
            )


def live_fork_callbacks() -> int:
    """How many objects the fork hook still serves."""
    return sum(1 for ref in _fork_callbacks if ref() is not None)


class _Anchor:
    """A weak-referenceable owner for the multiprocessing finalizer."""


_anchor = _Anchor()


def _register_mp_finalizer(shutdown: Callable[[], None]) -> None:
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    # Registered to run after multiprocessing clears its finalizers in the new child.
    mp_util.register_after_fork(
        _anchor, lambda anchor: mp_util.Finalize(anchor, shutdown, exitpriority=100)
    )


class SigtermFlush:
    """Flush on SIGTERM before the program's own handling (or the default exit by signal).

    A handler the program installs later is wrapped, not replaced, so both run.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._user_handler: Handler = signal.SIG_DFL
        self._original_signal = signal.signal
        self._original_getsignal = signal.getsignal

    def install(self) -> None:
        """Only on the main thread, and only when the handler is still the default."""
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if current not in (signal.SIG_DFL, None):
            self._user_handler = current
        self._original_signal(signal.SIGTERM, self._handle)
        signal.signal = self._signal  # type: ignore[assignment]
        signal.getsignal = self._getsignal  # type: ignore[assignment]

    def _signal(self, signum: int, handler: Handler) -> Handler:
        if signum != signal.SIGTERM:
            return self._original_signal(signum, handler)  # type: ignore[arg-type]
        previous = self._user_handler
        self._user_handler = handler
        if handler == signal.SIG_IGN:
            self._original_signal(signum, handler)
        else:
            self._original_signal(signum, self._handle)
        return previous

    def _getsignal(self, signum: int) -> Handler:
        if signum == signal.SIGTERM:
            return self._user_handler
        return self._original_getsignal(signum)

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        try:
            self._flush()
        except Exception as exc:  # the program's shutdown matters more than our spans
            logger.debug("traceroot: flush on SIGTERM failed: %r", exc)
        handler = self._user_handler
        if callable(handler):
            return handler(signum, frame)
        if handler == signal.SIG_IGN:
            return None
        # Default disposition: exit by the signal, as the program would have.
        self._original_signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return None
