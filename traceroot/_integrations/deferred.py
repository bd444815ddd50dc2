"""A tracer provider not made yet, for integrations armed before tracing starts."""

from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:  # not loaded at start-up: the hook imports this module
    from collections.abc import Callable

    from opentelemetry.trace import TracerProvider


class DeferredProvider:
    """A provider not made yet: ``get()`` makes it, starting tracing, on first need.

    The start-up hook activates integrations with one, so the OpenTelemetry SDK loads only
    when an instrumented library is imported. Whoever makes the provider calls
    `provider_ready` with it as soon as it exists; that runs the `when_made` callbacks.
    """

    def __init__(self, make: Callable[[], TracerProvider | None]) -> None:
        self._make = make
        self._lock = _thread.allocate_lock()
        self._provider: TracerProvider | None = None
        self._waiting: list[Callable[[TracerProvider], None]] = []

    def get(self) -> TracerProvider | None:
        """The provider, made now if need be.

        None when tracing is off, or when another thread is making it: that thread may be
        waiting for an import this one is inside, so this one must not wait for it. Use
        `when_made` then.
        """
        return self._provider or self._make()

    def when_made(self, callback: Callable[[TracerProvider], None]) -> None:
        """Run ``callback(provider)`` once the provider is made: now, if it is."""
        with self._lock:
            provider = self._provider
            if provider is None:
                self._waiting.append(callback)
                return
        callback(provider)

    def made(self, provider: TracerProvider) -> None:
        """The provider exists: run what waited for it."""
        with self._lock:
            if self._provider is not None:
                return
            self._provider = provider
            waiting, self._waiting = self._waiting, []
        for callback in waiting:
            callback(provider)


def resolve(provider: TracerProvider | DeferredProvider | None) -> TracerProvider | None:
    """The provider itself, made now if it is deferred (None while another thread makes it)."""
    return provider.get() if isinstance(provider, DeferredProvider) else provider
