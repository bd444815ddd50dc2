"""The launcher's core cases under every supported Python (3.10 to 3.13).

Each interpreter must have traceroot installed (its own venv). List them in
``TRACEROOT_TEST_PYTHONS``, separated by ``os.pathsep``, e.g.
``TRACEROOT_TEST_PYTHONS=.venvs/3.10/bin/python:.venvs/3.12/bin/python``; the
interpreter running pytest counts too. A version with no interpreter is
skipped, except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from test_launcher import APPS, assert_plain_spans, assert_subprocess_trace, launch, program_env

VERSIONS = ("3.10", "3.11", "3.12", "3.13")


@functools.cache
def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except OSError:
        return None
    return out or None


def _python_for(version: str) -> str:
    listed = [p for p in os.environ.get("TRACEROOT_TEST_PYTHONS", "").split(os.pathsep) if p]
    for python in [*listed, sys.executable]:
        if _version_of(python) == version:
            return python
    message = (
        f"no Python {version} with traceroot installed: add its venv's python to "
        "TRACEROOT_TEST_PYTHONS"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(params=VERSIONS)
def python(request: pytest.FixtureRequest) -> str:
    return _python_for(request.param)


def test_plain_script(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path, python: str
) -> None:
    env = program_env(traceroot_env, python=python)
    result = launch(["python", str(APPS / "plain.py"), "5"], env, tmp_path, python=python)
    assert (result.returncode, result.stdout, result.stderr) == (5, "HELLO!\n", "to stderr\n")
    assert_plain_spans(receiver)
    shown = launch(["python", "-c", "import sys; print(sys.version)"], env, tmp_path, python=python)
    assert shown.stdout.startswith(f"{_version_of(python)}.")  # the interpreter under test


def test_subprocess_children(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path, python: str
) -> None:
    env = program_env(traceroot_env, python=python)
    result = launch(["python", str(APPS / "subproc.py")], env, tmp_path, python=python)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert_subprocess_trace(receiver.spans)
