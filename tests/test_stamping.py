"""Span paths: a child finds its parent's path even when only the parent's span context
is in its context, as instrumentors and thread hand-offs often pass it."""

from __future__ import annotations

from typing import Any

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import run_traced

HANDOFF = r"""
import os, threading
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan
import traceroot
from traceroot import observe

traceroot.initialize()
if os.environ["MODE"] == "sdk":  # a second processor: SDK spans instead of light ones
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

@observe
def node():
    with trace.get_tracer("lib").start_as_current_span("lib-call"):
        pass

@observe(type="agent")
def agent():
    only_the_context = NonRecordingSpan(trace.get_current_span().get_span_context())

    def worker():
        with trace.use_span(only_the_context):
            node()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()

agent()
"""


@pytest.mark.parametrize("mode", ["light", "sdk"])
def test_a_parent_known_only_by_its_context_keeps_the_path(
    mode: str, run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    _, spans = run_traced(run_python, receiver, {**traceroot_env, "MODE": mode}, HANDOFF, 3)
    agent, node, lib = spans.one("agent"), spans.one("node"), spans.one("lib-call")
    assert node.attributes["traceroot.span.path"] == ["agent", "node"]
    assert node.attributes["traceroot.span.ids_path"] == [agent.span_id]
    assert lib.attributes["traceroot.span.path"] == ["agent", "node", "lib-call"]
    assert lib.attributes["traceroot.span.ids_path"] == [agent.span_id, node.span_id]


# Stamping an instrumentor's SDK span writes our (valid) values past the SDK's per-value
# check: the outcome must be what the SDK's own setter gives, under every limit.
@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"max_attributes": 4},  # no room for all: the SDK's setter, which drops the oldest
        {"max_attribute_length": 3},  # values bounded: the SDK's setter, which cuts them
    ],
)
def test_stamping_fast_path_gives_what_the_sdk_setter_gives(limits: dict[str, int]) -> None:
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from traceroot._compat import add_valid_attributes

    tracer = TracerProvider(span_limits=SpanLimits(**limits)).get_tracer("lib")
    stamped = {"a": "one", "path": ("x", "y"), "kept": "value", "b": "two"}
    ours = tracer.start_span("s", attributes={"kept": "old", "lib": "its own"})
    theirs = tracer.start_span("s", attributes={"kept": "old", "lib": "its own"})
    add_valid_attributes(ours, dict(stamped))
    theirs.set_attributes(dict(stamped))
    for span in (ours, theirs):
        span.end()
    assert list(ours.attributes.items()) == list(theirs.attributes.items())
    assert ours.dropped_attributes == theirs.dropped_attributes
    if not limits:  # the fast path ran: a set key moved to the end, as the SDK moves it
        assert list(ours.attributes)[-2:] == ["kept", "b"]


def test_stamping_an_ended_span_adds_nothing() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from traceroot._compat import add_valid_attributes

    span = TracerProvider().get_tracer("lib").start_span("s")
    span.end()
    add_valid_attributes(span, {"late": "value"})
    assert "late" not in (span.attributes or {})
