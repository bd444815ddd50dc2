"""Agent frameworks on their real libraries, under ``traceroot-run`` with no code change.

Each program imports only its framework and drives it as its users write code,
against the loopback fake provider (``fake_providers.py``); its spans are read
from the loopback OTLP receiver. Asserted on what crossed the wire: one trace
per run; the framework's agent, LLM and tool spans nested as a user would draw
them; model name and token counts on every LLM span, streaming included;
exactly one LLM span per provider request.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from fake_providers import COMPLETION_TOKENS, PROMPT_TOKENS, REPLY, FakeProviders
from otlp_receiver import OTLPReceiver, ReceivedSpan
from sdk_helpers import Spans
from test_launcher import launcher, program_env

HTTPX = "opentelemetry.instrumentation.httpx"


def _requires(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def kind(span: ReceivedSpan) -> str | None:
    value = span.attributes.get("openinference.span.kind")
    return str(value) if value is not None else None


def run_framework(
    tmp_path: Path,
    traceroot_env: Mapping[str, str],
    receiver: OTLPReceiver,
    program: str,
    *,
    expect_output: str,
    python: str = sys.executable,
    args: Sequence[str] = (),
) -> tuple[Spans, list[tuple[str, dict]]]:
    """Run ``program`` (argv[1]: the fake provider's URL, then ``args``) under the
    traceroot-run of ``python``.

    Returns its spans and the provider requests it made; asserts it exited 0 printing
    ``expect_output`` and nothing of ours on stderr.
    """
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(program))
    with FakeProviders() as fake:
        proc = subprocess.run(
            [*launcher(python), "python", str(script), fake.url, *args],
            env=program_env(traceroot_env, python),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        requests = fake.requests
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expect_output, proc.stdout
    assert "traceroot" not in proc.stderr, proc.stderr
    return Spans(receiver.wait_for_spans(1, timeout=5)), requests


def assert_one_trace(spans: Spans) -> ReceivedSpan:
    """All spans in one trace under one root; the root."""
    assert len({s.trace_id for s in spans}) == 1, [(s.name, s.trace_id) for s in spans]
    (root,) = [s for s in spans if s.parent_span_id is None]
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s is not root)
    return root


def assert_llm_spans(spans: Spans, model: str, calls: int) -> list[ReceivedSpan]:
    """Exactly ``calls`` LLM spans, each with the model and the fake's token counts."""
    llms = [s for s in spans if kind(s) == "LLM"]
    assert len(llms) == calls, [(s.name, s.scope_name) for s in llms]
    for llm in llms:
        attrs = llm.attributes
        assert str(attrs["llm.model_name"]).startswith(model), attrs
        assert attrs["llm.token_count.prompt"] == PROMPT_TOKENS, (llm.name, attrs)
        assert attrs["llm.token_count.completion"] == COMPLETION_TOKENS, (llm.name, attrs)
    return llms


# -- LangChain: the HTTP request of an LLM call nests under that call ---------------------


@_requires("langchain_openai", "opentelemetry.instrumentation.httpx")
def test_langchain_http_client_spans_nest_under_their_llm_span(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from traceroot import observe
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(model="gpt-4o-mini", base_url=sys.argv[1] + "/v1", api_key="k",
                         max_retries=0, stream_usage=True)
        chain = ChatPromptTemplate.from_messages([("user", "Say {what}")]) | llm

        @observe(name="agent", type="agent")
        async def agent():
            first = chain.invoke({"what": "hello"}).content
            second = (await llm.ainvoke("Say hello")).content
            streamed = "".join(chunk.content for chunk in llm.stream("Say hello"))
            return {first, second, streamed}

        print(asyncio.run(agent()))
        """
    spans, requests = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY})
    )
    root = assert_one_trace(spans)
    assert root.name == "agent"
    llms = assert_llm_spans(spans, "gpt-4o-mini", calls=len(requests))
    assert len(requests) == 3
    assert all(s.scope_name == "openinference.instrumentation.langchain" for s in llms)
    http = [s for s in spans if s.scope_name == HTTPX]
    assert len(http) == 3, spans.names()
    # Each request under the LLM span of the call that made it, one each: never the agent.
    assert sorted(s.parent_span_id or "" for s in http) == sorted(s.span_id for s in llms)


@_requires("langchain_openai")
def test_a_langchain_stream_read_half_way_is_no_error_and_errors_print_on_one_line(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import sys
        from langchain_openai import ChatOpenAI
        from traceroot import observe

        def llm(model):
            return ChatOpenAI(model=model, base_url=sys.argv[1] + "/v1", api_key="k",
                              max_retries=0)

        @observe(name="agent", type="agent")
        def agent():
            first = next(iter(llm("gpt-4o-mini").stream("Say hello"))).content  # then stop
            try:
                llm("fail-500").invoke("Say hello")
            except Exception as exc:
                return first, type(exc).__name__
            return first, None

        print(agent())
        """
    env = {**traceroot_env, "TRACEROOT_CONSOLE": "true"}
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(program))
    with FakeProviders() as fake:
        proc = subprocess.run(
            [*launcher(), "python", str(script), fake.url],
            env=program_env(env, sys.executable),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    spans = Spans(receiver.wait_for_spans(3, timeout=5))
    streamed, failed = sorted((s for s in spans if kind(s) == "LLM"), key=lambda s: s.start_ns)
    # LangChain reports the stream's GeneratorExit as the run's error: a read stopped early
    # is no failed call, and the trace is not one with an error.
    assert streamed.status_code != "ERROR", streamed.status_message
    assert failed.status_code == "ERROR"
    # The console tree shows the error, not LangChain's traceback run into it.
    (line,) = [
        line for line in proc.stderr.splitlines() if "ChatOpenAI [llm]" in line and "ERROR" in line
    ]
    assert "Error code: 500" in line and "Traceback" not in line, line
    assert "GeneratorExit" not in proc.stderr, proc.stderr


@_requires("langgraph", "langchain_core")
def test_what_a_langgraph_node_calls_nests_under_the_node(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    # LangChain's runs never become the current span: without their run's span as the
    # parent, the tool and the OpenAI call would be siblings of the graph, under the agent.
    program = """
        import sys
        from typing import TypedDict
        from langchain_core.runnables import RunnableLambda
        from langgraph.graph import END, START, StateGraph
        from openai import OpenAI
        from traceroot import observe

        client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=0)

        @observe(type="tool")
        def lookup(question):
            return "facts about " + question

        def ask(facts):  # no decorator: the OpenAI call alone
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": facts}]
            )
            return reply.choices[0].message.content

        class State(TypedDict, total=False):
            question: str
            facts: str
            answer: str

        def research(state):
            return {"facts": lookup(state["question"])}

        def answer(state):
            return {"answer": RunnableLambda(ask).invoke(state["facts"])}

        graph = StateGraph(State)
        graph.add_node("research", research)
        graph.add_node("answer", answer)
        graph.add_edge(START, "research")
        graph.add_edge("research", "answer")
        graph.add_edge("answer", END)
        app = graph.compile()

        @observe(name="agent", type="agent")
        def agent(question):
            result = app.invoke({"question": question})["answer"]
            lookup("afterwards")  # outside the graph: under the agent again
            return result

        print(agent("the weather"))
        """
    spans, requests = run_framework(tmp_path, traceroot_env, receiver, program, expect_output=REPLY)
    root = assert_one_trace(spans)
    assert root.name == "agent"
    assert len(requests) == 1
    by_id = {s.span_id: s for s in spans}

    def parent_name(span: ReceivedSpan) -> str | None:
        parent = by_id.get(span.parent_span_id or "")
        return parent.name if parent is not None else None

    inside, after = sorted(spans.named("lookup"), key=lambda s: s.start_ns)
    assert parent_name(inside) == "research", spans.names()
    assert parent_name(after) == "agent"
    (llm,) = assert_llm_spans(spans, "gpt-4o-mini", calls=1)
    assert parent_name(llm) == "ask", spans.names()
    assert parent_name(by_id[llm.parent_span_id or ""]) == "answer"


# -- Pydantic AI: its own spans, reshaped; the openai client's repeat steps aside -----------


@_requires("pydantic_ai", "openinference.instrumentation.pydantic_ai")
def test_pydantic_ai_agent_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from pydantic_ai import Agent
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        provider = OpenAIProvider(base_url=sys.argv[1] + "/v1", api_key="k")
        agent = Agent(OpenAIChatModel("gpt-4o-mini", provider=provider), name="weather_agent")

        @agent.tool_plain
        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        async def main():
            async with agent.run_stream("Weather in Paris?") as result:  # streamed
                return await result.get_output()

        print(asyncio.run(main()))
        """
    spans, requests = run_framework(tmp_path, traceroot_env, receiver, program, expect_output=REPLY)
    root = assert_one_trace(spans)
    assert kind(root) == "AGENT" and "weather_agent" in root.name
    assert len(requests) == 2  # the tool call, then the answer
    llms = assert_llm_spans(spans, "gpt-4o-mini", calls=2)
    (tool,) = [s for s in spans if kind(s) == "TOOL"]
    assert tool.attributes["tool.name"] == "weather"
    assert "Paris" in str(tool.attributes.get("input.value"))
    assert {s.parent_span_id for s in [*llms, tool]} == {root.span_id}
    first, second = sorted(llms, key=lambda s: s.start_ns)
    assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
    # The HTTP requests nest under the LLM spans; no second (openai client) LLM span.
    http = [s for s in spans if s.scope_name == HTTPX]
    assert sorted(s.parent_span_id or "" for s in http) == sorted(s.span_id for s in llms)
    assert not [s for s in spans if s.scope_name == "openinference.instrumentation.openai"]


def by_trace(spans: Spans) -> list[Spans]:
    """The spans grouped by trace, in the order the traces started."""
    traces: dict[str, Spans] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        traces.setdefault(span.trace_id, Spans()).append(span)
    return list(traces.values())


def ancestors(spans: Spans, span: ReceivedSpan) -> list[ReceivedSpan]:
    """The spans above ``span``, its parent first."""
    found = []
    while span.parent_span_id is not None:
        span = spans.by_id(span.parent_span_id)
        found.append(span)
    return found


def assert_http_under(spans: Spans, llms: list[ReceivedSpan]) -> None:
    """Each HTTP request directly under the LLM span of the call that made it, one each."""
    http = [s for s in spans if s.scope_name == HTTPX]
    assert sorted(s.parent_span_id or "" for s in http) == sorted(s.span_id for s in llms)


# -- OpenAI Agents: its own LLM span per call; the openai client's repeat steps aside -------


@_requires("agents", "openinference.instrumentation.openai_agents")
def test_openai_agents_agent_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, Runner,
                            function_tool, set_default_openai_client)
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=sys.argv[1] + "/v1", api_key="k")
        set_default_openai_client(client)

        @function_tool
        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        agent = Agent(name="weather_agent", instructions="Be brief.", model="gpt-4o-mini",
                      tools=[weather])
        # The same agent on Chat Completions; streamed usage must be asked for there.
        chat_agent = agent.clone(
            name="chat_agent", model=OpenAIChatCompletionsModel("gpt-4o-mini", client),
            model_settings=ModelSettings(include_usage=True))

        async def main():
            replies = {(await Runner.run(agent, "Weather in Paris?")).final_output}
            for each in (agent, chat_agent):  # streamed: Responses, then Chat Completions
                streamed = Runner.run_streamed(each, "Weather in Paris?")
                async for _ in streamed.stream_events():
                    pass
                replies.add(streamed.final_output)
            return replies

        print(asyncio.run(main()))
        """
    spans, requests = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY})
    )
    paths = [(path, bool(body.get("stream"))) for path, body in requests]
    assert paths == [
        *[("/v1/responses", False)] * 2,
        *[("/v1/responses", True)] * 2,
        *[("/v1/chat/completions", True)] * 2,
    ]
    runs = by_trace(spans)
    assert len(runs) == 3  # one trace per run
    for run, name in zip(runs, ["weather_agent", "weather_agent", "chat_agent"], strict=True):
        assert_one_trace(run)
        (agent,) = [s for s in run if kind(s) == "AGENT" and s.name == name]
        llms = assert_llm_spans(run, "gpt-4o-mini", calls=2)  # the tool call, then the answer
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.attributes["tool.name"] == "weather"
        assert "Paris" in str(tool.attributes.get("input.value"))
        assert all(agent in ancestors(run, s) for s in [*llms, tool])
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        assert_http_under(run, llms)
    assert not [s for s in spans if s.scope_name == "openinference.instrumentation.openai"]


# -- Bedrock: boto3's Converse and ConverseStream, in a tool loop the user writes ---------


@_requires("boto3", "openinference.instrumentation.bedrock")
def test_bedrock_converse_tool_loop_sync_and_streamed(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import json, sys
        import boto3
        from traceroot import observe

        MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
        client = boto3.client("bedrock-runtime", region_name="us-east-1",
                              endpoint_url=sys.argv[1], aws_access_key_id="k",
                              aws_secret_access_key="s")
        CITY = {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]}
        TOOLS = {"tools": [{"toolSpec": {"name": "weather", "description": "The weather.",
                                         "inputSchema": {"json": CITY}}}]}

        @observe(name="weather", type="tool")
        def weather(city):
            return f"sunny in {city}"

        def converse_stream(**request):
            text, use = "", None
            for event in client.converse_stream(**request)["stream"]:
                if "contentBlockStart" in event:
                    use = dict(event["contentBlockStart"]["start"]["toolUse"], input="")
                delta = event.get("contentBlockDelta", {}).get("delta", {})
                text += delta.get("text", "")
                if "toolUse" in delta:
                    use["input"] += delta["toolUse"]["input"]
            if use is not None:
                return [{"toolUse": dict(use, input=json.loads(use["input"]))}]
            return [{"text": text}]

        @observe(name="agent", type="agent")
        def agent(stream):
            messages = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
            while True:
                request = dict(modelId=MODEL, messages=messages, toolConfig=TOOLS)
                if stream:
                    content = converse_stream(**request)
                else:
                    content = client.converse(**request)["output"]["message"]["content"]
                messages.append({"role": "assistant", "content": content})
                uses = [block["toolUse"] for block in content if "toolUse" in block]
                if not uses:
                    return content[0]["text"]
                results = [{"toolResult": {"toolUseId": use["toolUseId"],
                                           "content": [{"text": weather(**use["input"])}]}}
                           for use in uses]
                messages.append({"role": "user", "content": results})

        print({agent(stream=False), agent(stream=True)})
        """
    spans, requests = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY})
    )
    assert [path.rsplit("/", 1)[1] for path, _ in requests] == [
        *["converse"] * 2,
        *["converse-stream"] * 2,
    ]
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run, operation in zip(runs, ["converse", "converse_stream"], strict=True):
        root = assert_one_trace(run)
        assert root.attributes["traceroot.span.type"] == "agent"
        llms = assert_llm_spans(run, "anthropic.claude-3-haiku", calls=2)
        assert {s.name for s in llms} == {f"bedrock.{operation}"}
        (tool,) = [s for s in run if s.attributes.get("traceroot.span.type") == "tool"]
        assert {s.parent_span_id for s in [*llms, tool]} == {root.span_id}
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        assert "Paris" in str(tool.attributes.get("traceroot.span.input"))


# -- DSPy: a ReAct agent with a tool, sync and async ---------------------------------------


@_requires("dspy", "openinference.instrumentation.dspy")
def test_dspy_react_agent_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        import dspy

        dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=sys.argv[1] + "/v1",
                                  api_key="k", cache=False))

        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        react = dspy.ReAct("question -> answer", tools=[weather])
        first = react(question="Weather in Paris?").answer
        second = asyncio.run(react.acall(question="Weather in Paris?")).answer
        print({first, second})
        """
    spans, requests = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY})
    )
    assert len(requests) == 6  # per run: the tool step, the finish step, the extraction
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run in runs:
        root = assert_one_trace(run)
        assert kind(root) == "CHAIN" and root.name.startswith("ReAct.")
        llms = assert_llm_spans(run, "gpt-4o-mini", calls=3)
        tools = sorted((s for s in run if kind(s) == "TOOL"), key=lambda s: s.start_ns)
        assert [s.name.split(".")[0] for s in tools] == ["weather", "finish"]
        assert "Paris" in str(tools[0].attributes.get("input.value"))
        assert {s.parent_span_id for s in tools} == {root.span_id}
        # Each LLM call inside the predictor step that made it, in turn with the tools.
        assert all(root in ancestors(run, s) and ancestors(run, s)[0] is not root for s in llms)
        steps = sorted([*llms, *tools], key=lambda s: s.start_ns)
        assert [kind(s) for s in steps] == ["LLM", "TOOL", "LLM", "TOOL", "LLM"]
        assert all(a.end_ns <= b.start_ns for a, b in zip(steps, steps[1:], strict=False))


@_requires("dspy", "openinference.instrumentation.dspy")
def test_dspy_usage_reading_comes_off_with_the_instrumentor() -> None:
    from dspy.clients.base_lm import BaseLM
    from opentelemetry.sdk.trace import TracerProvider

    from traceroot._integrations.adapters import DSPyInstrumentor

    original = vars(BaseLM)["update_history"]
    instrumentor = DSPyInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        assert vars(BaseLM)["update_history"] is not original
        assert instrumentor.is_instrumented_by_opentelemetry
    finally:
        instrumentor.uninstrument()
    assert vars(BaseLM)["update_history"] is original


# -- Agno: an agent with a tool, run and streamed; the openai client's repeat steps aside --

# No network from tests: Agno's telemetry off; litellm (which Agno's instrumentor imports
# with every agno.models module) reads its bundled price map instead of fetching one.
QUIET = {"AGNO_TELEMETRY": "false", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@_requires("agno", "openinference.instrumentation.agno")
def test_agno_agent_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from agno.agent import Agent
        from agno.models.openai import OpenAIChat

        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        model = OpenAIChat(id="gpt-4o-mini", base_url=sys.argv[1] + "/v1", api_key="k")
        agent = Agent(name="weather_agent", model=model, tools=[weather])

        async def streamed():
            text = ""
            async for event in agent.arun("Weather in Paris?", stream=True):
                if getattr(event, "event", "") == "RunContent" and event.content:
                    text += event.content
            return text

        print({agent.run("Weather in Paris?").content, asyncio.run(streamed())})
        """
    spans, requests = run_framework(
        tmp_path, {**traceroot_env, **QUIET}, receiver, program, expect_output=str({REPLY})
    )
    assert [bool(body.get("stream")) for _, body in requests] == [False, False, True, True]
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run, name in zip(runs, ["weather_agent.run", "weather_agent.arun"], strict=True):
        root = assert_one_trace(run)
        assert kind(root) == "AGENT" and root.name == name
        llms = assert_llm_spans(run, "gpt-4o-mini", calls=2)
        assert all(s.scope_name == "openinference.instrumentation.agno" for s in llms)
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.attributes["tool.name"] == "weather"
        assert "Paris" in str(tool.attributes.get("input.value"))
        assert {s.parent_span_id for s in [*llms, tool]} == {root.span_id}
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        assert_http_under(run, llms)


# -- LlamaIndex: a FunctionAgent with a tool ------------------------------------------------

# llama-index-llms-openai needs openai<3 and openai-agents openai>=3, so CI runs this test
# against a second environment holding LlamaIndex (see .ci/run); else this one, if it can.
LLAMA_INDEX_PYTHON = os.environ.get("TRACEROOT_TEST_LLAMA_INDEX_PYTHON")


def _importable(module: str) -> bool:
    try:  # find_spec imports the parent package, which may itself be missing
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(
    LLAMA_INDEX_PYTHON is None
    and not all(
        _importable(m)
        for m in ("llama_index.llms.openai", "openinference.instrumentation.llama_index")
    ),
    reason="no environment with llama-index-llms-openai (TRACEROOT_TEST_LLAMA_INDEX_PYTHON)",
)
def test_llama_index_function_agent_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from llama_index.core.agent.workflow import FunctionAgent
        from llama_index.llms.openai import OpenAI

        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        # The agent streams every call; usage in a stream must be asked for.
        llm = OpenAI(model="gpt-4o-mini", api_base=sys.argv[1] + "/v1", api_key="k",
                     additional_kwargs={"stream_options": {"include_usage": True}})
        agent = FunctionAgent(name="weather_agent", tools=[weather], llm=llm)

        async def main():
            first = str(await agent.run("Weather in Paris?"))
            handler = agent.run("Weather in Paris?")
            async for _ in handler.stream_events():
                pass
            return {first, str(await handler)}

        print(asyncio.run(main()))
        """
    spans, requests = run_framework(
        tmp_path,
        traceroot_env,
        receiver,
        program,
        expect_output=str({REPLY}),
        python=LLAMA_INDEX_PYTHON or sys.executable,
    )
    assert [bool(body.get("stream")) for _, body in requests] == [True] * 4
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run in runs:
        root = assert_one_trace(run)
        assert root.name == "FunctionAgent.run"
        # One LLM span per call, LlamaIndex's: not the openai client's, nor the request
        # builder OpenInference also marks LLM.
        llms = assert_llm_spans(run, "gpt-4o-mini", calls=2)
        assert {s.name for s in llms} == {"OpenAI.astream_chat"}
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.attributes["tool.name"] == "weather"
        assert "Paris" in str(tool.attributes.get("input.value"))
        steps = [ancestors(run, s)[0] for s in [*llms, tool]]
        assert {s.parent_span_id for s in steps} == {root.span_id}
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        # Each HTTP request inside the agent step that made it.
        http = [s for s in run if s.scope_name == HTTPX]
        assert sorted(s.parent_span_id or "" for s in http) == sorted(
            s.parent_span_id or "" for s in llms
        )


# -- CrewAI: a Crew of one Agent with a tool, run and streamed, native and through LiteLLM --

# crewai pins openai<3 and openai-agents needs openai>=3, so CI runs this test against a
# second environment holding CrewAI (see .ci/run); else this one, if it can.
CREWAI_PYTHON = os.environ.get("TRACEROOT_TEST_CREWAI_PYTHON")


@pytest.mark.skipif(
    CREWAI_PYTHON is None
    and not all(_importable(m) for m in ("crewai", "openinference.instrumentation.crewai")),
    reason="no environment with crewai (TRACEROOT_TEST_CREWAI_PYTHON)",
)
@pytest.mark.parametrize(
    ("route", "model", "llm_scope"),
    # CrewAI 1.x calls OpenAI models through its native provider (the openai client); a
    # provider it has no native one for, or is_litellm=True, goes through LiteLLM.
    [
        ("native", "gpt-4o-mini", "openinference.instrumentation.openai"),
        pytest.param(
            "litellm",
            "openai/gpt-4o-mini",
            "openinference.instrumentation.litellm",
            marks=pytest.mark.skipif(
                CREWAI_PYTHON is None
                and not all(
                    _importable(m) for m in ("litellm", "openinference.instrumentation.litellm")
                ),
                reason="litellm not installed",
            ),
        ),
    ],
)
def test_crewai_crew_agent_llm_and_tool_spans(
    tmp_path: Path,
    traceroot_env: dict[str, str],
    receiver: OTLPReceiver,
    route: str,
    model: str,
    llm_scope: str,
) -> None:
    program = """
        import atexit, sys

        # Every host the program looks up beyond loopback, written at exit (after CrewAI's
        # own exit-time flush, which is registered later).
        outside = []

        def audit(event, args):
            if event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "localhost"):
                outside.append(args[0])

        sys.addaudithook(audit)
        atexit.register(lambda: open("outside.txt", "w").write(repr(outside)))

        from crewai import LLM, Agent, Crew, Task
        from crewai.tools import tool

        @tool("weather")
        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        def crew(**options):
            if sys.argv[2] == "litellm":
                options.update(model="openai/gpt-4o-mini", is_litellm=True)
            llm = LLM(**{"model": "gpt-4o-mini", **options}, base_url=sys.argv[1] + "/v1",
                      api_key="k")
            agent = Agent(role="Forecaster", goal="Tell the weather", backstory="Brief.",
                          tools=[weather], llm=llm)
            task = Task(description="Weather in Paris?", expected_output="The weather.",
                        agent=agent)
            return Crew(agents=[agent], tasks=[task])

        print({crew().kickoff().raw, crew(stream=True).kickoff().raw})
        """
    # CrewAI's telemetry off the way that leaves ours on: CrewAI also obeys OTEL_SDK_DISABLED,
    # which turns off every OpenTelemetry SDK provider in the process, ours included. And
    # litellm reads its bundled price map instead of fetching one.
    env = {
        **traceroot_env,
        "CREWAI_DISABLE_TELEMETRY": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    spans, requests = run_framework(
        tmp_path,
        env,
        receiver,
        program,
        expect_output=str({REPLY}),
        python=CREWAI_PYTHON or sys.executable,
        args=[route],
    )
    assert (tmp_path / "outside.txt").read_text() == "[]"  # no telemetry sent
    assert [bool(body.get("stream")) for _, body in requests] == [False, False, True, True]
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run in runs:
        root = assert_one_trace(run)
        assert kind(root) == "CHAIN" and root.name.endswith(".kickoff")
        (agent,) = [s for s in run if kind(s) == "AGENT"]
        assert agent.name == "Forecaster._execute_core" and agent.parent_span_id == root.span_id
        # The LLM spans are the client's CrewAI drives (CrewAI's instrumentor makes none);
        # under LiteLLM, the openai client's span inside litellm's steps aside.
        llms = assert_llm_spans(run, model, calls=2)
        assert {s.scope_name for s in llms} == {llm_scope}
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.name == "weather.run"
        assert "Paris" in str(tool.attributes.get("input.value"))
        assert {s.parent_span_id for s in [*llms, tool]} == {agent.span_id}
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        assert_http_under(run, llms)
    # CrewAI's telemetry keeps a provider of its own: nothing of it reaches ours.
    assert not [s for s in spans if s.scope_name.startswith("crewai")]


# -- Claude Agent SDK: query() and a ClaudeSDKClient of two turns, against a fake CLI ------

CLAUDE_MODEL = "claude-sonnet-4-5"


def fake_claude(directory: Path) -> Path:
    """``fake_claude_cli.py`` as an executable ``claude`` in ``directory``."""
    cli = directory / "claude"
    source = (Path(__file__).parent / "fake_claude_cli.py").read_text()
    cli.write_text(f"#!{sys.executable}\n{source}")
    cli.chmod(0o755)
    return cli


@_requires("claude_agent_sdk", "openinference.instrumentation.claude_agent_sdk")
def test_claude_agent_sdk_agent_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    # The SDK is real; the CLI it drives (a Node program calling Anthropic) is the fake,
    # which runs the tool on the SDK's in-process MCP server as the CLI does.
    program = """
        import asyncio, dataclasses, sys
        from claude_agent_sdk import (ClaudeAgentOptions, ClaudeSDKClient, ResultMessage,
                                      create_sdk_mcp_server, query, tool)

        @tool("weather", "The weather in a city.", {"city": str})
        async def weather(args):
            return {"content": [{"type": "text", "text": f"sunny in {args['city']}"}]}

        options = ClaudeAgentOptions(
            cli_path=sys.argv[2], model="claude-sonnet-4-5",
            mcp_servers={"weather": create_sdk_mcp_server("weather", tools=[weather])},
            allowed_tools=["mcp__weather__weather"])

        async def main():
            replies = set()
            async for message in query(prompt="Weather in Paris?", options=options):
                if isinstance(message, ResultMessage):
                    replies.add(message.result)
            streamed = dataclasses.replace(options, include_partial_messages=True)
            async with ClaudeSDKClient(options=streamed) as client:
                for _ in range(2):  # two turns of one session
                    await client.query("Weather in Paris?")
                    async for message in client.receive_response():
                        if isinstance(message, ResultMessage):
                            replies.add(message.result)
            return replies

        print(asyncio.run(main()))
        """
    cli = fake_claude(tmp_path)
    spans, _ = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY}), args=[str(cli)]
    )
    runs = by_trace(spans)
    assert len(runs) == 3  # one trace per run and per turn
    names = ["ClaudeAgentSDK.query", *["ClaudeAgentSDK.ClaudeSDKClient.receive_response"] * 2]
    for run, name in zip(runs, names, strict=True):
        root = assert_one_trace(run)
        # The agent span holds the model and the turn's usage (two model calls): the SDK
        # sees no model call of its own, so there are no LLM spans.
        assert kind(root) == "AGENT" and root.name == name
        assert root.attributes["llm.model_name"] == CLAUDE_MODEL
        assert root.attributes["llm.token_count.prompt"] == 2 * PROMPT_TOKENS
        assert root.attributes["llm.token_count.completion"] == 2 * COMPLETION_TOKENS
        assert not [s for s in run if kind(s) == "LLM"]
        # The tool call, once: the in-process MCP server's own spans for it (and for its
        # handshake) stepped aside.
        (tool,) = [s for s in run if s is not root]
        assert kind(tool) == "TOOL" and tool.parent_span_id == root.span_id
        assert tool.attributes["tool.name"] == "mcp__weather__weather"
        assert "Paris" in str(tool.attributes.get("input.value"))
        assert "sunny in Paris" in str(tool.attributes.get("output.value"))
    # The CLI started by query() is handed the agent span's context (a CLI exporting its
    # own telemetry joins the trace); ClaudeSDKClient starts its CLI before any turn.
    query_agent = runs[0][0]
    first, _ = (tmp_path / "traceparent.txt").read_text().splitlines()
    assert first == f"00-{query_agent.trace_id}-{query_agent.span_id}-01"


@_requires("claude_agent_sdk", "openinference.instrumentation.claude_agent_sdk")
def test_claude_agent_sdk_context_forwarding_comes_off_with_the_instrumentor() -> None:
    from claude_agent_sdk._internal.query import Query
    from opentelemetry.sdk.trace import TracerProvider

    from traceroot._integrations.adapters import ClaudeAgentSDKInstrumentor

    names = ["receive_messages", "_handle_control_request", "_handle_sdk_mcp_request"]
    originals = [vars(Query)[name] for name in names]
    instrumentor = ClaudeAgentSDKInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        instrumentor.instrument(tracer_provider=TracerProvider())  # twice: wrapped once
        assert [vars(Query)[name].__wrapped__ for name in names] == originals
    finally:
        instrumentor.uninstrument()
    assert [vars(Query)[name] for name in names] == originals


# -- Agent Framework: its own spans, reshaped; the openai client's repeat steps aside ------


@_requires(
    "agent_framework.openai",
    "agent_framework_openai",
    "openinference.instrumentation.agent_framework",
)
def test_agent_framework_agent_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from agent_framework import Agent, tool
        from agent_framework.openai import OpenAIChatCompletionClient

        @tool
        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        client = OpenAIChatCompletionClient(model="gpt-4o-mini", base_url=sys.argv[1] + "/v1",
                                            api_key="k")
        agent = Agent(client=client, name="weather_agent", instructions="Be brief.",
                      tools=[weather])

        async def main():
            first = (await agent.run("Weather in Paris?")).text
            second = ""
            async for update in agent.run("Weather in Paris?", stream=True):
                second += update.text or ""
            return {first, second}

        print(asyncio.run(main()))
        """
    spans, requests = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY})
    )
    assert [bool(body.get("stream")) for _, body in requests] == [False, False, True, True]
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run in runs:
        root = assert_one_trace(run)
        assert kind(root) == "AGENT" and root.name == "invoke_agent weather_agent"
        llms = assert_llm_spans(run, "gpt-4o-mini", calls=2)
        assert all(s.scope_name == "agent_framework" for s in llms)
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.attributes["tool.name"] == "weather"
        assert {s.parent_span_id for s in [*llms, tool]} == {root.span_id}
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        assert_http_under(run, llms)
    assert not [s for s in spans if s.scope_name == "openinference.instrumentation.openai"]


@_requires("agent_framework", "openinference.instrumentation.agent_framework")
def test_agent_framework_reshaping_comes_off_with_the_instrumentor() -> None:
    from agent_framework import observability
    from opentelemetry.sdk.trace import TracerProvider

    from traceroot._integrations.adapters import AgentFrameworkInstrumentor

    original = vars(observability)["get_tracer"]
    instrumentor = AgentFrameworkInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        assert vars(observability)["get_tracer"] is not original
        instrumentor.instrument(tracer_provider=TracerProvider())  # twice: wrapped once
        assert vars(observability)["get_tracer"].__wrapped__ is original
    finally:
        instrumentor.uninstrument()
    assert vars(observability)["get_tracer"] is original


# -- AG2: two ConversableAgents and a registered tool, sync and async streamed -------------

# AG2 before 1.0 is imported as ``autogen`` (1.0 is a new package, ``ag2``); the LLM spans
# are the openai client's, which AG2 drives. Its ``openai`` extra pins openai<3, so the
# test extra installs the core package beside the openai client the other tests need.


@_requires("autogen", "openinference.instrumentation.ag2")
def test_ag2_conversable_agents_llm_and_tool_spans(
    tmp_path: Path, traceroot_env: dict[str, str], receiver: OTLPReceiver
) -> None:
    program = """
        import asyncio, sys
        from autogen import ConversableAgent, LLMConfig, register_function

        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        def agents(**options):
            config = LLMConfig({"api_type": "openai", "model": "gpt-4o-mini", "api_key": "k",
                                "base_url": sys.argv[1] + "/v1", **options}, cache_seed=None)
            assistant = ConversableAgent("assistant", system_message="Be brief.",
                                         llm_config=config)
            user = ConversableAgent("user", human_input_mode="NEVER", llm_config=False)
            register_function(weather, caller=assistant, executor=user,
                              description="The weather in a city.")
            return user, assistant

        # Two turns: the tool call and its result, then the answer.
        user, assistant = agents()
        first = user.initiate_chat(assistant, message="Weather in Paris?", max_turns=2)
        user, assistant = agents(stream=True)
        second = asyncio.run(
            user.a_initiate_chat(assistant, message="Weather in Paris?", max_turns=2))
        print({first.chat_history[-1]["content"], second.chat_history[-1]["content"]})
        """
    spans, requests = run_framework(
        tmp_path, traceroot_env, receiver, program, expect_output=str({REPLY})
    )
    assert [bool(body.get("stream")) for _, body in requests] == [False, False, True, True]
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    for run, method in zip(runs, ["initiate_chat", "a_initiate_chat"], strict=True):
        root = assert_one_trace(run)
        assert kind(root) == "AGENT" and root.name == f"user.{method}"
        llms = assert_llm_spans(run, "gpt-4o-mini", calls=2)
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.attributes["tool.name"] == "weather"
        assert "Paris" in str(tool.attributes.get("input.value"))
        # Each reply an AGENT span under the chat: the assistant's hold the LLM calls, the
        # user's the tool it executes.
        replies = [ancestors(run, s)[0] for s in [*llms, tool]]
        assert [s.name.split(".")[0] for s in replies] == ["assistant", "assistant", "user"]
        assert {kind(s) for s in replies} == {"AGENT"}
        assert {s.parent_span_id for s in replies} == {root.span_id}
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.end_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        assert_http_under(run, llms)


# -- Google ADK: an LlmAgent with a tool on Gemini, run and streamed; either schema -------

GENAI = "openinference.instrumentation.google_genai"


@_requires("google.adk", "openinference.instrumentation.google_adk")
@pytest.mark.parametrize(
    ("schema", "llm_name"),
    # ADK's telemetry schema 2 (its default) makes no span per model call: the google-genai
    # client's span is the LLM span. Schema 1 makes its own ("call_llm"), which is kept.
    [("2", None), ("1", "call_llm")],
)
def test_google_adk_agent_llm_and_tool_spans(
    tmp_path: Path,
    traceroot_env: dict[str, str],
    receiver: OTLPReceiver,
    schema: str,
    llm_name: str | None,
) -> None:
    program = """
        import asyncio, sys
        from google.adk.agents import LlmAgent
        from google.adk.agents.run_config import RunConfig, StreamingMode
        from google.adk.models import Gemini
        from google.adk.runners import Runner
        from google.adk.sessions import InMemorySessionService
        from google.genai import types

        def weather(city: str) -> str:
            \"\"\"The weather in a city.\"\"\"
            return f"sunny in {city}"

        agent = LlmAgent(name="weather_agent", instruction="Be brief.", tools=[weather],
                         model=Gemini(model="gemini-2.0-flash", base_url=sys.argv[1]))
        runner = Runner(agent=agent, app_name="weather", session_service=InMemorySessionService())

        async def ask(mode):
            session = await runner.session_service.create_session(app_name="weather", user_id="u")
            message = types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])
            text = ""
            async for event in runner.run_async(user_id="u", session_id=session.id,
                                                new_message=message,
                                                run_config=RunConfig(streaming_mode=mode)):
                if event.is_final_response() and event.content and event.content.parts:
                    text += "".join(part.text or "" for part in event.content.parts)
            return text

        async def main():
            return {await ask(StreamingMode.NONE), await ask(StreamingMode.SSE)}

        print(asyncio.run(main()))
        """
    env = {**traceroot_env, "GOOGLE_API_KEY": "k", "ADK_TELEMETRY_SCHEMA_VERSION_OPT_IN": schema}
    spans, requests = run_framework(tmp_path, env, receiver, program, expect_output=str({REPLY}))
    assert [path.rsplit(":", 1)[1] for path, _ in requests] == [
        *["generateContent"] * 2,
        *["streamGenerateContent?alt=sse"] * 2,
    ]
    runs = by_trace(spans)
    assert len(runs) == 2  # one trace per run
    streams = ["AsyncGenerateContent", "AsyncGenerateContentStream"]
    for run, genai_name in zip(runs, streams, strict=True):
        root = assert_one_trace(run)
        assert kind(root) == "CHAIN" and root.name == "invocation [weather]"
        # No second agent span (ADK's own), under either schema.
        (agent,) = [s for s in run if kind(s) == "AGENT"]
        assert agent.name == "agent_run [weather_agent]"
        llms = assert_llm_spans(run, "gemini-2.0-flash", calls=2)
        assert {s.name for s in llms} == {llm_name or genai_name}
        (tool,) = [s for s in run if kind(s) == "TOOL"]
        assert tool.name == "execute_tool weather"
        assert "Paris" in str(tool.attributes.get("input.value"))
        assert {s.parent_span_id for s in [*llms, tool]} == {agent.span_id}
        assert root in ancestors(run, agent)
        first, second = sorted(llms, key=lambda s: s.start_ns)
        assert first.start_ns <= tool.start_ns and tool.end_ns <= second.start_ns
        if llm_name is None:
            assert first.end_ns <= tool.start_ns
        else:  # ADK ends call_llm when the reply's stream closes, after the tool has run
            assert not [s for s in run if s.scope_name == GENAI]  # the client's stepped aside
