"""TRACEROOT_CAPTURE_CONTENT=false and media placeholders, with a real OpenAI client
against the loopback fake provider."""

from __future__ import annotations

import base64
import json
import textwrap

from fake_providers import COMPLETION_TOKENS, PROMPT_TOKENS, REPLY, FakeProviders
from otlp_receiver import OTLPReceiver, ReceivedSpan

from traceroot._content import (
    OPENINFERENCE_HIDING,
    WITHHELD_CONTENT,
    hide_content_in_instrumentors,
    is_content,
)

PROMPT = "Summarise the quarterly numbers for ACME"

PROGRAM = """
    import json, sys
    import openai
    import traceroot
    from traceroot import Integration, observe, update_current_span
    from traceroot._content import hide_content_in_instrumentors

    if "--hide-in-openinference" in sys.argv:
        hide_content_in_instrumentors()
    traceroot.initialize(integrations=[Integration.OPENAI])
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=0)

    @observe(type="agent", metadata={"team": "finance"})
    def agent(question):
        update_current_span(prompt=[{"role": "user", "content": question}])
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
        return reply.choices[0].message.content

    agent(sys.argv[2])
"""


def _run(run_python, receiver: OTLPReceiver, env: dict, *args: str) -> list[ReceivedSpan]:
    with FakeProviders() as fake:
        proc = run_python(textwrap.dedent(PROGRAM), args=[fake.url, PROMPT, *args], env=env)
        assert proc.returncode == 0, proc.stderr
    return receiver.wait_for_spans(2, timeout=5)


def test_content_off_keeps_structure_model_and_tokens_and_withholds_content(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_CAPTURE_CONTENT": "false"}
    spans = _run(run_python, receiver, env)
    (agent,) = [s for s in spans if s.name == "agent"]
    (llm,) = [s for s in spans if s.parent_span_id == agent.span_id]
    # Structure and timing.
    assert llm.trace_id == agent.trace_id and llm.end_ns >= llm.start_ns
    assert agent.attributes["traceroot.span.type"] == "agent"
    assert llm.attributes["traceroot.span.path"] == ["agent", llm.name]
    # Model and token counts.
    assert llm.attributes["llm.model_name"].startswith("gpt-4o-mini")
    assert llm.attributes["llm.token_count.prompt"] == PROMPT_TOKENS
    assert llm.attributes["llm.token_count.completion"] == COMPLETION_TOKENS
    # No input, output, prompt or message: ours and the instrumentor's (OpenInference's own
    # hide settings are on, so it records no messages and marks its values redacted).
    for key in ("traceroot.span.input", "traceroot.span.output", "traceroot.llm.prompt"):
        assert agent.attributes[key] == WITHHELD_CONTENT, key
    assert not [k for k in llm.attributes if k.startswith("llm.input_messages.")]
    for key in ("input.value", "output.value"):
        assert llm.attributes.get(key, WITHHELD_CONTENT) in (WITHHELD_CONTENT, "__REDACTED__"), key
    assert json.loads(agent.attributes["traceroot.span.metadata"]) == {"team": "finance"}
    raw = b"".join(r.payload for r in receiver.requests)
    assert PROMPT.encode() not in raw and REPLY.encode() not in raw
    assert b"ACME" not in raw


def test_content_on_by_default(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    spans = _run(run_python, receiver, traceroot_env)
    (llm,) = [s for s in spans if s.parent_span_id is not None]
    assert llm.attributes["llm.input_messages.0.message.content"] == PROMPT


def test_openinference_hides_content_itself_when_asked(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_CAPTURE_CONTENT": "false"}
    spans = _run(run_python, receiver, env, "--hide-in-openinference")
    (llm,) = [s for s in spans if s.parent_span_id is not None]
    # OpenInference never recorded the messages at all; counts are still there.
    assert not [k for k in llm.attributes if k.startswith("llm.input_messages.")]
    assert llm.attributes["llm.token_count.prompt"] == PROMPT_TOKENS
    raw = b"".join(r.payload for r in receiver.requests)
    assert PROMPT.encode() not in raw and REPLY.encode() not in raw


def test_hide_settings_are_set_only_when_content_is_off_and_never_override_the_user() -> None:
    environ = {"TRACEROOT_CAPTURE_CONTENT": "false", "OPENINFERENCE_HIDE_OUTPUTS": "false"}
    hide_content_in_instrumentors(environ)
    assert environ["OPENINFERENCE_HIDE_INPUTS"] == "true"
    assert environ["OPENINFERENCE_HIDE_OUTPUTS"] == "false"  # the user's own choice
    assert all(name in environ for name in OPENINFERENCE_HIDING)
    untouched = {"TRACEROOT_CAPTURE_CONTENT": "true"}
    hide_content_in_instrumentors(untouched)
    assert untouched == {"TRACEROOT_CAPTURE_CONTENT": "true"}


def test_what_counts_as_content() -> None:
    for key in (
        "traceroot.span.input",
        "input.value",
        "output.value",
        "llm.input_messages.0.message.content",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
        "llm.input_messages.0.message.contents.1.message_content.image.image.url",
        "retrieval.documents.0.document.content",
        "gen_ai.prompt.0.content",
    ):
        assert is_content(key), key
    for key in (
        "llm.input_messages.0.message.role",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
        "llm.model_name",
        "llm.token_count.total",
        "traceroot.span.metadata",
        "llm.invocation_parameters",
    ):
        assert not is_content(key), key


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 6000  # 1.5 MB; 2 MB as base64
# Under OpenInference's own cap for images (32,000 characters), which it keeps as they are.
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 60
IMAGE_PROGRAM = """
    import base64, sys
    import openai
    import traceroot
    from traceroot import Integration, observe

    traceroot.initialize(integrations=[Integration.OPENAI])
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="k", max_retries=0)
    url = "data:image/png;base64," + open(sys.argv[2]).read()
    small = "data:image/jpeg;base64," + open(sys.argv[3]).read()

    @observe
    def describe(image_url):
        return client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "image_url", "image_url": {"url": small}},
            ]}],
        ).choices[0].message.content

    describe(url)
"""


def test_an_image_data_url_becomes_a_placeholder(
    run_python, receiver: OTLPReceiver, traceroot_env, tmp_path
) -> None:
    encoded = base64.b64encode(PNG).decode()
    (tmp_path / "image.b64").write_text(encoded)
    small = base64.b64encode(JPEG).decode()
    (tmp_path / "small.b64").write_text(small)
    with FakeProviders() as fake:
        proc = run_python(
            textwrap.dedent(IMAGE_PROGRAM),
            args=[fake.url, str(tmp_path / "image.b64"), str(tmp_path / "small.b64")],
            env=traceroot_env,
        )
        assert proc.returncode == 0, proc.stderr
        assert encoded in json.dumps(fake.requests)  # the provider got the image itself
    spans = receiver.wait_for_spans(2, timeout=5)
    placeholder = f"[media image/png, {len(PNG)} bytes]"
    (describe,) = [s for s in spans if s.name == "describe"]
    assert json.loads(describe.attributes["traceroot.span.input"]) == {"image_url": placeholder}
    (llm,) = [s for s in spans if s.parent_span_id == describe.span_id]
    sent = json.loads(llm.attributes["input.value"])["messages"][0]["content"]
    assert sent[0]["text"] == "What is in this picture?"
    assert sent[2]["image_url"]["url"] == f"[media image/jpeg, {len(JPEG)} bytes]"
    contents = "llm.input_messages.0.message.contents"
    assert llm.attributes[f"{contents}.0.message_content.text"] == "What is in this picture?"
    assert llm.attributes[f"{contents}.2.message_content.image.image.url"] == (
        f"[media image/jpeg, {len(JPEG)} bytes]"
    )
    # The whole export is small: the image cost a placeholder, not 2 MB per span.
    raw = b"".join(r.payload for r in receiver.requests)
    assert encoded[100:200].encode() not in raw and small[100:200].encode() not in raw
    assert len(raw) < 20_000
