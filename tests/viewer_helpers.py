"""`traceroot ui` run as a real process on loopback, and programs that fill its store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import clean_env

BIN = Path(sys.executable).parent
VIEWER = str(BIN / "traceroot")
LAUNCHER = str(BIN / "traceroot-run")
REPO = Path(__file__).resolve().parent.parent


class Viewer:
    """`traceroot --dir DIR ui --port 0 ...` in a subprocess; `url` once it listens."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.proc = subprocess.Popen(
            [VIEWER, "--dir", str(directory), "ui", "--port", "0", *extra],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        assert first.startswith("traceroot ui: http://"), first + self.proc.stderr.read()
        self.url = first.split()[-1]

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def get_error(self, path: str) -> tuple[int, Any]:
        """The status and JSON body of a request the viewer refuses (fails if it answers 200)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                raise AssertionError(f"{path} answered {response.status}: {response.read()!r}")
        except urllib.error.HTTPError as refused:
            return refused.code, json.load(refused)

    def wait_for_traces(self, count: int, timeout: float = 10.0, **query: str) -> list[Any]:
        """The trace list once it has `count` traces (the writers may still be finishing)."""
        path = "/api/traces?" + "&".join(f"{k}={v}" for k, v in query.items())
        deadline = time.monotonic() + timeout
        while True:
            traces = self.get(path)["traces"]
            if len(traces) >= count or time.monotonic() > deadline:
                return traces
            time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def run_traced(
    directory: Path, script: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`traceroot-run python SCRIPT` in local mode, storing in `directory`."""
    return subprocess.run(
        [LAUNCHER, sys.executable, str(script), *args],
        env=clean_env({"TRACEROOT_LOCAL_DIR": str(directory), **env}),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=script.parent,
    )


def run_check(directory: Path) -> subprocess.CompletedProcess[str]:
    """`traceroot-run --check` in local mode, storing its test span in `directory`."""
    return subprocess.run(
        [LAUNCHER, "--check"],
        env=clean_env({"TRACEROOT_LOCAL_DIR": str(directory)}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def corrupt_store(directory: Path) -> Path:
    """Replace the store in `directory` by random bytes, as a damaged disk might."""
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("traces.db-*"):  # the WAL and its index
        leftover.unlink()
    path = directory / "traces.db"
    path.write_bytes(os.urandom(100_000))
    return path
