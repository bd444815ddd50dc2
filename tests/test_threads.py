"""Trace context across threads, on what crossed the wire.

A span made in a ``ThreadPoolExecutor`` task, a ``threading.Thread`` (a subclass that
overrides ``run`` too) or a ``loop.run_in_executor`` worker nests under the span that
handed the work over, both under ``traceroot-run`` and after ``initialize()``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import Spans, check
from test_launcher import launch, program_env

# Every way of handing work to a thread, each under its own submitting span.
PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, threading
    from concurrent.futures import ThreadPoolExecutor
    from traceroot import observe

    if sys.argv[1] == "initialize":
        import traceroot
        traceroot.initialize()

    @observe(name="work")
    def work(label):
        return label

    class Worker(threading.Thread):
        def run(self):  # overrides run: the context must still reach it
            work("subclass")

    POOL = ThreadPoolExecutor(max_workers=1)

    @observe(name="pool")
    def pool():
        # map() submits each item; the worker thread is started inside this span
        return list(POOL.map(work, ["pool-1", "pool-2"]))

    @observe(name="thread")
    def thread():
        t = threading.Thread(target=work, args=("thread",))
        t.start()
        t.join()
        w = Worker()
        w.start()
        w.join()

    @observe(name="executor")
    async def executor():
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, work, "run_in_executor")

    pool()
    thread()
    asyncio.run(executor())
    # Submitted outside any span, to the worker thread started inside "pool": a new trace.
    POOL.submit(work, "after").result()
    POOL.shutdown()
    print("done")
    """
)


def _assert_nested(spans: Spans) -> None:
    works = {s.attributes.get("traceroot.span.input", ""): s for s in spans.named("work")}
    assert len(works) == 6, spans.names()
    parents = {
        "pool-1": "pool",
        "pool-2": "pool",
        "thread": "thread",
        "subclass": "thread",
        "run_in_executor": "executor",
    }
    for label, parent_name in parents.items():
        (span,) = [s for key, s in works.items() if label in key and "after" not in key]
        parent = spans.one(parent_name)
        assert span.parent_span_id == parent.span_id, (label, span, parent)
        assert span.trace_id == parent.trace_id
        assert parent.parent_span_id is None
    (after,) = [s for key, s in works.items() if "after" in key]
    assert after.parent_span_id is None
    assert after.trace_id not in {s.trace_id for s in spans if s is not after}


@pytest.mark.parametrize("how", ["traceroot-run", "initialize"])
def test_work_in_other_threads_nests_under_its_submitter(
    how: str, receiver: OTLPReceiver, traceroot_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "threads_app.py"
    script.write_text(PROGRAM)
    env = program_env(traceroot_env)
    if how == "traceroot-run":
        proc = launch(["python", str(script), "launcher"], env, tmp_path)
    else:
        import subprocess
        import sys

        proc = subprocess.run(
            [sys.executable, str(script), "initialize"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    check(proc)
    assert proc.stdout == "done\n"
    assert proc.stderr == ""
    _assert_nested(Spans(receiver.wait_for_spans(9, timeout=5)))
