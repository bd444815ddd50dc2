"""`redact=`: what it sees, what it cannot touch, and failing closed when it raises."""

from __future__ import annotations

import json

from otlp_receiver import OTLPReceiver
from sdk_helpers import all_text, run_traced, stdout_json, warnings_in

SECRET = "sk-live-TOPSECRET-42"

PROGRAM = r"""
import json, sys
import traceroot
from traceroot import update_current_span, update_current_trace, using_attributes
from traceroot import observe
from opentelemetry import trace

SECRET = "sk-live-TOPSECRET-42"
seen = set()

def redact(attributes):
    seen.update(attributes)
    MODE
    return {
        k: v.replace(SECRET, "[REDACTED]") if isinstance(v, str) else v
        for k, v in attributes.items()
    }

traceroot.initialize(redact=redact)

@observe(type="llm", metadata={"note": SECRET}, user_id="u-1", session_id="s-1", tags=["t"])
def call_llm(prompt):
    update_current_span(
        model="gpt-4o",
        usage={"input_tokens": 10, "output_tokens": 5},
        prompt=[{"role": "user", "content": prompt}],
        model_parameters={"api_key": SECRET},
        cost=0.5,
    )
    update_current_trace(user_id="u-trace", session_id="s-trace", metadata={"m": SECRET})
    return "answer with " + SECRET

@observe(type="tool")
def failing(x):
    raise ValueError("cannot use " + SECRET)

with using_attributes(user_id="u-ctx", session_id="s-ctx"):
    call_llm("my key is " + SECRET)
    try:
        failing(SECRET)
    except ValueError:
        pass
    with trace.get_tracer("thirdparty").start_as_current_span("oi-llm") as s:
        s.set_attribute("openinference.span.kind", "LLM")
        s.set_attribute("llm.model_name", "claude")
        s.set_attribute("llm.token_count.prompt", 7)
        s.set_attribute("input.value", SECRET)
print(json.dumps(sorted(seen)))
"""

NEVER_SHOWN = {
    "traceroot.sdk.name",
    "traceroot.sdk.version",
    "traceroot.span.path",
    "traceroot.span.ids_path",
    "traceroot.span.type",
    "traceroot.trace.user_id",
    "traceroot.trace.session_id",
    "traceroot.llm.model",
    "traceroot.llm.usage",
    "llm.cost.total",
    "user.id",
    "session.id",
    "openinference.span.kind",
    "llm.model_name",
    "llm.token_count.prompt",
    "traceroot.git.source_file",
    "traceroot.git.source_line",
    "traceroot.git.source_function",
}


def _check_kept(spans) -> None:
    """The keys the backend needs are untouched, whatever redact did."""
    llm = spans.one("call_llm").attributes
    assert llm["traceroot.trace.user_id"] == "u-trace"
    assert llm["traceroot.trace.session_id"] == "s-trace"
    assert llm["user.id"] == "u-ctx" and llm["session.id"] == "s-ctx"
    assert llm["traceroot.llm.model"] == "gpt-4o"
    assert llm["traceroot.llm.usage"] == '{"input_tokens": 10, "output_tokens": 5}'
    assert llm["llm.cost.total"] == 0.5
    assert llm["traceroot.span.type"] == "llm"
    assert llm["traceroot.span.path"] == ["call_llm"]
    assert llm["traceroot.span.ids_path"] == []
    assert llm["traceroot.sdk.name"] == "traceroot-py"
    assert llm["traceroot.git.source_function"] == "<module>"
    tool = spans.one("failing")
    assert tool.status_code == "ERROR"
    assert [e.name for e in tool.events] == ["exception"]
    oi = spans.one("oi-llm").attributes
    assert oi["llm.model_name"] == "claude" and oi["llm.token_count.prompt"] == 7
    assert oi["openinference.span.kind"] == "LLM"


def test_redact_sees_user_content_only(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    script = PROGRAM.replace("MODE", "pass")
    proc, spans = run_traced(run_python, receiver, traceroot_env, script, expect=3)
    seen = set(stdout_json(proc))
    for key in (
        "traceroot.span.input",
        "traceroot.span.output",
        "traceroot.span.metadata",
        "traceroot.llm.prompt",
        "traceroot.llm.model_parameters",
        "traceroot.trace.metadata",
        "exception.message",
        "exception.stacktrace",
        "status.message",
        "input.value",
    ):
        assert key in seen, key
    assert not seen & NEVER_SHOWN, seen & NEVER_SHOWN

    assert SECRET not in all_text(spans)
    llm = spans.one("call_llm").attributes
    assert json.loads(llm["traceroot.span.input"]) == {"prompt": "my key is [REDACTED]"}
    assert llm["traceroot.span.output"] == "answer with [REDACTED]"
    assert json.loads(llm["traceroot.span.metadata"]) == {"note": "[REDACTED]"}
    assert "[REDACTED]" in llm["traceroot.llm.prompt"]
    tool = spans.one("failing")
    assert tool.status_message == "ValueError: cannot use [REDACTED]"
    assert tool.events[0].attributes["exception.message"] == "cannot use [REDACTED]"
    assert tool.events[0].attributes["exception.type"] == "ValueError"
    assert spans.one("oi-llm").attributes["input.value"] == "[REDACTED]"
    _check_kept(spans)
    assert "redact" not in proc.stderr


def test_raising_redact_fails_closed(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    raising = 'raise RuntimeError("refusing: " + str(attributes))'
    script = PROGRAM.replace("MODE", raising)
    proc, spans = run_traced(run_python, receiver, traceroot_env, script, expect=3)

    # One warning for the whole run, naming only the exception type.
    lines = warnings_in(proc.stderr, "redact")
    assert len(lines) == 1, proc.stderr
    assert "RuntimeError" in lines[0]
    assert SECRET not in proc.stderr and "refusing" not in proc.stderr

    # Nothing it would have seen leaves as a string; what the backend needs is kept.
    assert SECRET not in all_text(spans)
    llm = spans.one("call_llm").attributes
    for key in ("traceroot.span.input", "traceroot.span.output", "traceroot.span.metadata"):
        assert llm[key] == "<withheld: redact failed>", key
    assert llm["traceroot.llm.prompt"] == "<withheld: redact failed>"
    tool = spans.one("failing")
    assert tool.status_message == "<withheld: redact failed>"
    assert tool.events[0].attributes["exception.stacktrace"] == "<withheld: redact failed>"
    _check_kept(spans)
