"""Light decorator spans: used only where nothing else would see the span, and they send
exactly what the OpenTelemetry SDK's spans send."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import clean_env
from otlp_receiver import OTLPReceiver, ReceivedSpan
from sdk_helpers import run_traced, stdout_json, warnings_in
from test_launcher import launch, program_env
from test_launcher_pythons import VERSIONS, _python_for

# The same workload, with (SDK) or without (light) a second processor on our provider.
WORKLOAD = r"""
import json, os, sys
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import traceroot
from traceroot import update_current_span, using_attributes
from traceroot import observe

traceroot.initialize()
app_exporter = InMemorySpanExporter()
if os.environ["MODE"] == "sdk":
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(app_exporter))
span_types = set()
lib_fail_start = []

@observe(type="tool", metadata={"v": 1}, tags=["t1", "t2"])
def tool(x, y=2):
    span = trace.get_current_span()
    span_types.add(type(span).__name__)
    span.set_attribute("custom.list", ["a", "b"])
    span.set_attribute("custom.ints", (1, 2, 3))
    span.set_attribute("custom.float", 1.5)
    span.add_event("checkpoint", {"step": 3, "ok": True})
    span.add_link(trace.SpanContext(0xABC, 0xDEF, is_remote=True), {"why": "retry"})
    # A library's spans (an instrumentor's): light ones too while ours is the only processor.
    lib = trace.get_tracer("thirdparty.lib", "1.0", schema_url="https://example.com/schema")
    retried = trace.Link(trace.SpanContext(0x123, 0x456, is_remote=True), {"attempt": 2})
    with lib.start_as_current_span(
        "lib-call", kind=trace.SpanKind.CLIENT, links=[retried],
        attributes={"lib.start": "x", "lib.list": ["p", "q"], "traceroot.span.type": "llm"},
    ) as s:  # fmt: skip
        span_types.add("lib:" + type(s).__name__)
        s.set_attribute("lib.value", "v")
    try:
        with lib.start_as_current_span("lib-fail", start_time=1_700_000_000_000_000_000) as s:
            lib_fail_start.append(s.start_time)
            raise KeyError("missing")
    except KeyError:
        pass
    update_current_span(usage={"total_tokens": 7}, model="m-1", metadata={"k": "v"})
    return {"sum": x + y}

@observe(name="renamed")
def failing():
    update_current_span(name="renamed-later")
    raise ValueError("bad input")

@observe
def numbers(n):
    yield from range(n)

@observe(type="agent")
def agent():
    tool(1)
    try:
        failing()
    except ValueError:
        pass
    return list(numbers(3))

with using_attributes(user_id="u1", session_id="s1", tags=["ctx"], metadata={"m": 1}):
    agent()
print(json.dumps({
    "span_types": sorted(span_types),
    "app_spans": sorted(s.name for s in app_exporter.get_finished_spans()),
    "lib_fail_start": lib_fail_start[0],
}))
"""

NAMES = ["agent", "lib-call", "lib-fail", "numbers", "renamed-later", "tool"]


def _comparable(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> dict[str, Any]:
    """What must match between runs: everything but ids and clock readings."""
    attributes = dict(span.attributes)
    attributes.pop("traceroot.span.ids_path", None)
    events = []
    for event in span.events:
        event_attributes = dict(event.attributes)
        if "exception.stacktrace" in event_attributes:  # line numbers are the same; paths too
            event_attributes["exception.stacktrace"] = event_attributes[
                "exception.stacktrace"
            ].splitlines()[-1]
        events.append((event.name, event_attributes))
    parent = by_id[span.parent_span_id].name if span.parent_span_id else None
    return {
        "name": span.name,
        "parent": parent,
        "kind": span.kind,
        "attributes": attributes,
        "events": events,
        "status": (span.status_code, span.status_message),
        "resource": {k: v for k, v in span.resource.items() if k != "service.instance.id"},
        "scope": (span.scope_name, span.scope_version),
        "links": span.links,
    }


def _run(run_python: Any, receiver: OTLPReceiver, env: dict[str, str], mode: str) -> Any:
    receiver.clear()
    proc, spans = run_traced(
        run_python, receiver, {**env, "MODE": mode}, WORKLOAD, expect=len(NAMES)
    )
    assert proc.stderr == ""
    by_id = {s.span_id: s for s in spans}
    received = sorted((_comparable(s, by_id) for s in spans), key=lambda s: s["name"])
    for span in spans:  # the ids path is the chain of parent ids, in both modes
        chain = []
        parent = span.parent_span_id
        while parent is not None:
            chain.insert(0, parent)
            parent = by_id[parent].parent_span_id
        assert span.attributes["traceroot.span.ids_path"] == chain
    return stdout_json(proc), received


@pytest.fixture(params=VERSIONS)
def python(request: pytest.FixtureRequest) -> str:
    return _python_for(request.param)


def test_light_spans_send_what_sdk_spans_send(
    python: str, tmp_path: Path, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    def run_with(script: str, *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "workload.py"
        path.write_text(script)
        return subprocess.run(
            [python, str(path)],
            env=clean_env(env),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    light_out, light = _run(run_with, receiver, traceroot_env, "light")
    sdk_out, sdk = _run(run_with, receiver, traceroot_env, "sdk")

    assert light_out["span_types"] == ["LightSpan", "lib:LightSpan"]
    assert sdk_out["span_types"] == ["_Span", "lib:_Span"]  # the SDK's own span class
    assert [s["name"] for s in light] == NAMES
    assert light == sdk

    lib_call = next(s for s in light if s["name"] == "lib-call")
    assert lib_call["kind"] == "CLIENT" and lib_call["parent"] == "tool"
    assert lib_call["attributes"]["lib.list"] == ["p", "q"]
    assert lib_call["attributes"]["traceroot.span.path"] == ["agent", "tool", "lib-call"]
    assert lib_call["attributes"]["traceroot.span.type"] == "llm"  # the library's own kept
    assert [link["attributes"] for link in lib_call["links"]] == [{"attempt": 2}]
    lib_fail = next(s for s in light if s["name"] == "lib-fail")
    assert lib_fail["status"] == ("ERROR", "KeyError: 'missing'")
    assert lib_fail["events"][0][1]["exception.type"] == "KeyError"
    assert light_out["lib_fail_start"] == sdk_out["lib_fail_start"] == 1_700_000_000_000_000_000

    tool = next(s for s in light if s["name"] == "tool")
    assert tool["attributes"]["custom.list"] == ["a", "b"]
    assert tool["attributes"]["custom.ints"] == [1, 2, 3]
    assert tool["attributes"]["traceroot.span.tags"] == ["t1", "t2"]
    assert tool["attributes"]["tag.tags"] == ["ctx"]
    assert tool["events"] == [("checkpoint", {"step": 3, "ok": True})]
    assert [link["attributes"] for link in tool["links"]] == [{"why": "retry"}]
    failing = next(s for s in light if s["name"] == "renamed-later")
    assert failing["status"] == ("ERROR", "ValueError: bad input")
    assert failing["events"][0][1]["exception.type"] == "ValueError"


def test_a_processor_added_later_sees_every_decorator_span(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    out, _ = _run(run_python, receiver, traceroot_env, "sdk")
    assert out["app_spans"] == sorted(NAMES)


SAMPLED = r"""
import json
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
import traceroot
from traceroot import observe

traceroot.initialize()

@observe
def work():
    return trace.get_current_span().is_recording()

# A parent that was not sampled (e.g. an incoming traceparent with flags 00).
unsampled = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0)))
with trace.use_span(unsampled):
    under_unsampled = work()
print(json.dumps({"root": work(), "under_unsampled": under_unsampled}))
"""


def test_an_unsampled_parent_is_respected(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, SAMPLED, expect=1)
    assert stdout_json(proc) == {"root": True, "under_unsampled": False}
    assert len(spans) == 1 and spans[0].parent_span_id is None


def test_the_sampler_from_the_environment_is_respected(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    env = {**traceroot_env, "OTEL_TRACES_SAMPLER": "always_off"}
    proc, spans = run_traced(run_python, receiver, env, SAMPLED, expect=0)
    assert stdout_json(proc) == {"root": False, "under_unsampled": False}
    assert spans == []


INVALID = r"""
from opentelemetry import trace
import traceroot
from traceroot import observe

traceroot.initialize()

@observe
def work():
    span = trace.get_current_span()
    span.set_attribute("bad.mixed", [1, "a"])
    span.set_attribute("bad.object", object())
    span.set_attribute("good", "yes")
    return "done"

print(work())
"""


def test_an_invalid_attribute_is_dropped_with_a_warning(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, INVALID, expect=1)
    assert proc.stdout == "done\n"
    assert len(warnings_in(proc.stderr, "is not a valid attribute value")) == 2
    assert "of type list" in proc.stderr and "of type object" in proc.stderr
    assert "object at 0x" not in proc.stderr  # the value itself is never printed
    attributes = spans[0].attributes
    assert attributes["good"] == "yes"
    assert "bad.mixed" not in attributes and "bad.object" not in attributes


LIMITED = r"""
from opentelemetry import trace
import traceroot
from traceroot import observe

traceroot.initialize()

@observe
def work():
    trace.get_current_span().set_attribute("custom", "abcdefghij")
    return type(trace.get_current_span()).__name__

print(work())
"""


def test_opentelemetry_span_limits_apply_to_light_spans(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    env = {**traceroot_env, "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "4"}
    proc, spans = run_traced(run_python, receiver, env, LIMITED, expect=1)
    assert proc.stdout == "LightSpan\n"  # no OTEL_* variable turns light spans off
    assert spans[0].attributes["custom"] == "abcd"  # the standard limit, applied as the SDK does


# Past every default limit (128 attributes, events, links, attributes per event/link).
CROWDED = r"""
import os
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import traceroot
from traceroot import observe

traceroot.initialize()
if os.environ["MODE"] == "sdk":
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

@observe
def crowded():
    span = trace.get_current_span()
    for i in range(200):
        span.set_attribute(f"a{i}", i)
    span.set_attribute("a150", "updated")
    for i in range(200):
        span.add_event(f"e{i}", {f"k{j}": j for j in range(3 if i else 150)}, timestamp=i + 1)
    for i in range(200):
        span.add_link(trace.SpanContext(0xABC, i + 1, is_remote=True), {"n": i})
    print(type(span).__name__)

crowded()
"""


@pytest.mark.parametrize("limits", [{}, {"OTEL_SPAN_EVENT_COUNT_LIMIT": "5"}])
def test_light_spans_obey_span_limits_as_sdk_spans_do(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str], limits: dict
) -> None:
    sent = {}
    for mode in ("light", "sdk"):
        receiver.clear()
        env = {**traceroot_env, **limits, "MODE": mode}
        proc, spans = run_traced(run_python, receiver, env, CROWDED, expect=1)
        assert proc.stdout == ("LightSpan\n" if mode == "light" else "_Span\n"), proc.stderr
        (span,) = spans
        sent[mode] = (
            span.attributes,
            [(e.name, e.attributes) for e in span.events],
            [(link["span_id"], link["attributes"]) for link in span.links],
            span.dropped,
            span.dropped_event_attributes,
        )
    assert sent["light"] == sent["sdk"]
    attributes, events, links, dropped, _ = sent["light"]
    assert len(attributes) == 128 and attributes["a150"] == "updated"
    # The oldest attributes gave way, but not the ones the backend places the span by.
    assert attributes["traceroot.span.path"] == ["crowded"]
    assert attributes["traceroot.sdk.name"] == "traceroot-py"
    assert "a0" not in attributes and attributes["a199"] == 199
    max_events = int(limits.get("OTEL_SPAN_EVENT_COUNT_LIMIT", 128))
    assert len(events) == max_events and events[-1][0] == "e199"  # the newest kept
    assert len(links) == 128
    assert dropped[1:] == (200 - max_events, 72) and dropped[0] > 0


# A library's span with an attribute per message part, as OpenInference flattens a long chat:
# past the 128-attribute limit, the oldest attributes give way, and those are ours.
LONG_CHAT = r"""
import os
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import traceroot
from traceroot import observe, using_attributes

traceroot.initialize()
if os.environ["MODE"] == "sdk":
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
library = trace.get_tracer("some.llm.library")

@observe(type="agent")
def agent():
    with using_attributes(user_id="u-7", session_id="s-7"):
        with library.start_as_current_span("ChatCompletion") as span:
            for i in range(100):
                span.set_attribute(f"llm.input_messages.{i}.message.role", "user")
                span.set_attribute(f"llm.input_messages.{i}.message.content", f"m{i}")
            print(type(span).__name__)

agent()
"""


@pytest.mark.parametrize("mode", ["light", "sdk"])
def test_a_library_span_past_the_attribute_limit_keeps_its_place_in_the_trace(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str], mode: str
) -> None:
    env = {**traceroot_env, "MODE": mode}
    proc, spans = run_traced(run_python, receiver, env, LONG_CHAT, expect=2)
    assert proc.stdout == ("LightSpan\n" if mode == "light" else "_Span\n"), proc.stderr
    by_name = {span.name: span for span in spans}
    chat, agent = by_name["ChatCompletion"], by_name["agent"]
    attributes = chat.attributes
    assert len(attributes) == 128
    assert attributes["traceroot.span.path"] == ["agent", "ChatCompletion"]
    assert attributes["traceroot.span.ids_path"] == [agent.span_id]
    assert attributes["traceroot.sdk.name"] == "traceroot-py"
    assert attributes["user.id"] == "u-7" and attributes["session.id"] == "s-7"
    # The newest message parts are kept, the oldest counted as dropped.
    assert attributes["llm.input_messages.99.message.content"] == "m99"
    assert "llm.input_messages.0.message.role" not in attributes
    assert chat.dropped[0] == 200 + len([k for k in attributes if not k.startswith("llm.")]) - 128


# OpenTelemetry's SDK raises on a span limit that is not a count: `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`
# as `opentelemetry.sdk.trace` is imported (so `from traceroot import observe` failed), the others
# as a provider is made (so nothing was traced).
BAD_LIMIT = r"""
import os, sys
import traceroot
from traceroot import observe

if os.environ.get("SDK_PATH"):
    traceroot.initialize()

@observe
def work():
    return 2

print(work(), os.environ.get(sys.argv[1], "<gone>"))
"""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "abc"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-5"),
        ("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "1e3"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "unset"),
    ],
)
@pytest.mark.parametrize("path", ["sdk", "launcher"])
def test_a_span_limit_the_sdk_cannot_read_is_named_and_the_program_traced(
    run_python: Any,
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    tmp_path: Path,
    variable: str,
    value: str,
    path: str,
) -> None:
    env = {**traceroot_env, variable: value}
    if path == "sdk":
        proc = run_python(BAD_LIMIT, args=[variable], env={**env, "SDK_PATH": "1"})
    else:
        script = tmp_path / "bad_limit.py"
        script.write_text(BAD_LIMIT)
        proc = launch(["python", str(script), variable], program_env(env), tmp_path)
    assert proc.returncode == 0 and proc.stdout == "2 <gone>\n", proc.stderr
    warning = (
        f"traceroot: invalid {variable}='{value}' (expected an integer >= 0, or empty for no "
        "limit); OpenTelemetry's SDK would fail on it, so it is taken out of this process's "
        f"environment and the default applies. Fix or unset {variable}.\n"
    )
    assert proc.stderr == warning
    assert [span.name for span in receiver.wait_for_spans(1)] == ["work"]


def test_an_empty_span_limit_is_no_limit_and_kept(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    variable = "OTEL_SPAN_EVENT_COUNT_LIMIT"
    env = {**traceroot_env, variable: "", "SDK_PATH": "1"}
    proc = run_python(BAD_LIMIT, args=[variable], env=env)
    assert proc.returncode == 0 and proc.stdout == "2 \n" and proc.stderr == "", proc.stderr
    assert [span.name for span in receiver.wait_for_spans(1)] == ["work"]
