"""Local mode: with no key, each trace is printed to stderr as a tree and nothing is sent."""

from __future__ import annotations

import re
import time

from otlp_receiver import OTLPReceiver
from sdk_helpers import check, run_traced

NOTICE = "traces stay local"
DURATION = r"\d+\.\d+(ms|s)"

AGENT = r"""
import traceroot
from traceroot import update_current_span
from traceroot import observe
from opentelemetry import trace

@observe(type="llm")
def call_model(q):
    update_current_span(model="gpt-4o", usage={"input_tokens": 100, "output_tokens": 50})
    return "a"

@observe(type="tool")
def broken_tool():
    raise ValueError("bad tool")

@observe(type="agent")
def agent():
    call_model("x")
    with trace.get_tracer("oi").start_as_current_span("ChatCompletion") as s:
        s.set_attribute("openinference.span.kind", "LLM")
        s.set_attribute("llm.model_name", "gpt-4o-mini")
        s.set_attribute("llm.token_count.prompt", 12)
        s.set_attribute("llm.token_count.completion", 3)
    try:
        broken_tool()
    except ValueError:
        pass
    return "done"

agent()
agent()
print("finished")
"""


def _trees(stderr: str) -> list[list[str]]:
    """The printed trees: each a header line followed by its lines."""
    trees: list[list[str]] = []
    for line in stderr.splitlines():
        if line.startswith("traceroot: trace "):
            trees.append([line])
        elif trees and not line.startswith("traceroot:"):
            trees[-1].append(line)
    return trees


def test_local_mode_prints_a_tree_and_sends_nothing(run_python, receiver: OTLPReceiver) -> None:
    # A host URL alone is not a destination: without a key nothing leaves the process.
    proc = check(run_python(AGENT, env={"TRACEROOT_HOST_URL": receiver.url}))
    assert proc.stdout.strip() == "finished"
    assert proc.stderr.count(NOTICE) == 1  # once, however many traces
    assert proc.stderr.splitlines()[0].startswith("traceroot: ") and NOTICE in proc.stderr
    assert "TRACEROOT_API_KEY" in proc.stderr.splitlines()[0]  # says how to send them

    trees = _trees(proc.stderr)
    assert len(trees) == 2
    header, *lines = trees[0]
    assert re.fullmatch(rf"traceroot: trace [0-9a-f]{{32}}  4 spans  {DURATION}", header)
    assert len(lines) == 4
    assert re.fullmatch(rf"└─ agent \[agent\] {DURATION}", lines[0])
    assert re.fullmatch(
        rf"   ├─ call_model \[llm\] {DURATION}  model=gpt-4o  tokens=100->50", lines[1]
    )
    assert re.fullmatch(
        rf"   ├─ ChatCompletion \[llm\] {DURATION}  model=gpt-4o-mini  tokens=12->3", lines[2]
    )
    assert re.fullmatch(
        rf"   └─ broken_tool \[tool\] {DURATION}  ERROR ValueError: bad tool", lines[3]
    )
    assert trees[0][0] != trees[1][0]  # two traces, two ids

    time.sleep(0.3)
    assert receiver.requests == []


def test_a_refused_destination_keeps_traces_local_without_saying_no_key_is_set(
    run_python, receiver: OTLPReceiver
) -> None:
    # The key is set; the URL is what is wrong. The console notice must not contradict the
    # warning that says so (it once said "no TRACEROOT_API_KEY set").
    env = {"TRACEROOT_API_KEY": "k", "TRACEROOT_HOST_URL": "ftp://" + receiver.url[7:]}
    proc = check(run_python(AGENT, env=env))
    lines = proc.stderr.splitlines()
    assert "invalid TRACEROOT_HOST_URL" in lines[0]
    assert NOTICE in lines[1] and "until the destination is fixed" in lines[1]
    assert "no TRACEROOT_API_KEY" not in proc.stderr
    assert len(_trees(proc.stderr)) == 2
    time.sleep(0.3)
    assert receiver.requests == []


def test_console_false_silences_and_true_adds_the_tree_to_sending(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    proc = check(run_python(AGENT, env={"TRACEROOT_CONSOLE": "false"}))
    assert proc.stdout.strip() == "finished"
    assert proc.stderr == ""

    # With a key nothing is printed by default...
    proc, spans = run_traced(run_python, receiver, traceroot_env, AGENT, expect=8)
    assert _trees(proc.stderr) == [] and NOTICE not in proc.stderr
    receiver.clear()

    # ...and TRACEROOT_CONSOLE=true prints the tree while still sending.
    env = {**traceroot_env, "TRACEROOT_CONSOLE": " TRUE "}
    proc, spans = run_traced(run_python, receiver, env, AGENT, expect=8)
    assert len(spans) == 8
    trees = _trees(proc.stderr)
    assert len(trees) == 2 and len(trees[0]) == 5
    assert NOTICE not in proc.stderr
    printed_ids = {t[0].split()[2] for t in trees}
    assert printed_ids == {s.trace_id for s in spans}


BIG = r"""
from traceroot import observe
from opentelemetry import trace

@observe()
def leaf(i):
    return i

@observe(type="agent")
def wide():
    for i in range(100):
        leaf(i)

@observe()
def deep(n):
    if n:
        deep(n - 1)

@observe(name="n" * 300)
def long_name():
    with trace.get_tracer("x").start_as_current_span("model-call") as s:
        s.set_attribute("llm.model_name", "m" * 200)
    raise RuntimeError("e" * 500)

@observe()
def huge():
    for i in range(2100):
        leaf(i)

wide()
deep(14)
try:
    long_name()
except RuntimeError:
    pass
huge()
"""


def test_wide_deep_and_long_traces_fold(run_python) -> None:
    proc = check(run_python(BIG, env={"PYTHONIOENCODING": "utf-8"}))
    wide, deep, long, huge = _trees(proc.stderr)

    assert "101 spans" in wide[0]
    assert re.fullmatch(rf"└─ wide \[agent\] {DURATION}", wide[1])
    leaves = [line for line in wide if "leaf [span]" in line]
    assert 5 <= len(leaves) <= 30  # some shown...
    assert wide[-1].strip().endswith(f"... {100 - len(leaves)} more spans")  # ...the rest counted

    assert "15 spans" in deep[0]
    shown = [line for line in deep if "deep [span]" in line]
    assert 3 <= len(shown) < 15
    assert deep[-1].strip().endswith(f"... {15 - len(shown)} more spans below")

    for line in long:
        assert len(line) < 200, line  # names, models and errors shortened
    name_line = next(line for line in long if "nnnn" in line)
    assert "..." in name_line and "ERROR RuntimeError: eee" in name_line
    model_line = next(line for line in long if "model-call" in line)
    assert "model=mmm" in model_line and "..." in model_line

    assert "2101 spans" in huge[0]
    assert len(huge) < 60  # a 2101-span trace prints a few dozen lines
    assert re.search(r"\d+ spans not shown|\d+ more spans", "\n".join(huge))
