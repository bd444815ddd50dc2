"""One LLM call, one LLM span: the yielding tracers of `_integrations.duplicates`, in process."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from traceroot._integrations import Integration
from traceroot._integrations.duplicates import yield_duplicates
from traceroot._integrations.registry import OI


def test_a_duplicate_steps_aside_only_under_the_covering_span() -> None:
    # In process, with OpenInference's tracer wrapping the yielding one as instrumentors do.
    from openinference.instrumentation import OITracer, TraceConfig
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    active: set[Integration] = set()
    yield_duplicates(provider, active.__contains__)
    try:
        covering = OITracer(provider.get_tracer(f"{OI}.litellm"), TraceConfig())
        inner = OITracer(provider.get_tracer(f"{OI}.openai"), TraceConfig())
        assert inner.id_generator is not provider.id_generator  # OpenInference's own, still
        with covering.start_as_current_span("outer"), inner.start_as_current_span("kept"):
            pass  # the covering integration is not active: nothing steps aside
        active.add(Integration.LITELLM)
        with inner.start_as_current_span("alone"):
            pass
        with covering.start_as_current_span("outer2") as outer:
            with inner.start_as_current_span("duplicate") as duplicate:
                assert not duplicate.is_recording()
                current = trace_api.get_current_span().get_span_context()
                assert current.span_id == outer.get_span_context().span_id
                with provider.get_tracer("http").start_as_current_span("child"):
                    pass
    finally:
        yield_duplicates(None)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"outer", "kept", "alone", "outer2", "child"}
    assert finished["child"].parent is not None
    assert finished["child"].parent.span_id == finished["outer2"].context.span_id
    assert "get_tracer" not in vars(provider)


def test_a_span_made_from_the_covering_library_steps_aside() -> None:
    """The LangChain cover: an openai span started from langchain_openai code is dropped."""
    import types

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield_duplicates(provider, {Integration.LANGCHAIN}.__contains__)
    try:
        tracer = provider.get_tracer(f"{OI}.openai")
        fake = types.ModuleType("langchain_openai.chat_models")
        exec(
            "def call(tracer):\n"
            "    with tracer.start_as_current_span('from-langchain') as span:\n"
            "        return span.is_recording()\n",
            fake.__dict__,
        )
        with provider.get_tracer("app").start_as_current_span("root"):
            recorded_inside = fake.call(tracer)
            with tracer.start_as_current_span("direct") as direct:
                recorded_direct = direct.is_recording()
    finally:
        yield_duplicates(None)
    assert (recorded_inside, recorded_direct) == (False, True)
    assert {s.name for s in exporter.get_finished_spans()} == {"root", "direct"}
    assert "get_tracer" not in vars(provider)


@pytest.mark.parametrize(
    ("integration", "scope"),
    [(Integration.OPENAI_AGENTS, f"{OI}.openai_agents"), (Integration.AGNO, f"{OI}.agno")],
)
def test_the_openai_span_steps_aside_under_a_framework_llm_span(
    integration: Integration, scope: str
) -> None:
    """Under the framework's LLM span only; under its tool span (a tool's own call) it stays."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield_duplicates(provider, {integration}.__contains__)
    try:
        framework = provider.get_tracer(scope)
        openai = provider.get_tracer(f"{OI}.openai")
        recorded = {}
        for kind in ("LLM", "TOOL"):
            attributes = {"openinference.span.kind": kind}
            with framework.start_as_current_span(kind, attributes=attributes):
                with openai.start_as_current_span(f"openai under {kind}") as span:
                    recorded[kind] = span.is_recording()
    finally:
        yield_duplicates(None)
    assert recorded == {"LLM": False, "TOOL": True}
    assert {s.name for s in exporter.get_finished_spans()} == {"LLM", "TOOL", "openai under TOOL"}


def test_a_span_named_as_no_call_steps_aside() -> None:
    """LlamaIndex's request builder, which OpenInference marks LLM, leaves no span."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield_duplicates(provider, {Integration.LLAMA_INDEX}.__contains__)
    try:
        tracer = provider.get_tracer(f"{OI}.llama_index")
        with tracer.start_as_current_span("step") as step:
            builder = tracer.start_span("OpenAI._prepare_chat_with_tools")
            assert builder.get_span_context().span_id == step.get_span_context().span_id
            builder.end()
            with tracer.start_as_current_span("OpenAI.astream_chat") as call:
                assert call.is_recording()
    finally:
        yield_duplicates(None)
    assert {s.name for s in exporter.get_finished_spans()} == {"step", "OpenAI.astream_chat"}


def test_google_adk_own_spans_step_aside_under_openinference_ones() -> None:
    """ADK's invocation and agent spans under OpenInference's step aside, children kept; the
    google-genai span steps aside under ADK's ``call_llm`` only, not under the agent."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import use_span

    provider, exporter = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield_duplicates(provider, {Integration.GOOGLE_ADK}.__contains__)
    try:
        oi = provider.get_tracer(f"{OI}.google_adk")
        adk = provider.get_tracer("gcp.vertex.agent")
        genai = provider.get_tracer(f"{OI}.google_genai")
        with oi.start_as_current_span("invocation [app]"):
            with adk.start_as_current_span("invocation") as adk_invocation:
                assert not adk_invocation.is_recording()
            with oi.start_as_current_span("agent_run [agent]") as agent:
                invoke = adk.start_span("invoke_agent agent")  # as ADK 2 starts it
                assert not invoke.is_recording()
                assert invoke.get_span_context().span_id == agent.get_span_context().span_id
                with use_span(invoke, end_on_exit=True):  # ADK makes its agent span current
                    with genai.start_as_current_span("GenerateContent") as call:
                        assert call.is_recording()  # schema 2: the call's only LLM span
                    with adk.start_as_current_span("call_llm"):  # schema 1: ADK's LLM span
                        with genai.start_as_current_span("under call_llm") as repeat:
                            assert not repeat.is_recording()
                            with provider.get_tracer("http").start_as_current_span("POST"):
                                pass
    finally:
        yield_duplicates(None)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {
        "invocation [app]",
        "agent_run [agent]",
        "GenerateContent",
        "call_llm",
        "POST",
    }
    post, call_llm = finished["POST"], finished["call_llm"]
    assert post.parent is not None and post.parent.span_id == call_llm.context.span_id
    assert call_llm.parent is not None
    assert call_llm.parent.span_id == finished["agent_run [agent]"].context.span_id
