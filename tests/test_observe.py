"""`@observe` end to end: each program runs in a subprocess and we read what crossed the wire."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import (
    Spans,
    check,
    line_of,
    receiver_env,
    run_script,
    run_traced,
    stdout_json,
    warnings_in,
)

from traceroot import SpanKind

# One program, many decorated shapes; markers name the call sites we check.
SHAPES = r"""
import asyncio, dataclasses, enum, json, math
from datetime import datetime
import traceroot
from traceroot import SpanKind
from traceroot import observe

traceroot.initialize()

@dataclasses.dataclass
class Point:
    x: int
    y: int

class Color(enum.Enum):
    RED = "red"

@observe(name="level1", type="agent")
def level1():
    return level2()  # @level2-call

@observe(type=SpanKind.TOOL)
def level2():
    return level3()

@observe(type="LLM")
def level3():
    return "deep"

def caller_function():
    return level1()  # @level1-call

caller_function()

@observe
def bare(a):
    return a

bare(1)

@observe("positional_name")
def renamed_by_arg():
    return None

renamed_by_arg()

@observe()
def sync_args(name, greeting="hello", *, punct="!"):
    return f"{greeting} {name}{punct}"

sync_args("bob")  # @sync-args-call
sync_args("ann", "hi", punct="?")

@observe()
def star_args(a, *args, **kwargs):
    return len(args)

star_args(1, 2, 3, x=4)

@observe()
def only_star(*args, **kwargs):
    return None

only_star(5, y=6)
only_star()

@observe()
def no_params():
    return None

no_params()

@observe()
def takes_rich(p, c, when):
    return p

takes_rich(Point(3, 4), Color.RED, datetime(2024, 5, 6))

OUTPUTS = {
    "str": "hello", "empty_str": "", "zero": 0, "int": 7, "float": 2.5, "true": True,
    "false": False, "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
    "str_list": ["a", "b"], "str_tuple": ("a", "b"), "empty_list": [], "int_list": [1, 2],
    "dict": {"k": 1, "nested": {"z": [1, "x"]}}, "none": None, "dataclass": Point(1, 2),
}

@observe()
def returns(which):
    return OUTPUTS[which]

for which in OUTPUTS:
    returns(which)

@observe(capture_input=False, capture_output=False)
def private(secret):
    return "hidden " + secret

private("pw")

@observe(metadata={"m": 1, "s": "x"}, tags=["t1", "t2"], user_id="u-dec", session_id="s-dec")
def decorated_meta():
    return None

decorated_meta()

@observe(type="bogus")
def bogus_kind():
    return None

bogus_kind()

class Agent:
    @observe()
    def run(self, q, k=3):
        return q * k

    @classmethod
    @observe()
    def build(cls, x):
        return x

    @observe()
    @classmethod
    def build_outer(cls, x):
        return x

    @staticmethod
    @observe()
    def helper(x):
        return x

    @observe()
    @staticmethod
    def helper_outer(x):
        return x

class Callable:
    def __call__(self, v):
        return v

observe()(Callable())(8)

Agent().run("q")
Agent.build(5)
Agent().build_outer(55)
Agent.helper(6)
Agent().helper_outer(66)

@observe(type="tool")
async def async_child(n):
    await asyncio.sleep(0)
    return n * 2

@observe(type="agent")
async def amain():
    a = await async_child(21)  # @async-child-call
    b, c = await asyncio.gather(async_child(1), async_child(2))
    return a + b + c

asyncio.run(amain())
print("done")
"""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Spans, str]]:
    """SHAPES run once for the module: (script, spans, stderr)."""
    with OTLPReceiver() as receiver:
        proc = check(run_script(tmp_path_factory.mktemp("shapes"), SHAPES, receiver_env(receiver)))
        spans = Spans(receiver.wait_for_spans(42, timeout=5))
    assert proc.stdout.strip() == "done"
    assert len(spans) == 42, spans.names()
    yield SHAPES, spans, proc.stderr


def _input(span) -> dict:
    return json.loads(span.attributes["traceroot.span.input"])


def test_nesting_path_ids_path_and_kinds(shapes) -> None:
    script, spans, _ = shapes
    l1, l2, l3 = spans.one("level1"), spans.one("level2"), spans.one("level3")
    assert l1.parent_span_id is None
    assert l2.parent_span_id == l1.span_id and l3.parent_span_id == l2.span_id
    assert l1.trace_id == l2.trace_id == l3.trace_id
    assert re.fullmatch(r"[0-9a-f]{32}", l1.trace_id)

    assert l1.attributes["traceroot.span.path"] == ["level1"]
    assert l2.attributes["traceroot.span.path"] == ["level1", "level2"]
    assert l3.attributes["traceroot.span.path"] == ["level1", "level2", "level3"]
    assert l1.attributes["traceroot.span.ids_path"] == []  # present and empty on a root
    assert l2.attributes["traceroot.span.ids_path"] == [l1.span_id]
    assert l3.attributes["traceroot.span.ids_path"] == [l1.span_id, l2.span_id]

    assert l1.attributes["traceroot.span.type"] == "agent"
    assert l2.attributes["traceroot.span.type"] == "tool"  # SpanKind.TOOL
    assert l3.attributes["traceroot.span.type"] == "llm"  # "LLM" normalized
    assert l3.attributes["traceroot.span.output"] == "deep"
    assert {s.kind for s in (l1, l2, l3)} == {"INTERNAL"}
    assert l1.start_ns <= l2.start_ns <= l3.start_ns <= l3.end_ns <= l2.end_ns <= l1.end_ns

    # Every other top-level call is its own trace.
    assert spans.one("bare").trace_id != l1.trace_id
    assert spans.one("bare").attributes["traceroot.span.ids_path"] == []


def test_source_location(shapes) -> None:
    script, spans, _ = shapes
    l1, l2 = spans.one("level1"), spans.one("level2")
    assert l1.attributes["traceroot.git.source_file"] == "script.py"  # relative to cwd
    assert l1.attributes["traceroot.git.source_line"] == line_of(script, "@level1-call")
    assert l1.attributes["traceroot.git.source_function"] == "caller_function"
    assert l2.attributes["traceroot.git.source_line"] == line_of(script, "@level2-call")
    assert l2.attributes["traceroot.git.source_function"] == "level1"

    call = spans.named("sync_args")[0]
    assert call.attributes["traceroot.git.source_line"] == line_of(script, "@sync-args-call")
    assert call.attributes["traceroot.git.source_function"] == "<module>"
    child = next(s for s in spans.named("async_child") if _input(s) == {"n": 21})
    assert child.attributes["traceroot.git.source_function"] == "amain"
    assert child.attributes["traceroot.git.source_line"] == line_of(script, "@async-child-call")


# One decorated function called from several lines of one caller, and from a loop: each
# span names its own call site (call sites are cached per function of the caller).
CALL_SITES = r"""
import traceroot
from traceroot import observe

traceroot.initialize()

@observe()
def tool(i):
    return i

def caller():
    tool(1)  # @site-first
    for i in range(3):
        tool(10 + i)  # @site-loop
    tool(2)  # @site-second

caller()
tool(3)  # @site-module
"""


def test_source_line_of_each_call_site(tmp_path) -> None:
    with OTLPReceiver() as receiver:
        check(run_script(tmp_path, CALL_SITES, receiver_env(receiver)))
        spans = Spans(receiver.wait_for_spans(6, timeout=5))
    sites = {
        _input(s)["i"]: (
            s.attributes["traceroot.git.source_line"],
            s.attributes["traceroot.git.source_function"],
        )
        for s in spans.named("tool")
    }
    loop = line_of(CALL_SITES, "@site-loop")
    assert sites == {
        1: (line_of(CALL_SITES, "@site-first"), "caller"),
        10: (loop, "caller"),
        11: (loop, "caller"),
        12: (loop, "caller"),
        2: (line_of(CALL_SITES, "@site-second"), "caller"),
        3: (line_of(CALL_SITES, "@site-module"), "<module>"),
    }


def test_input_binding(shapes) -> None:
    _, spans, _ = shapes
    inputs = [_input(s) for s in spans.named("sync_args")]
    assert {"name": "bob", "greeting": "hello", "punct": "!"} in inputs  # defaults applied
    assert {"name": "ann", "greeting": "hi", "punct": "?"} in inputs
    assert _input(spans.one("star_args")) == {"a": 1, "args": [2, 3], "kwargs": {"x": 4}}
    assert sorted((_input(s) for s in spans.named("only_star")), key=str) == sorted(
        [{"args": [5], "kwargs": {"y": 6}}, {"args": [], "kwargs": {}}], key=str
    )
    assert spans.one("no_params").attributes["traceroot.span.input"] == "{}"
    assert spans.one("takes_rich").attributes["traceroot.span.input"] == (
        '{"p": {"x": 3, "y": 4}, "c": "red", "when": "2024-05-06T00:00:00"}'
    )
    assert _input(spans.one("bare")) == {"a": 1}
    assert spans.one("positional_name").attributes["traceroot.span.input"] == "{}"


def test_methods_leave_out_self_and_cls(shapes) -> None:
    _, spans, _ = shapes
    assert _input(spans.one("run")) == {"q": "q", "k": 3}
    assert spans.one("run").attributes["traceroot.span.output"] == "qqq"
    assert _input(spans.one("build")) == {"x": 5}
    assert _input(spans.one("build_outer")) == {"x": 55}
    assert _input(spans.one("helper")) == {"x": 6}
    assert _input(spans.one("helper_outer")) == {"x": 66}
    # A callable instance is named after its class.
    assert _input(spans.one("Callable")) == {"v": 8}


def test_output_shapes(shapes) -> None:
    _, spans, _ = shapes
    outputs = {}
    for span in spans.named("returns"):
        which = _input(span)["which"]
        outputs[which] = span.attributes.get("traceroot.span.output", "<absent>")
    assert outputs == {
        "str": "hello",
        "empty_str": "",
        "zero": 0,
        "int": 7,
        "float": 2.5,
        "true": True,
        "false": False,
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": "-Infinity",
        "str_list": ["a", "b"],
        "str_tuple": ["a", "b"],
        "empty_list": [],
        "int_list": "[1, 2]",
        "dict": '{"k": 1, "nested": {"z": [1, "x"]}}',
        "none": "<absent>",
        "dataclass": '{"x": 1, "y": 2}',
    }
    # wire types, not only values: an int is an int, a bool a bool, a float a double
    by = {
        _input(s)["which"]: s.attributes.get("traceroot.span.output")
        for s in spans.named("returns")
    }
    assert type(by["zero"]) is int and type(by["true"]) is bool and type(by["float"]) is float


def test_capture_flags_metadata_tags_user_session(shapes) -> None:
    _, spans, _ = shapes
    private = spans.one("private").attributes
    assert "traceroot.span.input" not in private and "traceroot.span.output" not in private
    assert "pw" not in json.dumps(private)
    meta = spans.one("decorated_meta").attributes
    assert meta["traceroot.span.metadata"] == '{"m": 1, "s": "x"}'
    assert meta["traceroot.span.tags"] == ["t1", "t2"]
    assert meta["traceroot.trace.user_id"] == "u-dec"
    assert meta["traceroot.trace.session_id"] == "s-dec"
    assert "user.id" not in meta  # the decorator's user_id is not the OpenInference one


def test_unknown_kind_warns_and_falls_back(shapes) -> None:
    _, spans, stderr = shapes
    assert spans.one("bogus_kind").attributes["traceroot.span.type"] == "span"
    assert spans.one("bare").attributes["traceroot.span.type"] == "span"  # the default
    lines = warnings_in(stderr, "bogus")
    assert len(lines) == 1, stderr
    assert "span" in lines[0]


def test_async_spans_nest(shapes) -> None:
    _, spans, _ = shapes
    amain = spans.one("amain")
    children = spans.named("async_child")
    assert len(children) == 3
    assert all(c.parent_span_id == amain.span_id for c in children)
    assert all(c.trace_id == amain.trace_id for c in children)
    assert sorted(c.attributes["traceroot.span.output"] for c in children) == [2, 4, 42]
    assert amain.attributes["traceroot.span.output"] == 48
    assert all(c.attributes["traceroot.span.path"] == ["amain", "async_child"] for c in children)


def test_span_kind_enum_equals_strings() -> None:
    assert SpanKind.LLM == "llm" and SpanKind.AGENT == "agent"
    assert SpanKind.TOOL == "tool" and SpanKind.SPAN == "span"
    assert SpanKind("tool") is SpanKind.TOOL
    assert str(SpanKind.AGENT) == "agent" and f"{SpanKind.LLM}" == "llm"
    assert {"llm": 1}[SpanKind.LLM] == 1


GENERATORS = r"""
import asyncio
import traceroot
from traceroot import observe

traceroot.initialize()

@observe(type="tool")
def child(i):
    return i

@observe()
def gen_with_child(n):
    for i in range(n):
        yield child(i)

@observe()
def gen_strings():
    yield "item0"
    yield "item1"

@observe()
def gen_empty():
    return
    yield

@observe()
def endless():
    i = 0
    while True:
        yield i
        i += 1

@observe()
def gen_boom():
    yield 1
    raise RuntimeError("gen boom")

@observe()
def echo():
    got = yield "first"
    yield f"got {got}"

def consume():
    return list(gen_with_child(3))  # @consume

print(consume())
print(list(gen_strings()), list(gen_empty()))
for i in endless():
    if i == 2:
        break
it = endless()
next(it)
it.close()
try:
    list(gen_boom())
except RuntimeError as exc:
    print("caught", exc)
e = echo()
print(next(e), e.send("ping"))
e.close()

@observe(type="tool")
async def achild(i):
    return i * 10

@observe()
async def agen(n):
    for i in range(n):
        yield await achild(i)

@observe()
async def agen_endless():
    i = 0
    while True:
        yield i
        i += 1

@observe()
async def agen_cleanup():
    try:
        yield 1
        yield 2
    finally:
        await achild(99)

@observe()
def gen_cleanup():
    try:
        yield 1
        yield 2
    finally:
        child(77)

async def main():
    print([x async for x in agen(2)])
    g = agen_endless()
    print(await g.__anext__())
    await g.aclose()
    g = agen_cleanup()
    await g.__anext__()
    await g.aclose()
    g = gen_cleanup()
    next(g)
    g.close()

asyncio.run(main())
"""


def test_generators(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, GENERATORS, expect=18)
    assert len(spans) == 18, spans.names()
    assert "Failed to detach" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        "[0, 1, 2]",
        "['item0', 'item1'] []",
        "caught gen boom",
    ]
    assert proc.stdout.splitlines()[3] == "first got ping"

    gen = spans.one("gen_with_child")
    kids_all = spans.named("child")
    kids = [k for k in kids_all if k.parent_span_id == gen.span_id]
    assert len(kids) == 3
    # Children made inside the generator body are the generator span's children.
    assert all(k.parent_span_id == gen.span_id and k.trace_id == gen.trace_id for k in kids)
    assert all(k.attributes["traceroot.span.path"] == ["gen_with_child", "child"] for k in kids)
    assert gen.attributes["traceroot.span.output"] == "[0, 1, 2]"
    assert json.loads(gen.attributes["traceroot.span.input"]) == {"n": 3}
    assert gen.attributes["traceroot.git.source_function"] == "consume"
    assert gen.attributes["traceroot.git.source_line"] == line_of(GENERATORS, "@consume")
    assert gen.end_ns >= max(k.end_ns for k in kids)

    assert spans.one("gen_strings").attributes["traceroot.span.output"] == ["item0", "item1"]
    assert "traceroot.span.output" not in spans.one("gen_empty").attributes

    # Closed early (break, close()): the span still ends and is exported, with no output.
    endless = spans.named("endless")
    assert len(endless) == 2
    for span in endless:
        assert span.end_ns > span.start_ns
        assert span.status_code != "ERROR"
        assert "traceroot.span.output" not in span.attributes

    boom = spans.one("gen_boom")
    assert boom.status_code == "ERROR"
    assert boom.status_message == "RuntimeError: gen boom"
    assert [e.name for e in boom.events] == ["exception"]
    assert "traceroot.span.output" not in boom.attributes

    assert spans.one("echo").status_code != "ERROR"

    agen = spans.one("agen")
    akids_all = spans.named("achild")
    akids = [k for k in akids_all if k.parent_span_id == agen.span_id]
    assert len(akids) == 2
    assert all(k.parent_span_id == agen.span_id for k in akids)
    assert agen.attributes["traceroot.span.output"] == "[0, 10]"
    # Spans made while a generator closed early (its finally) are still its children.
    cleanup = spans.one("agen_cleanup")
    (late,) = [s for s in akids_all if json.loads(s.attributes["traceroot.span.input"])["i"] == 99]
    assert late.parent_span_id == cleanup.span_id
    sync_cleanup = spans.one("gen_cleanup")
    (late,) = [s for s in kids_all if json.loads(s.attributes["traceroot.span.input"])["i"] == 77]
    assert late.parent_span_id == sync_cleanup.span_id
    aendless = spans.one("agen_endless")
    assert aendless.end_ns > aendless.start_ns
    assert "traceroot.span.output" not in aendless.attributes


EXCEPTIONS = r'''
import asyncio, functools, inspect, json
import traceroot
from traceroot import observe

traceroot.initialize()

ERR = ValueError("bad 1")

@observe()
def raises(x):
    raise ERR

class Custom(Exception):
    pass

@observe()
async def araises():
    raise KeyError("akey")

@observe(type="agent")
def outer():
    try:
        raises(2)
    except ValueError:
        pass
    raise Custom("from outer")

result = {}
try:
    raises(1)
except ValueError as exc:
    result["same"] = exc is ERR
    result["tb_has_user_frame"] = "raises" in [
        f.name for f in __import__("traceback").extract_tb(exc.__traceback__)
    ]
try:
    asyncio.run(araises())
except KeyError as exc:
    result["akey"] = exc.args
try:
    outer()
except Custom as exc:
    result["custom"] = type(exc).__name__

def original(a: int, b: str = "x", *rest: float, flag: bool = False) -> str:
    """Original docstring."""
    return b * a

async def aoriginal(q: str) -> str:
    """Async doc."""
    return q

def goriginal(n: int):
    """Gen doc."""
    yield n

async def agoriginal(n: int):
    """Async gen doc."""
    yield n

wrapped, awrapped = observe()(original), observe(name="x")(aoriginal)
gwrapped, agwrapped = observe()(goriginal), observe()(agoriginal)
result["meta"] = {
    "name": wrapped.__name__, "qualname": wrapped.__qualname__, "doc": wrapped.__doc__,
    "sig": str(inspect.signature(wrapped)), "wrapped": wrapped.__wrapped__ is original,
    "module": wrapped.__module__, "annotations": list(wrapped.__annotations__),
    "aname": awrapped.__name__, "adoc": awrapped.__doc__,
    "asig": str(inspect.signature(awrapped)),
    "is_coro": inspect.iscoroutinefunction(awrapped),
    "is_gen": inspect.isgeneratorfunction(gwrapped),
    "is_agen": inspect.isasyncgenfunction(agwrapped),
    "gdoc": gwrapped.__doc__, "agdoc": agwrapped.__doc__,
    "call": wrapped(2, "ab"),
}
print(json.dumps(result))
'''


def test_exceptions_and_wraps(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, EXCEPTIONS, expect=5)
    result = stdout_json(proc)
    assert result["same"] is True  # re-raised unchanged: the very same object
    assert result["tb_has_user_frame"] is True
    assert result["akey"] == ["akey"]
    assert result["custom"] == "Custom"

    first = next(
        s
        for s in spans.named("raises")
        if json.loads(s.attributes["traceroot.span.input"]) == {"x": 1}
    )
    assert first.status_code == "ERROR"
    assert first.status_message == "ValueError: bad 1"
    assert [e.name for e in first.events] == ["exception"]  # exactly one
    event = first.events[0].attributes
    assert event["exception.type"] == "ValueError"
    assert event["exception.message"] == "bad 1"
    assert "ValueError: bad 1" in event["exception.stacktrace"]
    # From the decorated function down: our wrapper's frame is not the program's error.
    assert "traceroot" not in event["exception.stacktrace"], event["exception.stacktrace"]
    assert ", in raises" in event["exception.stacktrace"]
    assert "traceroot.span.output" not in first.attributes

    araises = spans.one("araises")
    assert araises.status_code == "ERROR"
    assert araises.status_message == "KeyError: 'akey'"
    assert len(araises.events) == 1
    assert araises.events[0].attributes["exception.type"] == "KeyError"

    outer = spans.one("outer")
    inner = next(s for s in spans.named("raises") if s.parent_span_id == outer.span_id)
    assert inner.status_code == "ERROR" and len(inner.events) == 1
    assert outer.status_code == "ERROR"
    assert outer.status_message == "Custom: from outer"
    assert len(outer.events) == 1  # the caught inner error is not recorded on the parent

    meta = result["meta"]
    assert meta == {
        "name": "original",
        "qualname": "original",
        "doc": "Original docstring.",
        "sig": "(a: int, b: str = 'x', *rest: float, flag: bool = False) -> str",
        "wrapped": True,
        "module": "__main__",
        "annotations": ["a", "b", "rest", "flag", "return"],
        "aname": "aoriginal",
        "adoc": "Async doc.",
        "asig": "(q: str) -> str",
        "is_coro": True,
        "is_gen": True,
        "is_agen": True,
        "gdoc": "Gen doc.",
        "agdoc": "Async gen doc.",
        "call": "abab",
    }
    called = spans.one("original")
    assert json.loads(called.attributes["traceroot.span.input"]) == {
        "a": 2,
        "b": "ab",
        "rest": [],
        "flag": False,
    }


DEEP_ERROR = r"""
import json, sys, traceback
import traceroot
from traceroot import observe

traceroot.initialize()
sys.setrecursionlimit(5000)
formatted = 0
original = traceback.format_exception

def counting(*args, **kwargs):
    global formatted
    formatted += 1
    return original(*args, **kwargs)

traceback.format_exception = counting

@observe
def dive(n):
    if n == 0:
        raise ValueError("at the bottom")
    return dive(n - 1)

try:
    dive(449)
except ValueError as exc:
    print(json.dumps({"formatted": formatted, "message": str(exc)}))
"""


def test_an_exception_through_many_traced_frames_is_formatted_once(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_FLUSH_AT": "1000"}
    proc, spans = run_traced(run_python, receiver, env, DEEP_ERROR, expect=450)
    # Each of 450 frames formatted the growing traceback before: O(N^2) for one exception.
    assert stdout_json(proc) == {"formatted": 1, "message": "at the bottom"}
    assert len(spans) == 450
    assert {(s.status_code, s.status_message) for s in spans} == {
        ("ERROR", "ValueError: at the bottom")
    }
    with_trace = [s for s in spans if "exception.stacktrace" in s.events[0].attributes]
    (innermost,) = with_trace
    assert json.loads(innermost.attributes["traceroot.span.input"]) == {"n": 0}
    for span in spans:  # exactly one exception event each, type and message everywhere
        (event,) = span.events
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "at the bottom"


UNREADABLE_OPTIONS = r"""
import json
from traceroot import observe

class Unreadable:
    def __str__(self):
        raise RuntimeError("no text")

    def __iter__(self):
        raise RuntimeError("no items")

@observe(name=Unreadable())
def named():
    return 1

@observe(tags=Unreadable())
def tagged():
    return 2

print(json.dumps([named(), tagged()]))
"""


def test_options_that_cannot_be_read_leave_the_function_traced(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    # They raised at decoration, so the program's import of its own module failed.
    proc, spans = run_traced(run_python, receiver, traceroot_env, UNREADABLE_OPTIONS, expect=2)
    assert stdout_json(proc) == [1, 2]
    assert sorted(s.name for s in spans) == ["named", "tagged"]
    assert len(warnings_in(proc.stderr, "could not be read")) == 2, proc.stderr
    assert "Traceback" not in proc.stderr


WRITTEN_FOR_0_5_0 = r"""
import json
import traceroot
from traceroot import observe
from traceroot.constants import SpanKind  # where 0.5.0 keeps it

client = traceroot.initialize()

@observe("lookup", SpanKind.TOOL)  # name and type in the documented order
def lookup(q):
    return q.encode()  # bytes holding text

@observe("agent", "agent", {"v": 1}, ["t"])
def agent():
    return lookup("weather")

agent()
print(json.dumps({
    "same_kind": SpanKind is traceroot.SpanKind,
    "client": [client.api_key, client.host_url == client.config.host_url, client.batch_size,
               client.flush_interval, client.git_repo, client.span_processor is not None],
}))
"""


def test_a_program_written_for_0_5_0_runs_unchanged(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    env = {**traceroot_env, "TRACEROOT_GIT_REPO": "acme/agent"}
    proc, spans = run_traced(run_python, receiver, env, WRITTEN_FOR_0_5_0, expect=2)
    assert stdout_json(proc) == {
        "same_kind": True,
        "client": ["test-key", True, 100, 0.2, "acme/agent", True],
    }
    lookup, agent = spans.one("lookup"), spans.one("agent")
    assert lookup.attributes["traceroot.span.type"] == "tool"
    assert lookup.attributes["traceroot.span.output"] == "weather"  # the text, as 0.5.0 sends it
    assert agent.attributes["traceroot.span.type"] == "agent"
    assert json.loads(agent.attributes["traceroot.span.metadata"]) == {"v": 1}
    assert list(agent.attributes["traceroot.span.tags"]) == ["t"]


PROMPT_TEMPLATE_BLOCK = r"""
from traceroot import observe, using_attributes

@observe
def fill():
    return "ok"

with using_attributes(
    user_id="u1",
    prompt_template="Hello {name}",
    prompt_template_version="v1",
    prompt_template_variables={"name": "Ann"},
):
    fill()
fill()  # outside the block: none of it
"""


def test_using_attributes_takes_0_5_0_prompt_template_arguments(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    _, spans = run_traced(run_python, receiver, traceroot_env, PROMPT_TEMPLATE_BLOCK, expect=2)
    inside, outside = sorted(spans.named("fill"), key=lambda s: s.start_ns)
    assert inside.attributes["llm.prompt_template.template"] == "Hello {name}"
    assert inside.attributes["llm.prompt_template.version"] == "v1"
    assert json.loads(inside.attributes["llm.prompt_template.variables"]) == {"name": "Ann"}
    assert inside.attributes["user.id"] == "u1"
    assert not any(k.startswith("llm.prompt_template") for k in outside.attributes)
