"""Arming an integration for its library's first call: the stand-ins put on the methods an
instrumentor wraps, with a real wrapt wrapper as instrumentors put on them."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
import wrapt

from traceroot._integrations import first_call


class Base:
    def request(self, value: int) -> tuple[str, int]:
        return ("base", value)


class AsyncClient:
    async def request(self, value: int) -> tuple[str, int]:
        return ("async", value)


@pytest.fixture
def library() -> Iterator[types.ModuleType]:
    """A module holding fresh subclasses, as if just imported: `Client.request` is inherited,
    as openai's clients inherit it from their base client."""
    module = types.ModuleType("tr_fake_library")
    module.Client = type("Client", (Base,), {})  # type: ignore[attr-defined]
    module.AsyncClient = type("AsyncClient", (AsyncClient,), {})  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


TARGETS = ("tr_fake_library:Client.request", "tr_fake_library:AsyncClient.request")


def _instrumenting(module: types.ModuleType, seen: list[Any]) -> Any:
    """What an instrumentor does: wrap both methods, recording each call it sees."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        seen.append(args)
        return wrapped(*args, **kwargs)

    def instrument() -> None:
        wrapt.wrap_function_wrapper(module, "Client.request", wrapper)
        wrapt.wrap_function_wrapper(module, "AsyncClient.request", wrapper)

    return instrument


def test_the_first_call_instruments_and_is_itself_seen_by_the_wrapper(
    library: types.ModuleType,
) -> None:
    seen: list[Any] = []
    calls: list[int] = []
    instrument = _instrumenting(library, seen)

    def on_first_call() -> None:
        calls.append(1)
        instrument()

    armed = first_call.arm(TARGETS, on_first_call)
    assert armed is not None
    client = library.Client()
    assert client.request(1) == ("base", 1)
    assert client.request(2) == ("base", 2)
    assert asyncio.run(library.AsyncClient().request(3)) == ("async", 3)
    assert calls == [1]  # instrumented once, for both methods
    assert seen == [(1,), (2,), (3,)]
    # The class the stand-in was put on only: its base is untouched.
    assert vars(Base)["request"](Base(), 4) == ("base", 4)
    assert library.Client.request.__name__ == "request"


def test_first_calls_from_many_threads_wait_for_one_instrumenting(
    library: types.ModuleType,
) -> None:
    seen: list[Any] = []
    instrument = _instrumenting(library, seen)
    started = threading.Event()
    calls: list[int] = []

    def slow_instrument() -> None:
        calls.append(1)
        started.set()
        threading.Event().wait(0.2)  # others arrive while this one instruments
        instrument()

    first_call.arm(TARGETS, slow_instrument)
    client = library.Client()
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(client.request(i))) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert sorted(results) == [("base", i) for i in range(4)]
    assert sorted(seen) == [(i,) for i in range(4)]  # every one traced, none twice


def test_a_failed_instrumenting_leaves_the_calls_working(library: types.ModuleType) -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no instrumentor here")

    first_call.arm(TARGETS, broken)
    client = library.Client()
    assert client.request(1) == ("base", 1)
    assert client.request(2) == ("base", 2)
    assert asyncio.run(library.AsyncClient().request(3)) == ("async", 3)
    assert calls == [1]


def test_a_disarmed_stand_in_only_passes_calls_through(library: types.ModuleType) -> None:
    calls: list[int] = []
    armed = first_call.arm(TARGETS, lambda: calls.append(1))
    assert armed is not None
    armed.disarm()
    assert library.Client().request(5) == ("base", 5)
    assert calls == []


def test_a_library_laid_out_otherwise_is_not_armed(library: types.ModuleType) -> None:
    before = dict(vars(library.Client))
    missing_class = ("tr_fake_library:Client.request", "tr_fake_library:Gone.request")
    assert first_call.arm(missing_class, lambda: None) is None
    assert first_call.arm(("tr_fake_library:Client.missing",), lambda: None) is None
    assert dict(vars(library.Client)) == before  # nothing was changed
