"""Helpers shared by the SDK's end-to-end tests: run a program, read what it sent."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from conftest import clean_env
from otlp_receiver import OTLPReceiver, ReceivedSpan

TRACES_PATH = "/api/v1/public/traces"


def check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert the program exited 0, showing its output if not."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


class Spans(list[ReceivedSpan]):
    """The spans of one run, with lookups by name and structure."""

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self if s.name == name]

    def one(self, name: str) -> ReceivedSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {len(found)}: {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        return sorted(s.name for s in self)

    def by_id(self, span_id: str) -> ReceivedSpan:
        return next(s for s in self if s.span_id == span_id)

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        return [s for s in self if s.parent_span_id == parent.span_id]


def run_traced(
    run_python: Any,
    receiver: OTLPReceiver,
    env: Mapping[str, str],
    script: str,
    expect: int,
    **kwargs: Any,
) -> tuple[subprocess.CompletedProcess[str], Spans]:
    """Run `script` sending to `receiver`; return its result and the spans (at least `expect`).

    The program exits before we look: everything must have been sent by then
    (the exit hook flushes), so a short wait is enough.
    """
    proc = check(run_python(script, env=env, **kwargs))
    spans = receiver.wait_for_spans(expect, timeout=5) if expect else receiver.spans
    return proc, Spans(spans)


def receiver_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    """Env overrides sending to `receiver` with a fast flush (as the `traceroot_env` fixture)."""
    return {
        "TRACEROOT_API_KEY": "test-key",
        "TRACEROOT_HOST_URL": receiver.url,
        "TRACEROOT_FLUSH_INTERVAL": "0.2",
        **extra,
    }


def run_script(
    directory: Path,
    script: str,
    env: Mapping[str, str],
    filename: str = "script.py",
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """`run_python` for module-scoped fixtures: write `script` into `directory` and run it there."""
    path = directory / filename
    path.write_text(script)
    return subprocess.run(
        [sys.executable, str(path)],
        env=clean_env(env),
        cwd=directory,
        timeout=timeout,
        capture_output=True,
        text=True,
    )


def line_of(script: str, marker: str) -> int:
    """1-based line number of the only line of `script` containing `marker`."""
    lines = [i for i, text in enumerate(script.splitlines(), 1) if marker in text]
    assert len(lines) == 1, f"marker {marker!r} found on lines {lines}"
    return lines[0]


def stdout_json(proc: subprocess.CompletedProcess[str]) -> Any:
    """The last stdout line of `proc`, parsed as JSON."""
    return json.loads(proc.stdout.strip().splitlines()[-1])


def warnings_in(stderr: str, needle: str) -> list[str]:
    """Lines of `stderr` containing `needle`."""
    return [line for line in stderr.splitlines() if needle in line]


def all_text(spans: Iterable[ReceivedSpan]) -> str:
    """Everything the spans carry (names, attributes, events, status) as one string."""
    return "\n".join(
        repr((s.name, s.attributes, [(e.name, e.attributes) for e in s.events], s.status_message))
        for s in spans
    )
