"""Sampling: TRACEROOT_SAMPLE_RATE and OTEL_TRACES_SAMPLER keep whole traces, in the right share."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import RunPython
from otlp_receiver import OTLPReceiver
from sdk_helpers import receiver_env
from test_launcher import launch, program_env

TRACES = 2000

ROOTS = f"""
from traceroot import observe

@observe(type="tool")
def child(i: int) -> int:
    return i

@observe(type="agent")
def root(i: int) -> int:
    return child(i)

for i in range({TRACES}):
    root(i)
print("done")
"""


def binomial_bounds(n: int, p: float, sds: float = 5.0) -> tuple[float, float]:
    """A range the kept count falls in but for a 1-in-millions chance."""
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sds * sd, n * p + sds * sd


def traces_of(receiver: OTLPReceiver) -> dict[str, list[str]]:
    by_trace: dict[str, list[str]] = defaultdict(list)
    for span in receiver.spans:
        by_trace[span.trace_id].append(span.name)
    return by_trace


@pytest.mark.parametrize(
    "variables",
    [
        {"TRACEROOT_SAMPLE_RATE": "0.25"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
    ],
)
def test_the_kept_share_is_the_rate_and_traces_stay_whole(
    receiver: OTLPReceiver, run_python: RunPython, variables: dict[str, str]
) -> None:
    done = run_python(ROOTS, env=receiver_env(receiver, **variables), timeout=120)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    low, high = binomial_bounds(TRACES, 0.25)
    kept = receiver.wait_for(lambda r: len(r.spans) if len(r.spans) >= 2 * low else None)
    traces = traces_of(receiver)
    assert low <= len(traces) <= high, f"{len(traces)} of {TRACES} traces kept"
    assert all(sorted(names) == ["child", "root"] for names in traces.values())
    assert kept == 2 * len(traces)
    assert "not delivered" not in done.stderr


def test_rate_zero_keeps_none_and_a_bad_rate_is_named(
    receiver: OTLPReceiver, run_python: RunPython
) -> None:
    done = run_python(ROOTS, env=receiver_env(receiver, TRACEROOT_SAMPLE_RATE="0.0"))
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    assert receiver.spans == [] and "traceroot" not in done.stderr
    bad = run_python(ROOTS, env=receiver_env(receiver, TRACEROOT_SAMPLE_RATE="1.5"))
    assert "invalid TRACEROOT_SAMPLE_RATE='1.5' (expected a number >= 0 and <= 1)" in bad.stderr
    assert len(receiver.wait_for_spans(2 * TRACES)) == 2 * TRACES


PARENT = """
import json, subprocess, sys
from opentelemetry import propagate
from traceroot import observe

carriers = []

@observe(type="agent")
def root(i: int) -> None:
    carrier: dict = {}
    propagate.inject(carrier)
    carriers.append(carrier)

for i in range(400):
    root(i)
child = subprocess.run(
    [sys.executable, sys.argv[1]], input=json.dumps(carriers), text=True, capture_output=True
)
print(child.stdout.strip(), child.returncode)
"""

CHILD = """
import json, sys
from opentelemetry import context, propagate
from traceroot import observe

@observe(type="tool")
def remote(i: int) -> int:
    return i

for i, carrier in enumerate(json.loads(sys.stdin.read())):
    token = context.attach(propagate.extract(carrier))
    try:
        remote(i)
    finally:
        context.detach(token)
print("child done")
"""


def test_a_trace_is_kept_or_dropped_whole_across_processes(
    receiver: OTLPReceiver, run_python: RunPython, tmp_path: Path
) -> None:
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    env = receiver_env(receiver, TRACEROOT_SAMPLE_RATE="0.5")
    done = run_python(PARENT, args=[str(child)], env=env, timeout=120)
    assert done.returncode == 0 and done.stdout == "child done 0\n", done.stderr
    low, _ = binomial_bounds(400, 0.5)
    receiver.wait_for(lambda r: len(r.spans) if len(r.spans) >= 2 * low else None)
    traces = traces_of(receiver)
    assert low <= len(traces) <= 400 - low
    # Every kept trace has its remote part; no dropped trace has one.
    assert all(sorted(names) == ["remote", "root"] for names in traces.values()), traces


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        # OpenTelemetry's own reading raises on a ratio above 1: nothing was traced at all.
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "invalid OTEL_TRACES_SAMPLER_ARG='1.5' (expected a number >= 0 and <= 1); "
            "keeping every trace. Fix or unset OTEL_TRACES_SAMPLER_ARG.",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "invalid OTEL_TRACES_SAMPLER_ARG='half'",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_always"},
            "invalid OTEL_TRACES_SAMPLER='parentbased_always' (expected parentbased_always_on or",
        ),
    ],
)
def test_a_bad_standard_sampler_is_named_once_and_every_trace_kept(
    receiver: OTLPReceiver, run_python: RunPython, variables: dict[str, str], named: str
) -> None:
    done = run_python(ROOTS, env=receiver_env(receiver, **variables), timeout=120)
    assert done.returncode == 0 and done.stdout == "done\n", done.stderr
    assert done.stderr.count(named) == 1, done.stderr
    # One warning, ours: not OpenTelemetry's own words beside it.
    assert done.stderr.count("\n") == 1, done.stderr
    assert len(receiver.wait_for_spans(2 * TRACES, timeout=30)) == 2 * TRACES


def test_check_shows_the_standard_sampler_and_sends_its_test_span_under_always_off(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    env = program_env(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces",
            "OTEL_TRACES_SAMPLER": "always_off",
        }
    )
    result = launch(["--no-env-file", "--check", "--integrations", "none"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert re.search(r"OTEL_TRACES_SAMPLER +always_off\n", result.stdout)
    assert re.search(r"sampling +no trace \(OTEL_TRACES_SAMPLER=always_off\)", result.stdout)
    assert [s.name for s in receiver.wait_for_spans(1)] == ["traceroot-run --check"]


def test_check_reports_the_share_kept(tmp_path: Path) -> None:
    env = program_env({"TRACEROOT_SAMPLE_RATE": "0.1"})
    result = launch(["--no-env-file", "--check", "--integrations", "none"], env, tmp_path)
    assert re.search(
        r"sampling +0.1 of new traces kept \(TRACEROOT_SAMPLE_RATE=0.1\)", result.stdout
    )


UNSAMPLED_CHILDREN = """
import json
from collections.abc import Mapping
from traceroot import observe

reads = 0

class Counted(Mapping):
    def __getitem__(self, key):
        global reads
        reads += 1
        return key
    def __iter__(self):
        global reads
        reads += 1
        return iter(["a", "b"])
    def __len__(self):
        return 2

@observe
def child(value):
    return "ok"

@observe(type="agent")
def root(i):
    child(Counted())
    child(Counted())

for i in range(200):
    root(i)
print(json.dumps({"reads": reads}))
"""


def test_an_unsampled_call_captures_nothing(receiver: OTLPReceiver, run_python: RunPython) -> None:
    done = run_python(UNSAMPLED_CHILDREN, env=receiver_env(receiver, TRACEROOT_SAMPLE_RATE="0.5"))
    assert done.returncode == 0, done.stderr
    spans = receiver.spans  # the program flushed everything before it exited
    kept_roots = len([s for s in spans if s.name == "root"])
    assert 0 < kept_roots < 200
    # Only the children of kept traces read their argument (at most 3 reads each).
    reads = json.loads(done.stdout)["reads"]
    assert 0 < reads <= 2 * kept_roots * 3
    assert len([s for s in spans if s.name == "child"]) == 2 * kept_roots
