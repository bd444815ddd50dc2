"""Instruction counts under valgrind's callgrind, for `run.py --instructions`.

Wall time on a shared machine moves by tens of percent from one run to the next; the
number of instructions a program runs barely moves. Counting them (every thread of the
process, the export thread included; not the kernel's work, nor time spent waiting) tells
two revisions apart where timings cannot. Each program runs once, with a fixed hash seed,
about 50 times slower than natively.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

TIMEOUT = 1800.0  # seconds for one program under callgrind
_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def available() -> bool:
    """Whether valgrind (with callgrind_control) is on this machine."""
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def _valgrind(out: Path) -> list[str]:
    # --trace-children: traceroot-run execs the program; its count is the program's.
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--trace-children=yes", "--log-file=/dev/null"]  # fmt: skip


def _totals(out: Path) -> int | None:
    try:
        found = _TOTALS.findall(out.read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def count(argv: Sequence[str], env: dict[str, str], cwd: Path) -> int | None:
    """Instructions a whole program run takes (start-up, work and exit); None on failure."""
    with tempfile.TemporaryDirectory(prefix="trbench-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        try:
            done = subprocess.run(
                [*_valgrind(out), *argv], env={**env, "PYTHONHASHSEED": "0"}, cwd=cwd,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return None
        return _totals(out) if done.returncode == 0 else None


def per_request(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    url: str,
    ready: Callable[[subprocess.Popen[bytes]], bool],
    warmup: int,
    requests: int,
) -> float | None:
    """Instructions per request of a server: counted from after `warmup` requests to its
    exit on SIGTERM (so the export of the last spans is counted too), over `requests`
    requests sent one after another."""
    with tempfile.TemporaryDirectory(prefix="trbench-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        server = subprocess.Popen(
            [*_valgrind(out), *argv], env={**env, "PYTHONHASHSEED": "0"}, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            if not ready(server):
                return None
            for _ in range(warmup):
                _get(url)
            zeroed = subprocess.run(
                ["callgrind_control", "--zero", str(server.pid)],
                capture_output=True, timeout=120,
            )  # fmt: skip
            if zeroed.returncode != 0:
                return None
            for _ in range(requests):
                _get(url)
            time.sleep(1.0)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=TIMEOUT)
        except (OSError, subprocess.SubprocessError):
            return None
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        total = _totals(out)
        return None if total is None else total / requests


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=120) as answer:
        answer.read()
