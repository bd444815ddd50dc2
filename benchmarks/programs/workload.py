"""The burst every contender runs: ROOTS decorated calls, each making CHILDREN decorated calls.

One thread, as fast as it can; 200 x (1 + 100) = 20,200 spans by default. The program
prints one JSON line: the spans it made, the seconds from its start (BENCH_T0, set by
measure.py) to the first call, the wall seconds the calls took, and the CPU seconds this
thread spent in them (`time.thread_time`: the calling thread's own share, without the time
it waited while the export thread held the GIL). The harness times the whole process; what
is left is the SDK's flush at exit.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

ROOTS = int(os.environ.get("BENCH_ROOTS", "200"))
CHILDREN = int(os.environ.get("BENCH_CHILDREN", "100"))


def run(root: Callable[[int], int]) -> None:
    """Call `root` ROOTS times, then report; the SDK flushes in its own exit hook."""
    startup_s = time.time() - float(os.environ.get("BENCH_T0", "nan"))
    start, start_cpu = time.perf_counter(), time.thread_time()
    for r in range(ROOTS):
        root(r)
    calls_cpu_s = time.thread_time() - start_cpu
    calls_s = time.perf_counter() - start
    report = {
        "spans": ROOTS * (1 + CHILDREN),
        "startup_s": startup_s,
        "calls_s": calls_s,
        "calls_cpu_s": calls_cpu_s,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
