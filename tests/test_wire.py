"""Transport: what the HTTP requests look like, the resource, the scope, batching."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import clean_env
from otlp_receiver import OTLPReceiver
from sdk_helpers import TRACES_PATH, run_traced

VERSION = version("traceroot")

PROGRAM = r"""
import traceroot
from traceroot import observe
from opentelemetry import trace

traceroot.initialize()

@observe(type="agent")
def root():
    with trace.get_tracer("thirdparty.lib", "9.9").start_as_current_span("manual-child") as s:
        s.set_attribute("custom", 1)
    return child()

@observe()
def child():
    return "ok"

root()
"""


def test_request_path_headers_gzip_protobuf(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    run_traced(run_python, receiver, traceroot_env, PROGRAM, expect=3)
    requests = receiver.requests
    assert len(requests) == 1  # a short program: one batch, sent by the exit hook
    req = requests[0]
    assert (req.method, req.path, req.status) == ("POST", TRACES_PATH, 200)
    assert req.gzip and req.span_count == 3
    headers = req.headers
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["content-encoding"] == "gzip"
    assert headers["authorization"] == "Bearer test-key"
    assert headers["x-traceroot-sdk-name"] == "traceroot-py"
    assert headers["x-traceroot-sdk-version"] == VERSION
    # Exactly these; nothing custom beyond the contract's headers.
    plain_http = {"host", "content-length", "accept-encoding", "accept", "connection", "user-agent"}
    assert set(headers) - plain_http == {
        "content-type",
        "content-encoding",
        "authorization",
        "x-traceroot-sdk-name",
        "x-traceroot-sdk-version",
    }


def test_trailing_slash_host_and_timeout_below_one_second(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    # The reference SDK truncated TRACEROOT_TIMEOUT=0.5 to 0 and never delivered.
    env = {**traceroot_env, "TRACEROOT_HOST_URL": receiver.url + "/", "TRACEROOT_TIMEOUT": "0.5"}
    proc, spans = run_traced(run_python, receiver, env, PROGRAM, expect=3)
    assert {r.path for r in receiver.requests} == {TRACES_PATH}
    assert "invalid" not in proc.stderr


def test_scope_kind_and_stamped_attributes(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_ENVIRONMENT": "staging"}
    _, spans = run_traced(run_python, receiver, env, PROGRAM, expect=3)
    root, child, manual = spans.one("root"), spans.one("child"), spans.one("manual-child")
    assert (root.scope_name, root.scope_version) == ("traceroot-sdk", VERSION)
    assert (child.scope_name, child.scope_version) == ("traceroot-sdk", VERSION)
    assert (manual.scope_name, manual.scope_version) == ("thirdparty.lib", "9.9")
    assert {s.kind for s in spans} == {"INTERNAL"}

    for span in spans:  # third-party spans are stamped too
        assert span.attributes["traceroot.sdk.name"] == "traceroot-py"
        assert span.attributes["traceroot.sdk.version"] == VERSION
        assert span.attributes["traceroot.environment"] == "staging"
        assert span.resource["deployment.environment.name"] == "staging"
    assert manual.parent_span_id == root.span_id
    assert manual.attributes["traceroot.span.path"] == ["root", "manual-child"]
    assert manual.attributes["traceroot.span.ids_path"] == [root.span_id]
    assert manual.attributes["custom"] == 1
    assert "traceroot.span.type" not in manual.attributes
    assert "traceroot.span.input" not in manual.attributes
    assert child.attributes["traceroot.span.ids_path"] == [root.span_id]
    # No repository around the temp dir: no git keys, and no failure either.
    assert "traceroot.git.repo" not in root.attributes


def test_service_name_from_program_and_otel_variable(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    _, spans = run_traced(
        run_python, receiver, traceroot_env, PROGRAM, expect=3, filename="billing_agent.py"
    )
    assert {s.resource["service.name"] for s in spans} == {"billing_agent"}
    assert "deployment.environment.name" not in spans[0].resource
    assert "traceroot.environment" not in spans[0].attributes
    assert spans[0].resource["telemetry.sdk.language"] == "python"

    receiver.clear()
    env = {**traceroot_env, "OTEL_SERVICE_NAME": "checkout-svc"}
    _, spans = run_traced(run_python, receiver, env, PROGRAM, expect=3, filename="x.py")
    assert {s.resource["service.name"] for s in spans} == {"checkout-svc"}


@pytest.mark.parametrize("how", ["env", "argument"])
def test_batch_size_is_the_maximum_per_request(
    run_python, receiver: OTLPReceiver, traceroot_env, how: str
) -> None:
    init = "traceroot.initialize(batch_size=2)" if how == "argument" else "traceroot.initialize()"
    script = f"import traceroot\n{init}\n" + (
        "@traceroot.observe\ndef f(i):\n    return i\nfor i in range(5):\n    f(i)\n"
    )
    env = {**traceroot_env, "TRACEROOT_FLUSH_AT": "2" if how == "env" else "100"}
    run_traced(run_python, receiver, env, script, expect=5)
    counts = [r.span_count for r in receiver.requests]
    assert sum(counts) == 5 and max(counts) <= 2 and len(counts) >= 3, counts


LONG_RUNNING = """
import sys, time, traceroot
traceroot.initialize()

@traceroot.observe
def tick():
    return 1

tick()
print("ticked", flush=True)
sys.stdin.readline()  # wait until the test lets us finish
"""


@pytest.mark.parametrize("interval, arrives", [("0.2", True), (None, False)])
def test_flush_interval_sends_while_running(
    tmp_path: Path, receiver: OTLPReceiver, traceroot_env, interval, arrives
) -> None:
    env = dict(traceroot_env)
    if interval is None:
        del env["TRACEROOT_FLUSH_INTERVAL"]  # default 5 s: nothing arrives in the first second
    script = tmp_path / "long.py"
    script.write_text(LONG_RUNNING)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=clean_env(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ticked"
        if arrives:
            assert len(receiver.wait_for_spans(1, timeout=3)) == 1
        else:
            time.sleep(1.0)
            assert receiver.spans == []
        assert proc.poll() is None  # still running: sent by the interval, not by the exit
        proc.communicate("\n", timeout=10)
        assert proc.returncode == 0
        assert len(receiver.wait_for_spans(1, timeout=3)) == 1  # and once at exit otherwise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
