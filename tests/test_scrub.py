"""Credentials scrubbed from captured content by default: the matrix of shapes and
look-alikes, sensitive names at any depth, and end to end (raw bytes received, stderr,
instrumentor spans from a real OpenAI client against the loopback fake)."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest
from fake_providers import FakeProviders
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode
from otlp_receiver import OTLPReceiver
from sdk_helpers import all_text, run_traced, stdout_json, warnings_in

from traceroot._export.finisher import SpanFinisher
from traceroot._export.scrub import Scrubber, is_sensitive_name, scrubber_from_environment

# Credentials built from parts, so that this file holds none a scanner would flag.
OPENAI = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_-Q7"
CREDENTIALS = {
    "openai-key": OPENAI,
    "openai-key ": "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4",
    "anthropic-key": "sk-" + "ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe_-dC",
    "aws-access-key": "AKIA" + "IOSFODNN7EXAMPLE",
    "github-token": "ghp_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2",
    "github-token ": "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
    "slack-token": "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKl",
    "google-api-key": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "stripe-key": "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "huggingface-token": "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "groq-key": "gsk_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3aB4cD5eF6gH7",
    "xai-key": "xai-" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2yZ3",
    "replicate-token": "r8_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2y",
    "langsmith-key": "lsv2_pt_" + "0123456789abcdef0123456789abcdef_0123456789",
    "tavily-key": "tvly-" + "dev-aB1cD2eF3gH4iJ5kL6mN7oP8qR9s",
    "pinecone-key": "pcsk_" + "2aB1cD_3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4",
    "gitlab-token": "glpat-" + "aB1cD2eF3gH4iJ5kL6mN",
    "npm-token": "npm_" + "aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2",
    "jwt": "eyJhbGciOiJIUzI1NiJ9."
    + "eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    + "dozjgNryP4J3jVmNHl0w5N_XgL0n",
    "pem-private-key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\n"
    "q2Zb9wL0pYtR\n-----END RSA PRIVATE KEY-----",
}
# The credential sits inside a larger text; the marker replaces what is secret only.
IN_CONTEXT = {
    "bearer-token": ("Authorization: Bearer ", "a1B2c3D4e5F6g7H8i9J0k1L2", ""),
    "basic-credentials": ("Basic ", "dXNlcjpodW50ZXIy", " was sent"),
    "url-password": ("postgres://bob:", "s3cretPassw0rd", "@db.internal:5432/app"),
    "url-password ": ("redis://:", "s3cretPassw0rd", "@cache:6379/0"),  # no user name
    "slack-webhook": ("post to ", "https://hooks.slack.com/services/T000/B000/XXXXXXXX", ""),
}
LOOK_ALIKES = [
    "session_id=3f2a9c1e-77b1-4c2e-9a51-0d6c1f2e8b7a",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # a git SHA
    "123e4567-e89b-12d3-a456-426614174000",  # a UUID
    "SGVsbG8gd29ybGQ=",  # a base64 word
    "Each token costs money; the token limit is 4096 and max_tokens=256.",
    "Basic information about authentication tokens, for the bearer of this note.",
    "sk-learn is a library; the task-management desk-system works.",
    '{"prompt_tokens": 11, "token_type": "bearer", "session": "abc", "model": "gpt-4o"}',
    '{"api_key_id": "key-123", "password_policy": "strong", "secret_name": "db"}',
    "The author set the keyboard shortcut.",
]


def _windows(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(0, max(1, len(secret) - size + 1))]


def assert_no_part_of(secret: str, text: str) -> None:
    leaked = [w for w in _windows(secret) if w in text]
    assert not leaked, (leaked, text)


@pytest.mark.parametrize("rule", sorted(CREDENTIALS))
def test_each_credential_shape_is_caught(rule: str) -> None:
    secret = CREDENTIALS[rule]
    text = Scrubber().text(f"here: {secret} and more")
    assert text == f"here: [scrubbed:{rule.strip()}] and more"
    # Anywhere: inside JSON too.
    encoded = Scrubber().text(json.dumps({"note": f"use {secret}"}))
    assert json.loads(encoded) == {"note": f"use [scrubbed:{rule.strip()}]"}


@pytest.mark.parametrize("rule", sorted(IN_CONTEXT))
def test_credentials_in_context_are_caught_and_the_rest_kept(rule: str) -> None:
    before, secret, after = IN_CONTEXT[rule]
    assert Scrubber().text(before + secret + after) == f"{before}[scrubbed:{rule.strip()}]{after}"


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert Scrubber().text(text) == text


def test_a_text_seen_before_comes_out_as_the_first_time() -> None:
    # The scrubber remembers texts it has seen (prompts and schemas repeat on every call):
    # a second look must give what the first gave, for texts with and without secrets.
    scrubber = Scrubber()
    texts = [f"key {CREDENTIALS[rule]} here" for rule in sorted(CREDENTIALS)]
    texts += [before + secret + after for before, secret, after in IN_CONTEXT.values()]
    texts += list(LOOK_ALIKES)
    first = [scrubber.text(t) for t in texts]
    assert first == [Scrubber().text(t) for t in texts]  # a fresh scrubber agrees
    again = [scrubber.text("".join(t)) for t in texts]  # equal texts, other objects
    assert again == first
    for text in LOOK_ALIKES:  # nothing to scrub: the caller's own object back
        copy = "".join(text)
        assert scrubber.text(copy) is copy
    long_text = "x" * 5000 + " " + CREDENTIALS[sorted(CREDENTIALS)[0]]  # too long to remember
    assert scrubber.text(long_text) == scrubber.text(long_text) != long_text


def test_sensitive_names() -> None:
    for name in (
        "api_key",
        "apiKey",
        "x-api-key",
        "OPENAI_API_KEY",
        "password",
        "db_password",
        "db_pass",
        "SMTP_PASS",
        "client_secret",
        "secretAccessKey",
        "access_token",
        "token",
        "Authorization",
        "proxy-authorization",
        "cookie",
        "Set-Cookie",
        "private_key",
        "credentials",
        "auth",
    ):
        assert is_sensitive_name(name), name
    for name in (
        "session",
        "session_id",
        "sessionId",
        "user_id",
        "max_tokens",
        "prompt_tokens",
        "token_count",
        "token_type",
        "api_key_id",
        "key",
        "author",
        "model",
        "keyboard",
        "bypass",
        "compass",
        "passenger",
        "pass_count",
        "input_token_details",  # LangChain's usage metadata: counts of cached tokens
        "outputTokenDetails",
        "thinking_token_budget",
    ):
        assert not is_sensitive_name(name), name


def test_values_under_sensitive_names_at_any_depth() -> None:
    scrub = Scrubber().text
    value = {
        "api_key": "plain-looking-value",
        "session_id": "s-1",
        "nested": {"deeper": [{"password": "hunter2", "user": "ann"}]},
        "auth": {"user": "u", "pass": "p"},
        "pin": {"password": 1234},
        "max_tokens": 5,
        "flag": {"token": None},
        "input_token_details": {"cache_read": 3, "api_key": "inner"},
    }
    assert json.loads(scrub(json.dumps(value))) == {
        "api_key": "[scrubbed:sensitive-name]",
        "session_id": "s-1",
        "nested": {"deeper": [{"password": "[scrubbed:sensitive-name]", "user": "ann"}]},
        "auth": "[scrubbed:sensitive-name]",
        "pin": {"password": "[scrubbed:sensitive-name]"},
        "max_tokens": 5,
        "flag": {"token": None},
        "input_token_details": {"cache_read": 3, "api_key": "[scrubbed:sensitive-name]"},
    }
    # JSON encoded inside JSON (a message whose content is JSON).
    doubly = json.dumps({"content": json.dumps({"password": "hunter2", "q": "ok"})})
    assert json.loads(json.loads(scrub(doubly))["content"]) == {
        "password": "[scrubbed:sensitive-name]",
        "q": "ok",
    }
    # A Python repr (an exception message quoting a dict), query strings, headers.
    assert scrub("bad config {'password': 'hunter2', 'host': 'db'}") == (
        "bad config {'password': '[scrubbed:sensitive-name]', 'host': 'db'}"
    )
    assert (
        scrub("GET /v1?api_key=abc123&q=cats") == "GET /v1?api_key=[scrubbed:sensitive-name]&q=cats"
    )
    assert scrub("Cookie: sid=abc; theme=dark") == "Cookie: [scrubbed:sensitive-name]"
    # Cut short by the length bound: what is there is still scrubbed.
    assert scrub('{"password": "hunter2", "rest": "abc...[truncated 9 chars]') == (
        '{"password": "[scrubbed:sensitive-name]", "rest": "abc...[truncated 9 chars]'
    )
    assert scrub('{"password": "hunter2...[truncated 9 chars]') == (
        '{"password": "[scrubbed:sensitive-name]"'
    )


def test_values_of_sensitive_pairs_in_lists_are_scrubbed() -> None:
    """Headers and form fields as (name, value) pairs, as HTTP clients and ASGI hold them."""
    scrub = Scrubber().text
    headers = {"headers": [["X-Auth-Token", "opaque123"], ["Accept", "json"]]}
    assert json.loads(scrub(json.dumps(headers))) == {
        "headers": [["X-Auth-Token", "[scrubbed:sensitive-name]"], ["Accept", "json"]]
    }
    # An ASGI scope's headers, as a repr; a form as tuples.
    assert scrub("[(b'authorization', b'Basic dTpw'), (b'host', b'api')]") == (
        "[(b'authorization', '[scrubbed:sensitive-name]'), (b'host', b'api')]"
    )
    assert scrub("[('password', 'hunter2'), ('user', 'ann')]") == (
        "[('password', '[scrubbed:sensitive-name]'), ('user', 'ann')]"
    )
    assert scrub('[["api_key", 12345]]') == '[["api_key", "[scrubbed:sensitive-name]"]]'
    # Not a pair: a longer list of words, or a value that holds nothing.
    assert scrub('["token", "count", "other"]') == '["token", "count", "other"]'
    assert scrub('["api_key", null]') == '["api_key", null]'
    # A shape rule's marker says more and is kept.
    assert scrub(json.dumps([["X-Api-Key", OPENAI]])) == '[["X-Api-Key", "[scrubbed:openai-key]"]]'


def _span(attributes: dict, status: str | None = None, event: dict | None = None):
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("s", attributes=attributes) as span:
        if event:
            span.add_event("exception", event)
        if status:
            span.set_status(Status(StatusCode.ERROR, status))
    return span


def test_the_finisher_scrubs_content_and_never_the_backends_keys() -> None:
    kept = {
        "session.id": "sk-" + "proj-" + "a" * 30 + "1",  # even shaped like a key: not touched
        "user.id": "password=hunter2",
        "traceroot.trace.session_id": "s",
        "llm.model_name": "gpt-4o",
        "llm.token_count.prompt": 10,
        "traceroot.span.path": ("a", "b"),
    }
    span = _span(
        {
            **kept,
            "traceroot.span.input": json.dumps({"api_key": "hunter2", "text": OPENAI}),
            "llm.input_messages.0.message.content": f"my key is {OPENAI}",
            "metadata": json.dumps({"token": "t0k3n"}),
            "http.request.header.authorization": ("Token abc123",),
            "db.password": 1234,
            "tags": ("a", OPENAI),
        },
        status=f"AuthError: bad key {OPENAI}",
        event={"exception.message": f"bad key {OPENAI}", "exception.type": "AuthError"},
    )
    out = SpanFinisher(None, 32768, scrubber=Scrubber())(span)
    attributes = dict(out.attributes or {})
    for key, value in kept.items():
        assert attributes[key] == value, key
    assert json.loads(attributes["traceroot.span.input"]) == {
        "api_key": "[scrubbed:sensitive-name]",
        "text": "[scrubbed:openai-key]",
    }
    assert attributes["llm.input_messages.0.message.content"] == "my key is [scrubbed:openai-key]"
    assert attributes["metadata"] == '{"token": "[scrubbed:sensitive-name]"}'
    assert attributes["http.request.header.authorization"] == ("[scrubbed:sensitive-name]",)
    assert attributes["db.password"] == "[scrubbed:sensitive-name]"
    assert attributes["tags"] == ("a", "[scrubbed:openai-key]")
    assert out.status.description == "AuthError: bad key [scrubbed:openai-key]"
    assert out.events[0].attributes["exception.message"] == "bad key [scrubbed:openai-key]"
    # Nothing to scrub: the very same span goes on (no copy).
    clean = _span({"traceroot.span.input": '{"q": "cats"}'})
    assert SpanFinisher(None, 32768, scrubber=Scrubber())(clean) is clean


def test_a_secret_straddling_the_length_bound_is_scrubbed_before_the_cut() -> None:
    text = "x" * 995 + OPENAI + "y" * 100_000
    span = _span({"input.value": text})
    value = SpanFinisher(None, 1000, scrubber=Scrubber())(span).attributes["input.value"]
    assert len(value) <= 1000
    assert_no_part_of(OPENAI, value)
    assert value.endswith("chars]") and "truncated" in value


def test_custom_patterns_and_a_bad_one(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"TRACEROOT_SCRUB_PATTERNS": r"EMP-\d{4,6}, [z-a], , internal-[0-9a-f]{8}"}
    with caplog.at_level(logging.WARNING, logger="traceroot"):
        scrubber = scrubber_from_environment(environ)
    assert scrubber is not None
    assert scrubber.text("staff EMP-12345 and internal-deadbeef") == (
        "staff [scrubbed:custom-1] and [scrubbed:custom-3]"
    )
    (record,) = caplog.records
    message = record.getMessage()
    assert "TRACEROOT_SCRUB_PATTERNS" in message and "pattern 2" in message
    assert "[z-a]" not in message  # the pattern itself is not shown
    assert scrubber_from_environment({"TRACEROOT_SCRUB": "false"}) is None


PROGRAM = r"""
import json, logging, sys
import traceroot
from traceroot import observe, update_current_span
from opentelemetry import trace

KEY = sys.argv[1]
seen = []

def redact(attributes):
    seen.extend(v for v in attributes.values() if isinstance(v, str) and "[scrubbed:" in v)
    return {k: v.replace("ann@example.com", "[email]") if isinstance(v, str) else v
            for k, v in attributes.items()}

traceroot.initialize(redact=redact if "--redact" in sys.argv else None)

@observe(type="tool", metadata={"password": "hunter2"})
def call(config, note):
    update_current_span(model_parameters={"api_key": KEY, "temperature": 0})
    return {"answer": "ok", "echo": f"Bearer {KEY}", "mail": "ann@example.com"}

@observe
def fails(key):
    raise PermissionError(f"the key {key} was refused")

with traceroot.using_attributes(session_id="session-1", user_id="user-1"):
    call({"api_key": KEY, "host": "db"}, f"my key is {KEY}")
    try:
        fails(KEY)
    except PermissionError:
        pass
with trace.get_tracer("thirdparty").start_as_current_span("raw") as raw:
    raw.set_attribute("input.value", f"curl -H 'Authorization: Bearer {KEY}'")
    # A span named after its URL, credentials and all: its name and its path are scrubbed.
    url = f"https://ann:hunter2@api.example.com/v1?api_key={KEY}"
    with trace.get_tracer("thirdparty").start_as_current_span(f"GET {url}") as named:
        named.add_event(f"retrying {url}")
print(json.dumps({"seen_by_redact": len(seen)}))
"""


def test_end_to_end_no_secret_in_the_bytes_received_nor_on_stderr(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_CONSOLE": "true"}
    script = PROGRAM.replace("sys.argv[1]", repr(OPENAI))
    proc, spans = run_traced(run_python, receiver, env, script, expect=4)
    raw = b"".join(r.payload for r in receiver.requests)
    assert raw and OPENAI.encode() not in raw
    for window in _windows(OPENAI):
        assert window.encode() not in raw, window
    assert b"hunter2" not in raw
    assert_no_part_of(OPENAI, proc.stderr)
    assert "fails" in proc.stderr and "ERROR" in proc.stderr  # the console view did show it
    call = spans.one("call").attributes
    assert json.loads(call["traceroot.span.input"]) == {
        "config": {"api_key": "[scrubbed:openai-key]", "host": "db"},  # the shape says more
        "note": "my key is [scrubbed:openai-key]",
    }
    assert json.loads(call["traceroot.span.output"])["echo"] == "Bearer [scrubbed:openai-key]"
    assert json.loads(call["traceroot.span.metadata"]) == {"password": "[scrubbed:sensitive-name]"}
    assert call["session.id"] == "session-1" and call["user.id"] == "user-1"
    failed = spans.one("fails")
    assert failed.status_message == "PermissionError: the key [scrubbed:openai-key] was refused"
    assert "[scrubbed:openai-key]" in failed.events[0].attributes["exception.stacktrace"]
    assert spans.one("raw").attributes["input.value"] == (
        "curl -H 'Authorization: Bearer [scrubbed:openai-key]'"
    )
    named = (
        "GET https://ann:[scrubbed:url-password]@api.example.com/v1?api_key=[scrubbed:openai-key]"
    )
    assert spans.one(named).attributes["traceroot.span.path"] == ["raw", named]
    assert [event.name for event in spans.one(named).events] == [named.replace("GET", "retrying")]


def test_redact_runs_after_scrubbing(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    script = PROGRAM.replace("sys.argv[1]", repr(OPENAI))
    proc, spans = run_traced(
        run_python, receiver, traceroot_env, script, expect=3, args=["--redact"]
    )
    assert stdout_json(proc)["seen_by_redact"] > 0  # redact saw markers, never the key
    assert OPENAI not in all_text(spans)
    assert json.loads(spans.one("call").attributes["traceroot.span.output"])["mail"] == "[email]"


def test_scrubbing_can_be_turned_off_and_patterns_added(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    script = PROGRAM.replace("sys.argv[1]", repr(OPENAI))
    env = {**traceroot_env, "TRACEROOT_SCRUB": "false"}
    _, spans = run_traced(run_python, receiver, env, script, expect=3)
    assert OPENAI in spans.one("call").attributes["traceroot.span.input"]

    receiver.clear()
    env = {**traceroot_env, "TRACEROOT_SCRUB_PATTERNS": r"ann@example\.com,(unclosed"}
    proc, spans = run_traced(run_python, receiver, env, script, expect=3)
    lines = warnings_in(proc.stderr, "TRACEROOT_SCRUB_PATTERNS")
    assert len(lines) == 1 and "pattern 2" in lines[0], proc.stderr
    output = json.loads(spans.one("call").attributes["traceroot.span.output"])
    assert output["mail"] == "[scrubbed:custom-1]"
    assert OPENAI not in all_text(spans)  # the built-in rules still apply


OPENAI_PROGRAM = """
    import json, sys
    import openai
    import traceroot
    from traceroot import Integration

    traceroot.initialize(integrations=[Integration.OPENAI])
    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "Deploy with key " + sys.argv[2]},
            {"role": "user", "content": json.dumps({"password": "hunter2", "host": "db"})},
        ],
    )
"""


def test_instrumentor_spans_are_scrubbed(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    with FakeProviders() as fake:
        proc = run_python(
            textwrap.dedent(OPENAI_PROGRAM), args=[fake.url, OPENAI], env=traceroot_env
        )
        assert proc.returncode == 0, proc.stderr
        assert OPENAI in json.dumps(fake.requests)  # the provider itself did get the key
    (llm,) = receiver.wait_for_spans(1, timeout=5)
    attributes = llm.attributes
    assert attributes["openinference.span.kind"] == "LLM"
    assert attributes["llm.input_messages.0.message.content"] == (
        "Deploy with key [scrubbed:openai-key]"
    )
    assert "[scrubbed:openai-key]" in attributes["input.value"]
    assert json.loads(attributes["llm.input_messages.1.message.content"]) == {
        "password": "[scrubbed:sensitive-name]",
        "host": "db",
    }
    sent = json.loads(attributes["input.value"])["messages"][1]["content"]  # JSON in JSON
    assert json.loads(sent) == {"password": "[scrubbed:sensitive-name]", "host": "db"}
    assert attributes["llm.model_name"].startswith("gpt-4o-mini")
    raw = b"".join(r.payload for r in receiver.requests)
    assert OPENAI.encode() not in raw and b"hunter2" not in raw
