"""Callbacks on import: later, at once, withdrawn, and never breaking the import."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from traceroot import _import_hooks as import_hooks


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("hooked_")]:
        del sys.modules[name]


def _module(directory: Path, name: str) -> None:
    (directory / f"{name}.py").write_text("VALUE = 42\n")


def test_called_once_the_module_has_executed(module_dir: Path) -> None:
    _module(module_dir, "hooked_later")
    seen: list[int] = []
    # The module has finished executing when the callback runs: its names are there.
    import_hooks.when_imported(
        "hooked_later", lambda: seen.append(sys.modules["hooked_later"].VALUE)
    )
    assert seen == []
    importlib.import_module("hooked_later")
    assert seen == [42]
    importlib.reload(sys.modules["hooked_later"])
    assert seen == [42]  # once


def test_called_at_once_when_already_imported(module_dir: Path) -> None:
    _module(module_dir, "hooked_now")
    importlib.import_module("hooked_now")
    seen: list[str] = []
    import_hooks.when_imported("hooked_now", lambda: seen.append("called"))
    assert seen == ["called"]


def test_a_withdrawn_callback_is_not_called(module_dir: Path) -> None:
    _module(module_dir, "hooked_withdrawn")
    seen: list[str] = []

    def callback() -> None:
        seen.append("called")

    import_hooks.when_imported("hooked_withdrawn", callback)
    import_hooks.forget("hooked_withdrawn", callback)
    importlib.import_module("hooked_withdrawn")
    assert seen == []
    assert not [f for f in sys.meta_path if type(f).__module__ == "traceroot._import_hooks"]


def test_a_failing_callback_warns_and_the_import_succeeds(
    module_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _module(module_dir, "hooked_failing")

    def callback() -> None:
        raise RuntimeError("boom")

    import_hooks.when_imported("hooked_failing", callback)
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        module = importlib.import_module("hooked_failing")
    assert module.VALUE == 42
    assert any("import hook for hooked_failing failed" in r.getMessage() for r in caplog.records)
