"""``traceroot._propagation`` in real processes: what children receive, what they continue."""

from __future__ import annotations

import json
import textwrap

from conftest import RunPython
from otlp_receiver import OTLPReceiver

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# Prints, as JSON, the TRACEPARENT each kind of child sees, and whether the
# parent's os.environ was left alone.
SPAWNER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from traceroot import _propagation as propagation

    trace.set_tracer_provider(TracerProvider())
    propagation.install()
    propagation.install()  # idempotent
    SHOW = [sys.executable, "-c", "import os; print(os.environ.get('TRACEPARENT'))"]

    def child(**kwargs):
        out = subprocess.run(SHOW, capture_output=True, **kwargs).stdout
        return (out.decode() if isinstance(out, bytes) else out).strip()

    before = dict(os.environ)
    with trace.get_tracer("t").start_as_current_span("parent") as span:
        ctx = span.get_span_context()
        mine = "00-%032x-%016x-01" % (ctx.trace_id, ctx.span_id)
        result = {
            "mine": mine,
            "inherited": child(),
            "explicit": child(env={"PATH": os.environ["PATH"]}),
            "copied": child(env=dict(os.environ)),
            "bytes": child(env={b"PATH": os.environ["PATH"].encode()}),
            "chosen": child(env={**os.environ, "TRACEPARENT": sys.argv[1]}),
            "positional": subprocess.Popen(
                SHOW, -1, None, None, subprocess.PIPE, None, None, True, False, None,
                {"PATH": os.environ["PATH"]}, text=True,
            ).communicate()[0].strip(),
        }
    result["outside"] = child()
    result["environ_untouched"] = dict(os.environ) == before
    print(json.dumps(result))
    """
)


def test_children_get_the_current_span(run_python: RunPython) -> None:
    result = run_python(SPAWNER, args=[PARENT], env={"TRACEPARENT": ""})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    # The ids must match; the flags may carry more than "sampled" (W3C random-trace-id).
    mine = seen["mine"].rsplit("-", 1)[0]
    for how in ("inherited", "explicit", "copied", "bytes", "positional"):
        assert seen[how].rsplit("-", 1)[0] == mine, how
    assert seen["chosen"] == PARENT  # a TRACEPARENT the caller set on purpose is kept
    assert seen["outside"] == ""  # no span, nothing added (the empty inherited value)
    assert seen["environ_untouched"] is True


CONTINUER = textwrap.dedent(
    """
    import asyncio, threading
    import traceroot
    from traceroot import observe

    traceroot.auto_initialize()  # what the launcher's start-up hook calls

    @observe(name="main_span")
    def main_span():
        return 1

    @observe(name="thread_span")
    def thread_span():
        return 2

    @observe(name="task_span")
    async def task_span():
        return 3

    main_span()
    worker = threading.Thread(target=thread_span)
    worker.start()
    worker.join()
    asyncio.run(task_span())
    """
)


def test_child_root_spans_continue_traceparent_in_every_thread_and_task(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], run_python: RunPython
) -> None:
    env = {**traceroot_env, "TRACEPARENT": PARENT, "TRACESTATE": "vendor=value"}
    result = run_python(CONTINUER, env=env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    spans = {s.name: s for s in receiver.spans}
    assert sorted(spans) == ["main_span", "task_span", "thread_span"]
    for span in spans.values():
        assert span.trace_id == PARENT.split("-")[1], span.name
        assert span.parent_span_id == PARENT.split("-")[2], span.name


def test_invalid_traceparent_is_one_warning(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], run_python: RunPython
) -> None:
    env = {**traceroot_env, "TRACEPARENT": "not-a-traceparent"}
    result = run_python(CONTINUER, env=env)
    assert result.returncode == 0
    (line,) = result.stderr.splitlines()
    assert "TRACEPARENT" in line and "not-a-traceparent" in line
    assert len({s.trace_id for s in receiver.spans}) == 3  # three new traces


# OpenTelemetry's API fails to import `opentelemetry.propagate` when OTEL_PROPAGATORS names a
# propagator that is not installed: every instrumentor importing it failed, and so did this.
PROPAGATES = """
import os, subprocess, sys
import traceroot
from opentelemetry import propagate

traceroot.initialize()

@traceroot.observe
def call_downstream():
    carrier = {}
    propagate.inject(carrier)
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('OTEL_PROPAGATORS'))"],
        capture_output=True, text=True,
    )
    return sorted(carrier), child.stdout.strip(), child.stderr

print(call_downstream())
"""


def test_an_uninstalled_propagator_is_named_and_left_out(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], run_python: RunPython
) -> None:
    result = run_python(PROPAGATES, env={**traceroot_env, "OTEL_PROPAGATORS": "tracecontext,b3"})
    # The W3C header still goes out; the processes it starts get the variable without b3.
    assert (result.returncode, result.stdout) == (0, "(['traceparent'], 'tracecontext', '')\n")
    assert result.stderr == (
        "traceroot: OTEL_PROPAGATORS names 'b3', which no installed package provides, and "
        "OpenTelemetry would fail on it: it is left out for this process and the ones it "
        "starts, which use tracecontext. Fix OTEL_PROPAGATORS or pip install "
        "opentelemetry-propagator-b3.\n"
    )
    assert [span.name for span in receiver.wait_for_spans(1)] == ["call_downstream"]


def test_installed_propagators_and_none_are_left_as_they_are(
    receiver: OTLPReceiver, traceroot_env: dict[str, str], run_python: RunPython
) -> None:
    value = "baggage, tracecontext"
    result = run_python(PROPAGATES, env={**traceroot_env, "OTEL_PROPAGATORS": value})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == f"(['traceparent'], {value!r}, '')\n"
    none = run_python(PROPAGATES, env={**traceroot_env, "OTEL_PROPAGATORS": "none"})
    assert none.returncode == 0, none.stderr
    from traceroot._propagation import _none_understood

    if _none_understood():  # OpenTelemetry 1.33 and later: no propagator at all
        assert (none.stdout, none.stderr) == ("([], 'none', '')\n", "")
    else:  # older releases fail on `none` as on any unknown name: left out, and said
        assert none.stdout == "(['traceparent'], 'None', '')\n"  # the child's env has none
        assert "OTEL_PROPAGATORS names 'none'" in none.stderr
        assert "pip install 'opentelemetry-api>=1.33' (for none)" in none.stderr
