"""Serialization of captured values, and the attribute size bound (unit and end to end)."""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import enum
import json
import math
import random
import re
import sys
import threading
import time
import types
import uuid
from decimal import Decimal
from pathlib import PurePosixPath

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import run_traced

from traceroot._serialize import CYCLE, to_json, to_jsonable, to_output_value, truncate

ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
MARKER = re.compile(r"\.\.\.\[truncated (\d+) chars\]$")


def assert_cut(value: str, original: str, limit: int) -> None:
    """`value` is `original` cut to at most `limit` chars, with a marker counting the cut."""
    assert len(value) <= limit, len(value)
    match = MARKER.search(value)
    assert match, value[-60:]
    kept = value[: match.start()]
    assert original.startswith(kept) and len(kept) >= limit - 40  # only the marker's room
    assert int(match.group(1)) == len(original) - len(kept)


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Line:
    a: Point
    b: Point
    label: str = "l"


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Plain:
    def __init__(self) -> None:
        self.a = 1
        self.b = "two"
        self._private = "hidden"


class Slotted:
    __slots__ = ("x", "y", "_z")

    def __init__(self) -> None:
        self.x = 1
        self.y = [1, 2]
        self._z = "hidden"


class Opaque:
    __slots__ = ()


def test_scalars_and_stdlib_types() -> None:
    value = {
        "dt": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "tz": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        "date": datetime.date(2024, 5, 6),
        "time": datetime.time(7, 8),
        "uuid": uuid.UUID(int=1),
        "enum": Color.RED,
        "intenum": Level.HIGH,
        "bytes": b"hi",
        "badbytes": b"\xff\xfe",
        "set": {3, 1, 2},
        "frozenset": frozenset({"b", "a"}),
        "tuple": (1, "a"),
        "decimal": Decimal("1.5"),
        "path": PurePosixPath("/x/y"),
        "none": None,
        "int_keys": {1: "one"},
    }
    assert to_jsonable(value) == {
        "dt": "2024-01-02T03:04:05",
        "tz": "2024-01-02T00:00:00+00:00",
        "date": "2024-05-06",
        "time": "07:08:00",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "enum": "red",
        "intenum": 3,
        "bytes": "hi",
        "badbytes": "<2 bytes>",
        "set": [1, 2, 3],
        "frozenset": ["a", "b"],
        "tuple": [1, "a"],
        "decimal": "1.5",
        "path": "/x/y",
        "none": None,
        "int_keys": {"1": "one"},
    }


def test_plain_arguments_are_exactly_json_dumps() -> None:
    for value in (
        {},
        {"i": 5},
        {"text": 'héllo ✓ "quoted"\n', "none": None, "yes": True, "no": False, "n": -(2**70)},
        {"self": "x", "key with spaces": ""},
    ):
        assert to_json(value) == json.dumps(value)


PNG_BASE64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 5).decode()
LEAVES = ["", "plain", 'quo"te\\', "✓ ünï", "\ud800", "x" * 1023, PNG_BASE64, 0, -(2**70), True,
          False, None, 1.5, math.nan, -math.inf, b"bytes", PurePosixPath("/p"), {1, 2}]  # fmt: skip
ODD_KEYS = ["k", True, None, 7, 1.5, "é"]


def _random_tree(rng: random.Random, depth: int = 0) -> object:
    """A JSON-like value with the edge cases the quick path must hand to the walk."""
    if depth >= 10 or rng.random() >= 0.7 / (depth + 1):
        return rng.choice(LEAVES)
    size = rng.choice([0, 1, 3, 3, 70 if depth < 2 else 2])
    if rng.random() < 0.5:
        keys = ODD_KEYS if rng.random() < 0.1 else ["a", "b", "é\n"]
        names = [f"{rng.choice(keys)}{i}" if i % 5 else rng.choice(keys) for i in range(size)]
        return {name: _random_tree(rng, depth + 1) for name in names}
    items = [_random_tree(rng, depth + 1) for _ in range(size)]
    return tuple(items) if rng.random() < 0.2 else items


def test_small_values_take_a_quick_path_with_the_walks_very_answer() -> None:
    rng = random.Random(20261204)
    checked = 0
    for _ in range(3000):
        value = _random_tree(rng)
        if rng.random() < 0.05 and isinstance(value, list):
            value.append(value)  # a cycle
        for limit in (60, 2000, 32768):
            text = to_json(value, limit)
            assert len(text) <= limit
            walked = json.dumps(to_jsonable(value, limit), allow_nan=False)
            if len(walked) <= limit and "truncated" not in walked and "more items" not in walked:
                assert text == walked, value
                checked += 1
            else:
                assert MARKER.search(text) or "items not read" in text, text[-80:]
    assert checked > 1000
    # What JSON writes differently from the walk is never taken as it is.
    assert to_json({True: 1, None: 2}) == '{"True": 1, "None": 2}'
    assert to_json({"n": [math.nan]}) == '{"n": ["NaN"]}'


def test_nan_and_infinity_become_strings() -> None:
    assert to_json([math.nan, math.inf, -math.inf, 1.5]) == '["NaN", "Infinity", "-Infinity", 1.5]'
    assert to_output_value(math.nan) == "NaN"
    assert to_output_value(-math.inf) == "-Infinity"
    assert to_output_value(2.5) == 2.5


def test_dataclass_pydantic_dict_and_slots_objects() -> None:
    pydantic = pytest.importorskip("pydantic")

    class User(pydantic.BaseModel):
        name: str
        joined: datetime.date
        tags: list[str] = []

    assert to_json(Line(Point(1, 2), Point(3, 4))) == (
        '{"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 4}, "label": "l"}'
    )
    assert to_jsonable(User(name="ann", joined=datetime.date(2024, 1, 1))) == {
        "name": "ann",
        "joined": "2024-01-01",
        "tags": [],
    }
    assert to_jsonable(Plain()) == {"a": 1, "b": "two"}  # private attributes left out
    assert to_jsonable(Slotted()) == {"x": 1, "y": [1, 2]}
    assert to_jsonable(collections.OrderedDict(a=1)) == {"a": 1}
    assert to_jsonable(collections.namedtuple("P", "a b")(1, 2)) == [1, 2]
    assert to_jsonable(types.MappingProxyType({"k": "v"})) == {"k": "v"}


def test_never_a_memory_address() -> None:
    def local_function() -> None: ...

    class Local:
        pass

    values = [
        object(),
        Opaque(),
        local_function,
        lambda: 1,
        len,
        Local,
        Plain().__init__,
        (i for i in ()),
        iter([1]),
        types,
        ValueError("boom"),
        complex(1, 2),
        Ellipsis,
        {"nested": [object(), {"deeper": Opaque()}]},
    ]
    for value in values:
        for text in (to_json(value), json.dumps(to_output_value(value))):
            assert not ADDRESS.search(text), f"{value!r} -> {text}"
            assert " at " not in text, text
    assert to_jsonable(object()) == "<object>"
    assert to_jsonable(types) == "<module types>"  # not the module's whole namespace
    assert to_jsonable(ValueError("boom")) == "ValueError: boom"
    assert "local_function" in to_jsonable(local_function)


def test_cycles_become_a_placeholder_and_the_rest_is_kept() -> None:
    d: dict = {"a": 1, "items": [1, 2]}
    d["self"] = d
    lst: list = [1, "x"]
    lst.append(lst)
    node = Plain()
    node.a = node  # type: ignore[assignment]
    assert to_jsonable(d) == {"a": 1, "items": [1, 2], "self": CYCLE}
    assert to_jsonable(lst) == [1, "x", CYCLE]
    assert to_jsonable(node) == {"a": CYCLE, "b": "two"}
    # A value seen twice but not inside itself is not a cycle.
    shared = [1]
    assert to_jsonable({"p": shared, "q": shared}) == {"p": [1], "q": [1]}
    # Depth is bounded too.
    deep: list = []
    cursor = deep
    for _ in range(200):
        cursor.append([])
        cursor = cursor[0]
    assert "nested too deep" in to_json(deep)


def test_output_shapes() -> None:
    assert to_output_value("s") == "s"
    assert to_output_value(0) == 0 and to_output_value(False) is False
    assert to_output_value(["a", "b"]) == ["a", "b"]
    assert to_output_value(("a",)) == ["a"]
    assert to_output_value([]) == []
    assert to_output_value([1, 2]) == "[1, 2]"
    assert to_output_value({"k": 1}) == '{"k": 1}'
    assert to_output_value(Point(1, 2)) == '{"x": 1, "y": 2}'
    # json.dumps defaults, as the reference: ", " / ": " separators, ASCII only, keys in order.
    assert to_json({"b": "é", "a": 1}) == '{"b": "\\u00e9", "a": 1}'


def test_truncation_marker_counts_what_was_cut() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("a" * 100, 100) == "a" * 100
    assert_cut(truncate("a" * 101, 100), "a" * 101, 100)
    assert_cut(to_output_value("y" * 150, 100), "y" * 150, 100)  # type: ignore[arg-type]
    (item,) = to_output_value(["y" * 150], 100)  # type: ignore[misc]
    assert_cut(item, "y" * 150, 100)
    # A long string inside a JSON value: the marker counts what the whole JSON lost.
    big = "x" * 1_000_000
    assert_cut(to_json({"data": big}, 100), json.dumps({"data": big}), 100)
    assert_cut(to_json(["q" * 80] * 5, 100), json.dumps(["q" * 80] * 5), 100)
    assert_cut(to_jsonable(b"z" * 500, 100), "z" * 500, 100)
    # Cutting an already cut value changes nothing.
    once = truncate("w" * 5000, 1000)
    assert truncate(once, 1000) == once


PROGRAM = r"""
import json, os, time
import traceroot
from traceroot import update_current_span
from traceroot import observe
from opentelemetry import trace

traceroot.initialize()

@observe()
def takes_big(blob, small="kept"):
    return blob

@observe()
def takes_cycle(d):
    update_current_span(metadata=d)
    return d

@observe()
def big_generator():
    for i in range(3):
        yield "g" * 5000

@observe()
def big_update():
    update_current_span(prompt=[{"content": "p" * 5000}], model_parameters={"k": "m" * 5000})

started = time.monotonic()
takes_big("x" * 10_000_000)
cyclic = {"a": 1, "nested": {"b": [1, 2]}}
cyclic["self"] = cyclic
takes_cycle(cyclic)
list(big_generator())
big_update()
with trace.get_tracer("thirdparty").start_as_current_span("raw") as raw:
    raw.set_attribute("huge", "h" * 5000)

@observe()
def sets_huge():
    trace.get_current_span().set_attribute("huge", "d" * 5000)

sets_huge()
print(json.dumps({"elapsed": time.monotonic() - started}))
"""


def test_limits_end_to_end(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    env = {**traceroot_env, "TRACEROOT_MAX_ATTRIBUTE_LENGTH": "1000"}
    proc, spans = run_traced(run_python, receiver, env, PROGRAM, expect=6)
    assert json.loads(proc.stdout)["elapsed"] < 5

    big = spans.one("takes_big").attributes
    assert_cut(
        big["traceroot.span.input"], json.dumps({"blob": "x" * 10_000_000, "small": "kept"}), 1000
    )
    assert_cut(big["traceroot.span.output"], "x" * 10_000_000, 1000)

    cyc = spans.one("takes_cycle").attributes
    expected = {"a": 1, "nested": {"b": [1, 2]}, "self": CYCLE}
    assert json.loads(cyc["traceroot.span.input"]) == {"d": expected}
    assert json.loads(cyc["traceroot.span.output"]) == expected
    assert json.loads(cyc["traceroot.span.metadata"]) == expected

    gen = spans.one("big_generator").attributes["traceroot.span.output"]
    assert len(gen) == 3
    for item in gen:
        assert_cut(item, "g" * 5000, 1000)

    upd = spans.one("big_update").attributes
    for key in ("traceroot.llm.prompt", "traceroot.llm.model_parameters"):
        assert len(upd[key]) <= 1000 and MARKER.search(upd[key])
    # Spans from any tracer are bounded on their way out.
    assert_cut(spans.one("raw").attributes["huge"], "h" * 5000, 1000)
    assert_cut(spans.one("sets_huge").attributes["huge"], "d" * 5000, 1000)
    # The whole request stayed small.
    assert max(r.body_length for r in receiver.requests) < 50_000


def test_default_limit_is_32768(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    script = (
        "import traceroot\ntraceroot.initialize()\n"
        "@traceroot.observe\ndef f():\n    return 'z' * 40000\nf()\n"
    )
    _, spans = run_traced(run_python, receiver, traceroot_env, script, expect=1)
    out = spans.one("f").attributes["traceroot.span.output"]
    assert_cut(out, "z" * 40000, 32768)


def test_a_string_array_is_bounded_in_total() -> None:
    values = ["s" * 100] * 50
    bounded = to_output_value(values, 100)
    assert isinstance(bounded, list)
    assert bounded[:8] == ["s" * 100] * 8
    assert bounded[8:] == ["...[42 more items]"]
    assert to_output_value(["a", "b"], 100) == ["a", "b"]


def test_a_value_another_thread_changes_meanwhile_never_raises() -> None:
    # A program's thread may change a dict while it is captured as another call's argument:
    # reading it then raises "dictionary changed size during iteration".
    shared: dict[str, object] = {f"k{i}": [i, "v"] for i in range(60)}
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            shared[f"x{i % 3}"] = i
            shared.pop(f"x{(i + 1) % 3}", None)
            i += 1

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert to_json({"data": shared}).startswith('{"data": ')
    finally:
        sys.setswitchinterval(old_interval)
        stop.set()
        worker.join()
