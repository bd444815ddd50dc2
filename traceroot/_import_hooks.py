"""Calling back when a module has been imported: now, or the moment it finishes executing.

Integrations instrument a library this way, and propagation patches `subprocess` and
`multiprocessing` this way, so a program pays only for the modules it imports.

The start-up hook of every traced process loads this module: it imports nothing beyond
what Python itself has loaded by then (no `threading`, `logging` or `typing`).
"""

from __future__ import annotations

import _thread
import sys

from traceroot import _compat as compat
from traceroot._errors import in_words

TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.abc
    import importlib.machinery
    import logging
    from collections.abc import Callable, Sequence
    from types import ModuleType
    from typing import Any


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("traceroot")


def when_imported(module: str, callback: Callable[[], None]) -> None:
    """Call `callback` once `module` is imported: now if it already is."""
    _finder.watch(module, callback)


def forget(module: str, callback: Callable[[], None]) -> None:
    """Withdraw a callback that `when_imported` has not called yet."""
    _finder.unwatch(module, callback)


# Plain classes, not importlib.abc's: that module pulls in importlib.resources and more,
# which every traced process would pay for at start-up; the import system needs only the
# methods.
class _NotifyingLoader:
    """Runs the real loader, then the watcher's callbacks for the module."""

    def __init__(self, loader: importlib.abc.Loader, finder: _PostImportFinder) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first: the module (and importlib.resources) sees
        # exactly what it would have seen without us.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._finder.fire(module.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder:
    """A meta path finder that calls back once a watched module has finished executing."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self._lock = _thread.allocate_lock()
        # Modules whose body has run and whose callbacks have been taken (they may still
        # count as initializing for a moment): a callback added now runs at once.
        self._fired: set[str] = set()
        # Per thread (by ident): the callbacks a running hook's imports queued.
        self._queues: dict[int, list[tuple[str, Callable[[], None]]]] = {}

    def watch(self, module: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` when ``module`` is imported: now if it already is."""
        with self._lock:
            now = imported(module)
            if not now:
                self._callbacks.setdefault(module, []).append(callback)
                if self not in sys.meta_path:
                    sys.meta_path.insert(0, self)
        if now:
            callback()

    def fired(self) -> set[str]:
        """The watched modules whose body has run (the callbacks taken)."""
        return self._fired

    def unwatch(self, module: str, callback: Callable[[], None]) -> None:
        with self._lock:
            callbacks = self._callbacks.get(module, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._callbacks.pop(module, None)
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)

    def fire(self, module: str) -> None:
        thread = _thread.get_ident()
        with self._lock:
            callbacks = self._callbacks.pop(module, [])
            self._fired.add(module)
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)
            queue = self._queues.get(thread)
            if queue is not None:
                # A hook is running on this thread and its instrumentor is importing a
                # watched module; instrumenting that now could see the instrumentor
                # half-imported.
                queue.extend((module, callback) for callback in callbacks)
                return
            queue = self._queues[thread] = [(module, callback) for callback in callbacks]
        try:
            while queue:
                name, callback = queue.pop(0)
                try:
                    callback()
                except Exception as exc:  # an import must never fail because of tracing
                    _logger().warning(
                        "traceroot: import hook for %s failed (%s); the import goes on",
                        name,
                        in_words(exc),
                    )
                    _logger().debug("traceroot: import hook failure", exc_info=exc)
        finally:
            with self._lock:
                self._queues.pop(thread, None)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        self._fired.discard(fullname)  # imported (again): its body has not run yet
        if fullname not in self._callbacks:
            return None
        try:
            later = sys.meta_path[sys.meta_path.index(self) + 1 :]
        except ValueError:
            return None
        # Ask the finders after us directly, so the spec is the one Python would have used.
        for finder in later:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _NotifyingLoader(spec.loader, self)
        return spec


def imported(module: str) -> bool:
    """Whether `module` has been imported and has finished executing.

    A module whose body has run counts from the moment its callbacks are taken, though
    importlib still marks it initializing until the callbacks are over.
    """
    found = sys.modules.get(module)
    if found is None:
        return False
    return not compat.module_initializing(found) or module in _finder.fired()


_finder = _PostImportFinder()
