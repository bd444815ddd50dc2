"""update_current_span / update_current_trace / using_attributes / current ids, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import Spans, check, receiver_env, run_script

PROGRAM = r"""
import asyncio, json, logging, sys
import traceroot
from traceroot import (
    get_current_span_id, get_current_trace_id, observe, update_current_span,
    update_current_trace, using_attributes,
)
from opentelemetry import trace

traceroot.initialize()
ids = {}

# Outside any span: no-ops with a debug log, ids are None.
class Keep(logging.Handler):
    def emit(self, record):
        ids.setdefault("debug", []).append((record.levelname, record.getMessage()))

log = logging.getLogger("traceroot")
log.setLevel(logging.DEBUG)
log.addHandler(Keep())
update_current_span(name="nope", output="x", metadata={"a": 1})
update_current_trace(user_id="nobody")
log.handlers.clear()
log.setLevel(logging.NOTSET)
ids["outside"] = [get_current_trace_id(), get_current_span_id()]

@observe()
def child_after_rename():
    return None

@observe(type="llm")
def updater(q):
    update_current_span(
        name="renamed",
        input={"messages": [{"role": "user", "content": "what?"}]},
        output="the answer",
        metadata={"k": "v", "n": 2},
        model="gpt-4o",
        model_parameters={"temperature": 0.2, "max_tokens": 10},
        usage={"input_tokens": 100, "output_tokens": 50},
        prompt=[{"role": "user", "content": "what?"}],
        cost=0.0123,
    )
    update_current_trace(
        user_id="u-trace", session_id="s-trace", metadata={"tm": 1}, tags=["tt1", "tt2"]
    )
    ids["updater"] = [get_current_trace_id(), get_current_span_id()]
    child_after_rename()
    return "returned"

updater("q?")

@observe()
def str_updates():
    update_current_span(input="raw text", prompt="raw prompt", output=["a", "b"])

str_updates()

@observe()
def returns_none_after_update():
    update_current_span(output={"kept": True})

returns_none_after_update()

@observe()
def reads_ids():
    ids["reads_ids"] = [get_current_trace_id(), get_current_span_id()]
    return get_current_trace_id(), get_current_span_id()

reads_ids()

# using_attributes, nested: inner values win, metadata merges, tags add up, then restored.
@observe()
def ctx_outer():
    with using_attributes(user_id="u-inner", tags=["inner-tag"], metadata={"lvl": "inner"}):
        ctx_inner()
        with trace.get_tracer("thirdparty").start_as_current_span("third-party-inner"):
            pass
    ctx_after_inner()

@observe()
def ctx_inner():
    return None

@observe()
def ctx_after_inner():
    return None

with using_attributes(
    user_id="u-outer", session_id="s-outer", tags=["outer-tag"], metadata={"lvl": "outer", "o": 1}
):
    ctx_outer()

@observe()
def ctx_outside():
    return None

ctx_outside()

@using_attributes(user_id="u-deco", session_id="s-deco")
def decorated_block():
    ctx_decorated()

@observe()
def ctx_decorated():
    return None

decorated_block()

# async: across awaits and into concurrently running tasks, each with its own block.
@observe()
async def actx(label):
    await asyncio.sleep(0.01)
    return label

async def task(label):
    async with using_attributes(session_id=f"s-{label}", metadata={"task": label}):
        await asyncio.sleep(0)
        return await actx(label)

async def amain():
    async with using_attributes(user_id="u-async", metadata={"shared": True}):
        await asyncio.gather(task("a"), task("b"))
    await actx("after")

asyncio.run(amain())
print(json.dumps(ids))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Spans, dict, str]]:
    with OTLPReceiver() as receiver:
        env = receiver_env(receiver)
        proc = check(run_script(tmp_path_factory.mktemp("updates"), PROGRAM, env))
        spans = Spans(receiver.wait_for_spans(14, timeout=5))
    assert len(spans) == 14, spans.names()
    yield spans, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_update_current_span_sets_every_key(run) -> None:
    spans, _, _ = run
    span = spans.one("renamed")  # update_current_span(name=...)
    a = span.attributes
    assert a["traceroot.span.input"] == '{"messages": [{"role": "user", "content": "what?"}]}'
    assert a["traceroot.span.metadata"] == '{"k": "v", "n": 2}'
    assert a["traceroot.llm.model"] == "gpt-4o"
    assert a["traceroot.llm.model_parameters"] == '{"temperature": 0.2, "max_tokens": 10}'
    assert a["traceroot.llm.usage"] == '{"input_tokens": 100, "output_tokens": 50}'
    assert a["traceroot.llm.prompt"] == '[{"role": "user", "content": "what?"}]'
    assert a["llm.cost.total"] == pytest.approx(0.0123) and type(a["llm.cost.total"]) is float
    assert a["traceroot.span.type"] == "llm"
    # An explicit output set inside the function is kept over the return value.
    assert a["traceroot.span.output"] == "the answer"
    # The path is fixed when a span starts; children started after the rename see it.
    assert a["traceroot.span.path"] == ["updater"]
    child = spans.one("child_after_rename")
    assert child.parent_span_id == span.span_id
    assert child.attributes["traceroot.span.path"] == ["updater", "child_after_rename"]


def test_update_current_trace_stamps_current_span_only(run) -> None:
    spans, _, _ = run
    a = spans.one("renamed").attributes
    assert a["traceroot.trace.user_id"] == "u-trace"
    assert a["traceroot.trace.session_id"] == "s-trace"
    assert a["traceroot.trace.metadata"] == '{"tm": 1}'
    assert a["traceroot.trace.tags"] == ["tt1", "tt2"]
    child = spans.one("child_after_rename").attributes
    assert not any(k.startswith("traceroot.trace.") for k in child)


def test_string_values_and_output_precedence(run) -> None:
    spans, _, _ = run
    a = spans.one("str_updates").attributes
    assert a["traceroot.span.input"] == "raw text"  # a str as itself, not JSON-encoded
    assert a["traceroot.llm.prompt"] == "raw prompt"
    assert a["traceroot.span.output"] == ["a", "b"]
    kept = spans.one("returns_none_after_update").attributes
    assert kept["traceroot.span.output"] == '{"kept": true}'


def test_no_span_means_no_op(run) -> None:
    spans, ids, stderr = run
    assert ids["outside"] == [None, None]
    assert [level for level, _ in ids["debug"]] == ["DEBUG", "DEBUG"]
    assert "update_current_span" in ids["debug"][0][1]
    assert "update_current_trace" in ids["debug"][1][1]
    assert not spans.named("nope")
    assert "nobody" not in json.dumps([s.attributes for s in spans])
    assert "Traceback" not in stderr and "update_current" not in stderr


def test_current_ids_match_the_wire(run) -> None:
    spans, ids, _ = run
    reads = spans.one("reads_ids")
    assert ids["reads_ids"] == [reads.trace_id, reads.span_id]
    assert reads.attributes["traceroot.span.output"] == [reads.trace_id, reads.span_id]
    renamed = spans.one("renamed")
    assert ids["updater"] == [renamed.trace_id, renamed.span_id]


def _ctx(span) -> dict:
    a = span.attributes
    return {
        "user": a.get("user.id"),
        "session": a.get("session.id"),
        "metadata": json.loads(a["metadata"]) if "metadata" in a else None,
        "tags": a.get("tag.tags"),
    }


def test_using_attributes_nested_merge_and_restore(run) -> None:
    spans, _, _ = run
    assert _ctx(spans.one("ctx_outer")) == {
        "user": "u-outer",
        "session": "s-outer",
        "metadata": {"lvl": "outer", "o": 1},
        "tags": ["outer-tag"],
    }
    inner = {
        "user": "u-inner",
        "session": "s-outer",  # inherited
        "metadata": {"lvl": "inner", "o": 1},  # merged, inner wins
        "tags": ["outer-tag", "inner-tag"],
    }
    assert _ctx(spans.one("ctx_inner")) == inner
    # Spans from any tracer inside the block carry the values too.
    assert _ctx(spans.one("third-party-inner")) == inner
    # After the inner block: the outer values again.
    assert _ctx(spans.one("ctx_after_inner")) == _ctx(spans.one("ctx_outer"))
    # After the outer block: nothing.
    assert _ctx(spans.one("ctx_outside")) == dict.fromkeys(("user", "session", "metadata", "tags"))
    assert _ctx(spans.one("ctx_decorated"))["user"] == "u-deco"
    assert _ctx(spans.one("ctx_decorated"))["session"] == "s-deco"
    # The call site skips our own frames (the using_attributes wrapper).
    decorated = spans.one("ctx_decorated").attributes
    assert decorated["traceroot.git.source_function"] == "decorated_block"


def test_using_attributes_async_tasks(run) -> None:
    spans, _, _ = run
    by_label = {
        json.loads(s.attributes["traceroot.span.input"])["label"]: s for s in spans.named("actx")
    }
    assert set(by_label) == {"a", "b", "after"}
    for label in ("a", "b"):
        assert _ctx(by_label[label]) == {
            "user": "u-async",
            "session": f"s-{label}",
            "metadata": {"shared": True, "task": label},
            "tags": None,
        }
    assert _ctx(by_label["after"])["user"] is None
