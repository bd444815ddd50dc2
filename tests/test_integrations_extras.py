"""Integrations beyond the core four, end to end: one LLM call is one LLM span.

Real client libraries talk to the loopback fake provider; a traced program in a fresh
interpreter sends its spans to the OTLP receiver. Each scenario calls the client once
inside an ``@observe`` span, which must then have exactly one child: the OpenInference
LLM span, with model and token counts.

- Mistral (``mistralai``, in the test extra): its client traces its own calls on the
  global tracer provider (every call in 2.0-2.4.7; in later releases when
  ``MISTRAL_SDK_TELEMETRY=global``), which would be a second span per call.
- Groq (``groq``, in the test extra): no spans of its own.
- LiteLLM (``litellm``, in the test extra, with no network past loopback): it calls
  OpenAI-compatible providers through the ``openai`` client, whose OpenInference span
  would be a second LLM span for the same call when the OpenAI integration is on too
  (as under ``traceroot-run``, which enables every installed integration).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from conftest import clean_env
from fake_providers import COMPLETION_TOKENS, FAIL_MODEL, PROMPT_TOKENS, REPLY, FakeProviders
from opentelemetry.sdk.trace import TracerProvider
from otlp_receiver import OTLPReceiver, ReceivedSpan

from traceroot import _integrations as integrations
from traceroot._integrations import Integration

_OI = "openinference.instrumentation"


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _requires(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if not _installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


needs_mistral = _requires("mistralai.client", f"{_OI}.mistralai")
needs_groq = _requires("groq", f"{_OI}.groq")
needs_litellm = _requires("litellm", f"{_OI}.litellm")


def _run(script: str, extra_env: dict[str, str] | None = None) -> list[ReceivedSpan]:
    """Run ``script`` (argv[1] = the fake provider's URL); the spans it sent."""
    with OTLPReceiver() as receiver, FakeProviders() as fake:
        env = clean_env(
            {
                "TRACEROOT_API_KEY": "k",
                "TRACEROOT_HOST_URL": receiver.url,
                "TRACEROOT_FLUSH_INTERVAL": "0.2",
                **(extra_env or {}),
            }
        )
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), fake.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        return receiver.spans


def _scenario(spans: list[ReceivedSpan], name: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    (parent,) = [s for s in spans if s.name == name and s.parent_span_id is None]
    return parent, [s for s in spans if s.parent_span_id == parent.span_id]


def _assert_one_llm_span(
    spans: list[ReceivedSpan], name: str, model: str, scope: str
) -> ReceivedSpan:
    parent, children = _scenario(spans, name)
    assert len(children) == 1, [(c.name, c.scope_name) for c in children]
    (llm,) = children
    # nothing else anywhere under it either (a duplicate nested one level down)
    assert not [s for s in spans if s.parent_span_id == llm.span_id]
    attrs = llm.attributes
    assert llm.scope_name == scope
    assert attrs["openinference.span.kind"] == "LLM"
    assert llm.trace_id == parent.trace_id
    assert attrs["llm.model_name"] == model
    assert attrs["llm.token_count.prompt"] == PROMPT_TOKENS
    assert attrs["llm.token_count.completion"] == COMPLETION_TOKENS
    assert attrs["traceroot.span.ids_path"] == [parent.span_id]
    return llm


# -- Mistral ----------------------------------------------------------------------------

MISTRAL_SCRIPT = """
    import asyncio, sys
    import traceroot
    from traceroot import Integration
    from traceroot import observe

    traceroot.initialize(integrations=INTEGRATIONS)
    from mistralai.client import Mistral

    client = Mistral(api_key="k", server_url=sys.argv[1])
    MSGS = [{"role": "user", "content": "Say hello"}]

    @observe(name="mistral_sync")
    def sync():
        return client.chat.complete(model="mistral-small", messages=MSGS)

    @observe(name="mistral_async")
    async def async_():
        return await client.chat.complete_async(model="mistral-small", messages=MSGS)

    @observe(name="mistral_stream")
    def stream():
        events = client.chat.stream(model="mistral-small", messages=MSGS)
        return "".join(e.data.choices[0].delta.content or "" for e in events)

    assert sync().choices[0].message.content == REPLY
    assert asyncio.run(async_()).choices[0].message.content == REPLY
    assert stream() == REPLY
    traceroot.shutdown()
"""

MISTRAL_SCENARIOS = ["mistral_sync", "mistral_async", "mistral_stream"]


def _mistral_script(integrations: str) -> str:
    return (
        textwrap.dedent(MISTRAL_SCRIPT)
        .replace("INTEGRATIONS", integrations)
        .replace("REPLY", repr(REPLY))
    )


@pytest.fixture(scope="module", params=["default", "global"])
def mistral_run(request: pytest.FixtureRequest) -> Iterator[list[ReceivedSpan]]:
    """The Mistral program, with the client's own telemetry at its default and forced on."""
    if not _installed("mistralai.client", f"{_OI}.mistralai"):
        pytest.skip("not installed: mistralai, openinference-instrumentation-mistralai")
    env = {"MISTRAL_SDK_TELEMETRY": "global"} if request.param == "global" else {}
    yield _run(_mistral_script("[Integration.MISTRAL]"), env)


@needs_mistral
@pytest.mark.parametrize("name", MISTRAL_SCENARIOS)
def test_mistral_call_is_one_llm_span(mistral_run: list[ReceivedSpan], name: str) -> None:
    llm = _assert_one_llm_span(mistral_run, name, "mistral-small", f"{_OI}.mistralai")
    assert llm.attributes["llm.input_messages.0.message.content"] == "Say hello"


@needs_mistral
def test_mistral_client_spans_are_dropped_not_orphaned(mistral_run: list[ReceivedSpan]) -> None:
    assert {s.scope_name for s in mistral_run} == {"traceroot-sdk", f"{_OI}.mistralai"}
    ids = {s.span_id for s in mistral_run}
    assert all(s.parent_span_id is None or s.parent_span_id in ids for s in mistral_run)


@needs_mistral
def test_mistral_client_spans_untouched_without_the_integration() -> None:
    # The control: the same program without the integration keeps the client's own
    # spans (and shows this setup would catch a duplicate).
    spans = _run(_mistral_script("[]"), {"MISTRAL_SDK_TELEMETRY": "global"})
    for name in MISTRAL_SCENARIOS:
        _, children = _scenario(spans, name)
        assert [c.scope_name for c in children] == ["mistralai_sdk_tracer"]


@needs_mistral
def test_deactivate_restores_the_provider() -> None:
    integrations.deactivate()
    provider = TracerProvider()
    integrations.activate([Integration.MISTRAL], provider, explicit=True)
    assert "get_tracer" in vars(provider)
    integrations.deactivate()
    assert "get_tracer" not in vars(provider)


# -- Groq -------------------------------------------------------------------------------

GROQ_SCRIPT = """
    import asyncio, sys
    import traceroot
    from traceroot import Integration
    from traceroot import observe

    traceroot.initialize(integrations=[Integration.GROQ])
    import groq

    URL = sys.argv[1]
    MSGS = [{"role": "user", "content": "Say hello"}]

    @observe(name="groq_sync")
    def sync():
        client = groq.Groq(api_key="k", base_url=URL, max_retries=0)
        return client.chat.completions.create(model="llama-x", messages=MSGS)

    @observe(name="groq_async")
    async def async_():
        client = groq.AsyncGroq(api_key="k", base_url=URL, max_retries=0)
        return await client.chat.completions.create(model="llama-x", messages=MSGS)

    assert sync().choices[0].message.content == REPLY
    assert asyncio.run(async_()).choices[0].message.content == REPLY
    traceroot.shutdown()
"""


@needs_groq
def test_groq_call_is_one_llm_span() -> None:
    spans = _run(GROQ_SCRIPT.replace("REPLY", repr(REPLY)))
    for name in ("groq_sync", "groq_async"):
        llm = _assert_one_llm_span(spans, name, "llama-x", f"{_OI}.groq")
        assert llm.attributes["llm.input_messages.0.message.content"] == "Say hello"
    assert {s.scope_name for s in spans} == {"traceroot-sdk", f"{_OI}.groq"}


# -- LiteLLM ----------------------------------------------------------------------------

LITELLM_SCRIPT = """
    import asyncio, socket, sys

    # No network: litellm may not reach past loopback (it fetches a model cost map from
    # GitHub at import unless told not to), so the run is the same with a network or none.
    REACHED = []
    LOOPBACK = ("127.0.0.1", "::1", "localhost")
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            REACHED.append(address[0])
            raise OSError("no network in this test")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK and host is not None:
            REACHED.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "no network in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo

    import traceroot
    from traceroot import Integration
    from traceroot import observe

    traceroot.initialize(integrations=[Integration.LITELLM, Integration.OPENAI])
    import litellm, openai

    URL = sys.argv[1]
    MSGS = [{"role": "user", "content": "Say hello"}]
    ARGS = dict(model="openai/gpt-x", api_base=URL + "/v1", api_key="k", messages=MSGS)

    @observe(name="litellm_sync")
    def sync():
        return litellm.completion(**ARGS)

    @observe(name="litellm_async")
    async def async_():
        return await litellm.acompletion(**ARGS)

    @observe(name="litellm_fallback")
    def fallback():  # the first model fails (500), the fallback answers
        import logging
        logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)  # its own report of the 500
        failing = dict(ARGS, model="openai/FAIL_MODEL", num_retries=0)
        return litellm.completion(**failing, fallbacks=[dict(ARGS, model="openai/gpt-y")])

    @observe(name="openai_direct")
    def direct():  # the OpenAI integration still traces the openai client used directly
        client = openai.OpenAI(base_url=URL + "/v1", api_key="k", max_retries=0)
        return client.chat.completions.create(model="gpt-x", messages=MSGS)

    assert sync().choices[0].message.content == REPLY
    assert asyncio.run(async_()).choices[0].message.content == REPLY
    assert direct().choices[0].message.content == REPLY
    assert fallback().choices[0].message.content == REPLY
    traceroot.shutdown()
    assert not REACHED, f"reached beyond loopback: {sorted(set(REACHED))}"
"""


@needs_litellm
def test_litellm_call_is_one_llm_span_with_the_openai_integration_on() -> None:
    # No download of litellm's model cost map: there is no network here.
    script = LITELLM_SCRIPT.replace("REPLY", repr(REPLY)).replace("FAIL_MODEL", FAIL_MODEL)
    spans = _run(script, {"LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    for name in ("litellm_sync", "litellm_async"):
        _assert_one_llm_span(spans, name, "openai/gpt-x", f"{_OI}.litellm")
    _assert_one_llm_span(spans, "openai_direct", "gpt-x", f"{_OI}.openai")
    # With fallbacks, each model tried is an LLM span of its own, under the call's span,
    # which is a CHAIN: as an LLM span with the answer's token counts, it counted them twice.
    _, (call,) = _scenario(spans, "litellm_fallback")
    assert call.attributes["openinference.span.kind"] == "CHAIN"
    assert not [k for k in call.attributes if k.startswith(("llm.token_count.", "traceroot.int"))]
    tried = sorted((s for s in spans if s.parent_span_id == call.span_id), key=lambda s: s.start_ns)
    assert [s.attributes["llm.model_name"] for s in tried] == [
        f"openai/{FAIL_MODEL}",
        "openai/gpt-y",
    ]
    assert [s.attributes["openinference.span.kind"] for s in tried] == ["LLM", "LLM"]
    assert [s.status_code for s in tried] == ["ERROR", "OK"]
    assert tried[1].attributes["llm.token_count.completion"] == COMPLETION_TOKENS
    assert not [s for s in spans if s.parent_span_id in {t.span_id for t in tried}]


# -- LangChain's ChatOpenAI with the OpenAI integration on -------------------------------

needs_langchain_openai = _requires("langchain_openai", f"{_OI}.langchain", f"{_OI}.openai")

LANGCHAIN_OPENAI_SCRIPT = """
    import sys
    import traceroot
    from traceroot import Integration
    from traceroot import observe

    # What traceroot-run does when both libraries are installed.
    traceroot.initialize(integrations=[Integration.LANGCHAIN, Integration.OPENAI])
    from langchain_core.runnables import RunnableLambda
    from langchain_openai import ChatOpenAI
    from openai import OpenAI

    base = sys.argv[1] + "/v1"
    chat = ChatOpenAI(model="gpt-x", base_url=base, api_key="k", max_retries=0)
    client = OpenAI(base_url=base, api_key="k", max_retries=0)

    @observe(name="chat_openai")
    def via_langchain():
        return chat.invoke("Say hello").content

    def ask(question):
        messages = [{"role": "user", "content": question}]
        reply = client.chat.completions.create(model="gpt-x", messages=messages)
        return reply.choices[0].message.content

    @observe(name="openai_inside_a_runnable")
    def direct_in_a_chain():
        return RunnableLambda(ask).invoke("Say hello")

    assert via_langchain() == REPLY
    assert direct_in_a_chain() == REPLY
    traceroot.shutdown()
"""


@needs_langchain_openai
def test_chat_openai_call_is_one_llm_span_with_the_openai_integration_on() -> None:
    spans = _run(LANGCHAIN_OPENAI_SCRIPT.replace("REPLY", repr(REPLY)))
    # LangChain's LLM span stays; the openai client's span for the same call steps aside.
    _assert_one_llm_span(spans, "chat_openai", "gpt-x", f"{_OI}.langchain")
    # The openai client called by other code inside LangChain keeps its own span, under the
    # runnable that called it (LangChain's runs are never the current span).
    _, children = _scenario(spans, "openai_inside_a_runnable")
    (runnable,) = children
    assert runnable.name == "ask"
    llm = [s for s in spans if s.parent_span_id == runnable.span_id]
    assert [(s.scope_name, s.attributes["llm.model_name"]) for s in llm] == [
        (f"{_OI}.openai", "gpt-x")
    ]
