"""The process lifecycle: one fork hook however often the client is re-initialized."""

from __future__ import annotations

import signal
from typing import Any

from otlp_receiver import OTLPReceiver
from sdk_helpers import run_traced, stdout_json

REINITIALIZED = r"""
import gc, json, os
import traceroot
from traceroot import _lifecycle as lifecycle
from traceroot import observe

for round in range(5):
    traceroot.initialize()
    traceroot.shutdown()
traceroot.initialize()
gc.collect()
hooks = lifecycle.live_fork_callbacks()

@observe
def work(where):
    return where

work("parent")
traceroot.flush()
pid = os.fork()
if pid == 0:
    work("child")
    traceroot.shutdown()
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"hooks": hooks}))
"""


def test_reinitializing_keeps_one_live_fork_hook(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, REINITIALIZED, expect=2)
    # Before, each initialize() registered a hook holding its pipeline alive for good.
    assert stdout_json(proc) == {"hooks": 1}
    assert sorted(s.attributes["traceroot.span.output"] for s in spans) == ["child", "parent"]
    assert proc.stderr == ""


INTERRUPTED = r"""
import sys
from traceroot import observe

@observe
def work():
    return "done"

work()
if sys.argv[1:] == ["handled"]:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        print("handled")
else:
    raise KeyboardInterrupt  # what Ctrl-C does to a program that does not catch it
"""


def test_an_unhandled_ctrl_c_still_ends_the_process_by_sigint(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    # The exit flush is the first export here: it imports the HTTP client, which evaluates
    # source text (dataclasses), which cleared CPython's note of the interrupt: status 1.
    proc = run_python(INTERRUPTED, env=traceroot_env)
    assert proc.returncode == -signal.SIGINT, proc.stderr
    assert proc.stderr.rstrip().endswith("KeyboardInterrupt")
    assert "traceroot" not in proc.stderr
    assert [s.name for s in receiver.wait_for_spans(1, timeout=5)] == ["work"]
    # A program that handled it exits as it chose.
    handled = run_python(INTERRUPTED, args=["handled"], env=traceroot_env)
    assert (handled.returncode, handled.stdout, handled.stderr) == (0, "handled\n", "")
