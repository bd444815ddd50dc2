"""An integration armed to instrument at its library's first call, not at its import.

Under ``traceroot-run``, a process that imports openai and never calls it (a CLI, a test
run, a worker that only sometimes asks a model) would otherwise load the OpenTelemetry
SDK, our pipeline and the instrumentor at the import: a tenth of a second on a slow
machine, for nothing. Armed, the methods the instrumentor wraps are replaced by stand-ins
that pass calls through to the method; the first call through one instruments the
library (the SDK starting with it), and that call itself goes through the instrumentor's
wrapper, so it is traced.

The stand-ins stay in place after that, passing calls through: the instrumentor wraps
them, and taking them out again while another thread may be calling would race.
"""

from __future__ import annotations

import _thread
import functools
import sys

from traceroot import _compat as compat
from traceroot import _lifecycle as lifecycle
from traceroot._settings import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


class Armed:
    """The stand-ins of one integration, and whether its first call has come."""

    def __init__(self, on_first_call: Callable[[], None]) -> None:
        self._on_first_call = on_first_call
        self._lock = compat.rlock()
        self._firing: int | None = None  # the thread instrumenting
        self.fired = False
        # Forked while another thread instrumented: that thread and its hold on the lock
        # do not exist in the child.
        lifecycle.after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        if self._firing not in (None, _thread.get_ident()):
            self._lock = compat.rlock()
            self._firing = None

    def disarm(self) -> None:
        """From now on the stand-ins only pass calls through (instrumented some other way)."""
        with self._lock:
            self.fired = True

    def fire(self) -> None:
        """The first call: instrument, once; other threads' first calls wait for it."""
        if self.fired:
            return
        with self._lock:
            if self.fired or self._firing == _thread.get_ident():
                return  # done, or a call made by the instrumenting itself
            self._firing = _thread.get_ident()
            try:
                self._on_first_call()
            except Exception:  # the instrumenting reports its own failures
                logger.debug("traceroot: instrumenting at the first call failed", exc_info=True)
            finally:
                self.fired = True
                self._firing = None


def arm(targets: Sequence[str], on_first_call: Callable[[], None]) -> Armed | None:
    """Put stand-ins on ``targets`` (``module:Class.method``, the module imported already).

    None, with nothing changed, when one cannot be found: the library is laid out otherwise
    than these targets say, and is then instrumented at once, as without arming.
    """
    try:
        found = [_find(target) for target in targets]
    except (AttributeError, KeyError, ValueError):
        logger.debug("traceroot: %s not found; instrumenting now", ", ".join(targets))
        return None
    armed = Armed(on_first_call)
    for owner, name, original in found:
        setattr(owner, name, _stand_in(armed, owner, name, original))
    return armed


def _find(target: str) -> tuple[type, str, Any]:
    module_name, _, path = target.partition(":")
    owner_path, _, name = path.rpartition(".")
    owner: Any = sys.modules[module_name]
    for part in owner_path.split("."):
        owner = getattr(owner, part)
    if not isinstance(owner, type):
        raise ValueError(target)
    # The attribute as the class holds it (it may be inherited): a descriptor, unbound.
    for klass in owner.__mro__:
        if name in vars(klass):
            return owner, name, vars(klass)[name]
    raise AttributeError(target)


def _stand_in(armed: Armed, owner: type, name: str, original: Any) -> Any:
    """A method that, at the first call, instruments and calls through the instrumentor's
    wrapper (by then on ``owner``); afterwards, and inside that wrapper, calls ``original``."""
    import inspect

    def first(self: Any) -> Any:
        if armed.fired:
            return original.__get__(self, type(self))
        armed.fire()
        # The instrumentor wrapped this stand-in: call its wrapper, which calls us again
        # (fired by then), so the call is traced. Not instrumented: it is still us.
        current = vars(owner).get(name)
        if current is None or current is stand_in:
            return original.__get__(self, type(self))
        return current.__get__(self, type(self))

    async def async_stand_in(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await first(self)(*args, **kwargs)

    def sync_stand_in(self: Any, *args: Any, **kwargs: Any) -> Any:
        return first(self)(*args, **kwargs)

    stand_in = async_stand_in if inspect.iscoroutinefunction(original) else sync_stand_in
    return functools.wraps(original)(stand_in)
