"""Shared pytest fixtures.

- ``receiver``: a started loopback OTLP receiver (see ``otlp_receiver.py``).
- ``traceroot_env``: env overrides pointing the SDK at ``receiver``.
- ``run_python``: run ``sys.executable`` in a clean subprocess.
- ``providers``: loopback fakes of the LLM providers' APIs (see ``fake_providers.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import pytest
from fake_providers import FakeProviders
from otlp_receiver import OTLPReceiver

# Prefixes of variables stripped from the environment of child processes.
SCRUBBED_ENV_PREFIXES = ("TRACEROOT_", "OTEL_")
# The machine's route settings: a test that wants a proxy or CA sets its own.
SCRUBBED_ENV_NAMES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
SCRUBBED_ENV_NAMES |= {n.upper() for n in SCRUBBED_ENV_NAMES} | {"SSL_CERT_FILE", "SSL_CERT_DIR"}

# Programs run in local mode write to the local trace store in the per-user data directory:
# for the test run, that is a throwaway one (children inherit it; it is not scrubbed).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="traceroot-tests-data-")


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without TRACEROOT_* / OTEL_*, proxy and CA variables, plus ``overrides``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SCRUBBED_ENV_PREFIXES) and k not in SCRUBBED_ENV_NAMES
    }
    env.update(overrides or {})
    return env


# -- OTLP receiver ----------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A loopback OTLP/HTTP receiver, started for this test and stopped after."""
    with OTLPReceiver() as rx:
        yield rx


@pytest.fixture
def providers() -> Iterator[FakeProviders]:
    """Loopback fakes of the provider APIs (OpenAI, Anthropic, ...), started for this test."""
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def traceroot_env(receiver: OTLPReceiver) -> dict[str, str]:
    """Env overrides that send traces to ``receiver`` with a fast flush."""
    return {
        "TRACEROOT_API_KEY": "test-key",
        "TRACEROOT_HOST_URL": receiver.url,
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
    }


# -- subprocesses -----------------------------------------------------------


class RunPython(Protocol):
    def __call__(
        self,
        script: str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        filename: str = "script.py",
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def run_python(tmp_path: Path) -> RunPython:
    """Run ``sys.executable`` in a subprocess with a clean environment.

    ``script`` (source text) is written to ``tmp_path / filename`` and run with
    ``args`` after it; without ``script``, ``args`` go straight to python
    (e.g. ``args=["-m", "traceroot.cli", ...]``). The environment is
    ``clean_env(env)``; cwd defaults to ``tmp_path``. Output is captured as
    text; the exit code is not checked.
    """

    def run(
        script: str | None = None,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        filename: str = "script.py",
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable]
        if script is not None:
            path = tmp_path / filename
            path.write_text(script)
            argv.append(str(path))
        argv.extend(args)
        return subprocess.run(
            argv,
            env=clean_env(env),
            cwd=cwd if cwd is not None else tmp_path,
            timeout=timeout,
            capture_output=True,
            text=True,
            input=input,
        )

    return run
