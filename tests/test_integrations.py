"""The LLM integrations, end to end: real client libraries, a fake provider, the real SDK.

Programs run in a subprocess (a fresh interpreter, so import hooks and laziness are
real) and send their spans to the loopback OTLP receiver.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunPython, clean_env
from fake_providers import COMPLETION_TOKENS, FAIL_MODEL, PROMPT_TOKENS, REPLY, FakeProviders
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import OTLPReceiver, ReceivedSpan

from traceroot import _integrations as integrations
from traceroot._integrations import REGISTRY, Integration, Spec

LIBRARIES = ("openai", "anthropic", "langchain_core", "google.genai")


def _run(run_python: RunPython, script: str, env: dict[str, str], *args: str) -> str:
    result = run_python(textwrap.dedent(script), args=args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def _llm_spans(receiver: OTLPReceiver) -> list[ReceivedSpan] | None:
    found = [s for s in receiver.spans if s.attributes.get("openinference.span.kind") == "LLM"]
    return found or None


def _output_text(span: ReceivedSpan) -> Any:
    attrs = span.attributes
    return attrs.get("llm.output_messages.0.message.content") or attrs.get(
        "llm.output_messages.0.message.contents.0.message_content.text"
    )


PROVIDERS_SCRIPT = """
    import asyncio, json, sys
    import traceroot
    from traceroot import Integration, using_attributes
    from traceroot import observe

    traceroot.initialize(integrations=[Integration.OPENAI, Integration.ANTHROPIC,
                                       Integration.LANGCHAIN, Integration.GOOGLE_GENAI])
    import anthropic, openai
    from google import genai

    URL, FAIL = sys.argv[1], sys.argv[2]
    MSGS = [{"role": "user", "content": "Say hello"}]
    oa = openai.OpenAI(base_url=URL + "/v1", api_key="k", max_retries=0)
    an = anthropic.Anthropic(base_url=URL, api_key="k", max_retries=0)
    gg = genai.Client(api_key="k", http_options={"base_url": URL})
    errors = {}

    def failing(name, call):
        @observe(name=name)
        def run():
            call()
        try:
            run()
        except Exception as exc:
            errors[name] = [type(exc).__module__.split(".")[0], getattr(exc, "status_code", None)]

    @observe(name="openai_sync")
    def openai_sync():
        return oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS)

    @observe(name="openai_async")
    async def openai_async():
        client = openai.AsyncOpenAI(base_url=URL + "/v1", api_key="k", max_retries=0)
        return await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)

    @observe(name="openai_stream")
    def openai_stream():
        stream = oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True,
                                            stream_options={"include_usage": True})
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    @observe(name="openai_stream_abandoned")
    def openai_stream_abandoned():
        stream = oa.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)
        next(iter(stream))
        stream.close()

    @observe(name="anthropic_sync")
    def anthropic_sync():
        return an.messages.create(model="claude-x", max_tokens=50, messages=MSGS)

    @observe(name="anthropic_async")
    async def anthropic_async():
        client = anthropic.AsyncAnthropic(base_url=URL, api_key="k", max_retries=0)
        return await client.messages.create(model="claude-x", max_tokens=50, messages=MSGS)

    @observe(name="anthropic_stream")
    def anthropic_stream():
        with an.messages.stream(model="claude-x", max_tokens=50, messages=MSGS) as stream:
            return "".join(stream.text_stream)

    @observe(name="gemini_sync")
    def gemini_sync():
        return gg.models.generate_content(model="gemini-x", contents="Say hello").text

    @observe(name="gemini_async")
    async def gemini_async():
        return (await gg.aio.models.generate_content(model="gemini-x", contents="Say hello")).text

    @observe(name="gemini_stream")
    def gemini_stream():
        chunks = gg.models.generate_content_stream(model="gemini-x", contents="Say hello")
        return "".join(c.text or "" for c in chunks)

    @observe(name="langchain_agent", type="agent")
    def langchain_agent():
        from langchain_core.language_models.fake_chat_models import FakeListChatModel
        from langchain_core.prompts import ChatPromptTemplate
        from langchain_core.tools import tool

        @tool
        def add(a: int, b: int) -> int:
            '''Add two numbers.'''
            return a + b

        chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | FakeListChatModel(
            responses=["use add"])
        chain.invoke({"q": "What is 2 + 3?"})
        return add.invoke({"a": 2, "b": 3})

    with using_attributes(user_id="user-1", session_id="sess-1"):
        openai_sync()
        asyncio.run(openai_async())
        assert openai_stream() == sys.argv[3]
        openai_stream_abandoned()
        anthropic_sync()
        asyncio.run(anthropic_async())
        assert anthropic_stream() == sys.argv[3]
        assert gemini_sync() == sys.argv[3]
        assert asyncio.run(gemini_async()) == sys.argv[3]
        assert gemini_stream() == sys.argv[3]
        assert langchain_agent() == 5
        failing("openai_error", lambda: oa.chat.completions.create(model=FAIL, messages=MSGS))
        failing("anthropic_error", lambda: an.messages.create(model=FAIL, max_tokens=5,
                                                              messages=MSGS))
    traceroot.shutdown()
    print(json.dumps(errors))
"""

LLM_SCENARIOS = {
    # observe span name -> (model, token counts expected)
    "openai_sync": ("gpt-4o-mini", True),
    "openai_async": ("gpt-4o-mini", True),
    "openai_stream": ("gpt-4o-mini", True),
    "openai_stream_abandoned": ("gpt-4o-mini", False),
    "anthropic_sync": ("claude-x", True),
    "anthropic_async": ("claude-x", True),
    "anthropic_stream": ("claude-x", True),
    "gemini_sync": ("gemini-x", True),
    "gemini_async": ("gemini-x", True),
    "gemini_stream": ("gemini-x", True),
}


@pytest.fixture(scope="module")
def provider_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[ReceivedSpan], dict[str, Any]]]:
    """Run the provider program once; every provider test reads its spans."""
    with OTLPReceiver() as receiver, FakeProviders() as fake:
        env = clean_env(
            {
                "TRACEROOT_API_KEY": "k",
                "TRACEROOT_HOST_URL": receiver.url,
                "TRACEROOT_FLUSH_INTERVAL": "0.2",
            }
        )
        path = tmp_path_factory.mktemp("providers") / "app.py"
        path.write_text(textwrap.dedent(PROVIDERS_SCRIPT))
        result = subprocess.run(
            [sys.executable, str(path), fake.url, FAIL_MODEL, REPLY],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=path.parent,
        )
        assert result.returncode == 0, result.stderr
        errors = json.loads(result.stdout.strip().splitlines()[-1])
        yield receiver.spans, errors


def _scenario(spans: list[ReceivedSpan], name: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    (parent,) = [s for s in spans if s.name == name and s.parent_span_id is None]
    return parent, _children(spans, parent)


@pytest.mark.parametrize("name", sorted(LLM_SCENARIOS))
def test_one_llm_span_under_the_observe_span(
    provider_run: tuple[list[ReceivedSpan], dict[str, Any]], name: str
) -> None:
    spans, _ = provider_run
    model, has_usage = LLM_SCENARIOS[name]
    parent, children = _scenario(spans, name)
    # One call, one span: no second span from the client library itself.
    assert len(children) == 1, [(c.name, c.scope_name) for c in children]
    (llm,) = children
    attrs = llm.attributes
    assert attrs["openinference.span.kind"] == "LLM"
    assert llm.trace_id == parent.trace_id
    assert attrs["llm.model_name"] == model
    assert attrs["llm.input_messages.0.message.role"] == "user"
    assert attrs["llm.input_messages.0.message.content"] == "Say hello"
    assert attrs["user.id"] == "user-1" and attrs["session.id"] == "sess-1"
    assert attrs["traceroot.span.path"] == [name, llm.name]
    assert attrs["traceroot.span.ids_path"] == [parent.span_id]
    assert attrs["traceroot.sdk.name"] == "traceroot-py"
    if has_usage:
        assert attrs["llm.token_count.prompt"] == PROMPT_TOKENS
        assert attrs["llm.token_count.completion"] == COMPLETION_TOKENS
        assert attrs["llm.output_messages.0.message.role"] in ("assistant", "model")
        assert _output_text(llm) == REPLY
    else:  # abandoned half-way: the span still ended, and was exported
        assert llm.end_ns >= llm.start_ns


@pytest.mark.parametrize("name", ["openai_error", "anthropic_error"])
def test_provider_error_reaches_the_app_and_the_span(
    provider_run: tuple[list[ReceivedSpan], dict[str, Any]], name: str
) -> None:
    spans, errors = provider_run
    library = name.split("_")[0]
    assert errors[name] == [library, 500]  # the client's own exception, unchanged
    _, (llm,) = _scenario(spans, name)
    assert llm.attributes["openinference.span.kind"] == "LLM"
    assert llm.status_code == "ERROR"
    assert any(e.name == "exception" for e in llm.events)


def test_langchain_chain_llm_and_tool(
    provider_run: tuple[list[ReceivedSpan], dict[str, Any]],
) -> None:
    spans, _ = provider_run
    agent, children = _scenario(spans, "langchain_agent")
    kinds = {c.attributes.get("openinference.span.kind"): c for c in children}
    assert set(kinds) == {"CHAIN", "TOOL"}
    assert kinds["TOOL"].attributes["tool.name"] == "add"
    (llm,) = [
        s
        for s in _children(spans, kinds["CHAIN"])
        if s.attributes.get("openinference.span.kind") == "LLM"
    ]
    assert llm.trace_id == agent.trace_id
    assert llm.attributes["llm.input_messages.0.message.content"] == "What is 2 + 3?"
    assert _output_text(llm) == "use add"
    assert llm.attributes["user.id"] == "user-1"
    assert llm.attributes["traceroot.span.path"] == [
        "langchain_agent",
        "RunnableSequence",
        llm.name,
    ]


def test_nothing_imported_until_the_program_does(
    run_python: RunPython,
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    providers: FakeProviders,
) -> None:
    script = """
        import sys
        import traceroot
        from traceroot import _integrations as integrations

        traceroot.auto_initialize()
        libraries = sys.argv[2].split(",")
        loaded = [name for name in libraries if name in sys.modules]
        waiting = {k.value: v for k, v in integrations.status().items()}
        print("LOADED", loaded, waiting["openai"], waiting["google_genai"])

        import openai
        client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="late", messages=[{"role": "user", "content": "x"}])
        print("AFTER", [name for name in libraries if name in sys.modules])
        traceroot.shutdown()
    """
    out = _run(run_python, script, traceroot_env, providers.url, ",".join(LIBRARIES))
    assert "LOADED [] waiting for import waiting for import" in out
    assert "AFTER ['openai']" in out
    (llm,) = receiver.wait_for(_llm_spans)
    assert llm.attributes["llm.model_name"] == "late"


def test_explicit_list_wins_over_auto_and_nothing_is_instrumented_twice(
    run_python: RunPython,
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    providers: FakeProviders,
) -> None:
    script = """
        import sys
        import traceroot
        from traceroot import _integrations as integrations

        traceroot.auto_initialize()      # what the launcher does: every installed one
        import openai                    # instrumented now, by the auto activation
        traceroot.initialize(integrations=["openai"])
        traceroot.initialize(integrations=["openai"])
        import anthropic                 # not named by the user: its hook was withdrawn
        print({k.value: v for k, v in integrations.status().items()})
        oa = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=0)
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        an = anthropic.Anthropic(base_url=sys.argv[1], api_key="k", max_retries=0)
        an.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        traceroot.shutdown()
    """
    result = run_python(textwrap.dedent(script), args=[providers.url], env=traceroot_env)
    assert result.returncode == 0, result.stderr
    assert "'openai': 'instrumented'" in result.stdout
    assert "'anthropic': 'not requested'" in result.stdout
    assert "already instrumented" not in result.stderr
    llm = receiver.wait_for(_llm_spans)
    assert [s.scope_name for s in llm] == ["openinference.instrumentation.openai"]


def test_otel_instrumentors_two_services_one_trace(
    run_python: RunPython,
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.fastapi")
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    script = """
        import sys, threading, time
        import traceroot
        from traceroot import _integrations as integrations

        traceroot.auto_initialize()
        from opentelemetry import trace
        integrations.activate_otel_instrumentors(trace.get_tracer_provider())
        assert "fastapi" not in sys.modules and "httpx" not in sys.modules

        import fastapi, httpx, uvicorn

        app = fastapi.FastAPI()

        @app.get("/work")
        def work() -> dict:
            return {"ok": True}

        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        serving = threading.Thread(target=server.run, daemon=True)
        serving.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]

        @traceroot.observe(name="client")
        def call() -> int:
            return httpx.get(f"http://127.0.0.1:{port}/work").status_code

        assert call() == 200
        server.should_exit = True
        serving.join(10)  # the server span ends in the server's thread: let it finish first
        traceroot.shutdown()
    """
    _run(run_python, script, traceroot_env)
    spans = receiver.wait_for(
        lambda rx: rx.spans if any(s.kind == "SERVER" for s in rx.spans) else None
    )
    (client,) = [s for s in spans if s.name == "client"]
    (http_client,) = [s for s in spans if s.kind == "CLIENT"]
    (server,) = [s for s in spans if s.kind == "SERVER"]
    assert http_client.parent_span_id == client.span_id
    assert server.parent_span_id == http_client.span_id
    assert server.trace_id == client.trace_id


def test_a_streamed_anthropic_calls_request_is_under_its_llm_span(
    run_python: RunPython,
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    providers: FakeProviders,
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.httpx")
    # messages.stream() sends its request in the manager's __enter__, once the LLM span was
    # no longer current: the HTTP client's POST span came out beside it, not under it.
    script = """
        import asyncio, sys
        import traceroot
        from traceroot import _integrations as integrations

        traceroot.auto_initialize()
        from opentelemetry import trace
        integrations.activate_otel_instrumentors(trace.get_tracer_provider())
        import anthropic

        MSGS = [{"role": "user", "content": "Say hello"}]
        sync = anthropic.Anthropic(base_url=sys.argv[1], api_key="k", max_retries=0)
        aio = anthropic.AsyncAnthropic(base_url=sys.argv[1], api_key="k", max_retries=0)

        @traceroot.observe(name="created")
        def created():
            return sync.messages.create(model="claude-x", max_tokens=50, messages=MSGS)

        @traceroot.observe(name="streamed")
        def streamed():
            with sync.messages.stream(model="claude-x", max_tokens=50, messages=MSGS) as s:
                return "".join(s.text_stream)

        @traceroot.observe(name="streamed_async")
        async def streamed_async():
            async with aio.messages.stream(model="claude-x", max_tokens=50, messages=MSGS) as s:
                return "".join([t async for t in s.text_stream])

        created()
        assert streamed() == asyncio.run(streamed_async()) != ""
        traceroot.shutdown()
    """
    result = run_python(textwrap.dedent(script), args=[providers.url], env=traceroot_env)
    assert result.returncode == 0, result.stderr
    spans = receiver.wait_for_spans(9)
    for name in ("created", "streamed", "streamed_async"):
        (observed,) = [s for s in spans if s.name == name]
        (llm,) = [s for s in spans if s.parent_span_id == observed.span_id]
        assert llm.attributes["openinference.span.kind"] == "LLM"
        (post,) = [s for s in spans if s.parent_span_id == llm.span_id]
        assert (post.name, post.kind) == ("POST", "CLIENT"), name


def test_distro_initializes_traceroot_under_opentelemetry_instrument(
    run_python: RunPython,
    receiver: OTLPReceiver,
    traceroot_env: dict[str, str],
    providers: FakeProviders,
    tmp_path: Path,
) -> None:
    # A program with no traceroot in it at all.
    (tmp_path / "app.py").write_text(
        textwrap.dedent("""
        import sys
        import openai
        client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        import importlib.metadata, os
        (ep,) = importlib.metadata.entry_points(
            group="opentelemetry_configurator", name=os.environ["OTEL_PYTHON_CONFIGURATOR"]
        )
        print(type(ep.load()()).__name__)
    """)
    )
    launcher = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert launcher is not None
    env = {**traceroot_env, "OTEL_PYTHON_DISTRO": "traceroot"}
    result = run_python(args=[launcher, sys.executable, "app.py", providers.url], env=env)
    assert result.returncode == 0, result.stderr
    # e.g. the httpx instrumentor importing httpx2 inside its own import hook must not fail
    assert "traceroot" not in result.stderr, result.stderr
    # The configurator the distro names is a registered one (it adds no second pipeline).
    assert result.stdout.strip() == "TracerootConfigurator"
    (llm,) = receiver.wait_for(_llm_spans)
    assert llm.attributes["openinference.span.kind"] == "LLM"
    assert llm.attributes["traceroot.sdk.name"] == "traceroot-py"


# -- the registry, in process ------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    integrations.deactivate()
    yield TracerProvider()
    integrations.deactivate()


class Exploding:
    """An instrumentor that fails, standing in for a broken third-party one."""

    def instrument(self, tracer_provider: TracerProvider) -> None:
        raise RuntimeError("boom")

    def uninstrument(self) -> None:
        pass


def test_unknown_names_warn_with_the_valid_values(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        integrations.activate("openai, bogus", provider, explicit=False)
    (record,) = [r for r in caplog.records if "bogus" in r.getMessage()]
    assert "TRACEROOT_INTEGRATIONS" in record.getMessage()
    assert "google_genai" in record.getMessage()


def test_missing_library_warns_only_when_named(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="traceroot"):
        integrations.activate(None, provider, explicit=False)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    integrations.deactivate()
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        integrations.activate([Integration.CREWAI], provider, explicit=True)
    assert any("crewai" in r.getMessage() for r in caplog.records)
    assert integrations.status()[Integration.CREWAI] == "library not installed"


def test_a_failing_instrumentor_is_reported_and_others_still_work(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import anthropic  # noqa: F401
    import openai  # noqa: F401  (imported, so activation instruments at once)

    broken = Spec(
        ("openai",), "openai", "openinference-instrumentation-openai", "test_integrations:Exploding"
    )
    monkeypatch.setitem(REGISTRY, Integration.OPENAI, broken)
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        integrations.activate(["openai", "anthropic"], provider, explicit=True)
    state = integrations.status()
    assert state[Integration.OPENAI] == "failed: RuntimeError"
    assert state[Integration.ANTHROPIC] == "instrumented"
    assert any("openai" in r.getMessage() for r in caplog.records)


def test_a_missing_instrumentor_names_the_pip_command(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import openai  # noqa: F401

    orphan = Spec(("openai",), "openai", "no-such-instrumentor-dist", "nowhere:Nothing", "crewai")
    monkeypatch.setitem(REGISTRY, Integration.OPENAI, orphan)
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        integrations.activate(["openai"], provider, explicit=True)
    hint = "pip install 'traceroot[crewai]'"
    assert integrations.status()[Integration.OPENAI] == f"instrumentor missing ({hint})"
    assert any(hint in r.getMessage() for r in caplog.records)


def test_a_library_too_old_for_its_instrumentor_is_one_warning_with_the_fix(
    run_python: RunPython, tmp_path: Path
) -> None:
    # The real openai imports as usual; metadata found first on the path says 1.0.0, older
    # than any OpenInference OpenAI instrumentor instruments, so the real instrumentor declines.
    site = tmp_path / "site"
    dist = site / "openai-1.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: openai\nVersion: 1.0.0\n\n")
    script = (
        "import traceroot, openai\ntraceroot.initialize(integrations=['openai'])\nprint('ran')\n"
    )
    env = {"PYTHONPATH": str(site), "TRACEROOT_LOCAL_DIR": str(tmp_path / "store")}
    result = run_python(script, env=env)
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "ran", result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("traceroot: cannot")]
    assert len(ours) == 1, result.stderr
    assert re.search(
        r"traceroot: cannot trace openai: openinference-instrumentation-openai \S+ instruments "
        r"openai ?>= ?[\d.]+; openai 1\.0\.0 is installed\. Upgrade openai, or install an older "
        r"openinference-instrumentation-openai",
        ours[0],
    ), ours[0]


class ImportingIncidental:
    """An instrumentor that imports another integration's library, as Agno's imports every
    agno.models module (and so litellm, anthropic, ...)."""

    def instrument(self, tracer_provider: TracerProvider) -> None:
        import tr_fake_incidental  # noqa: F401

    def uninstrument(self) -> None:
        pass


def test_a_library_an_instrumentor_imports_is_not_warned_about(
    provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    for name in ("tr_fake_host", "tr_fake_incidental"):
        (tmp_path / f"{name}.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = Spec(
        ("openai",),
        "tr_fake_host",
        "openinference-instrumentation-openai",
        "test_integrations:ImportingIncidental",
    )
    incidental = Spec(
        ("openai",), "tr_fake_incidental", "no-such-instrumentor-dist", "nowhere:Nothing", "groq"
    )
    monkeypatch.setitem(REGISTRY, Integration.OPENAI, host)
    monkeypatch.setitem(REGISTRY, Integration.GROQ, incidental)
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        integrations.activate(["openai", "groq"], provider, explicit=True)
        import tr_fake_host  # noqa: F401

    state = integrations.status()
    assert state[Integration.OPENAI] == "instrumented"
    assert state[Integration.GROQ].startswith("instrumentor missing")
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_deactivate_uninstruments_and_removes_hooks(provider: TracerProvider) -> None:
    import openai
    from openinference.instrumentation.openai import OpenAIInstrumentor

    integrations.activate(["openai", "crewai", "langchain"], provider, explicit=True)
    assert OpenAIInstrumentor().is_instrumented_by_opentelemetry
    assert openai is not None
    integrations.deactivate()
    assert not OpenAIInstrumentor().is_instrumented_by_opentelemetry
    # No import hook of ours is left waiting for crewai or langchain.
    assert not [f for f in sys.meta_path if type(f).__module__ == "traceroot._import_hooks"]


def test_client_libraries_add_no_spans_of_their_own(
    provider_run: tuple[list[ReceivedSpan], dict[str, Any]],
) -> None:
    spans, _ = provider_run
    scopes = {s.scope_name for s in spans}
    # anthropic traces its own calls once a provider is global; we keep only OpenInference's.
    assert scopes <= {"traceroot-sdk"} | {
        f"openinference.instrumentation.{n}"
        for n in ("openai", "anthropic", "langchain", "google_genai")
    }
