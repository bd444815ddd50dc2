"""Values that would make serializing them slow, huge or endless; numpy and pandas values.

Serializing an argument stops when its budget of items and characters is spent,
and reads each object's attributes without asking its `__getattr__`.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import run_traced, stdout_json

from traceroot._serialize import to_json, to_jsonable, to_output_value

NOT_READ = re.compile(r"\.\.\.\[truncated (\d+) chars, (\d+\+?|more) items not read\]$")


class CountingMapping(Mapping[int, str]):
    """A lazy mapping of `size` entries (None: endless) that counts the values it hands out."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.reads = 0

    def __getitem__(self, key: int) -> str:
        self.reads += 1
        return "v" * 20

    def __iter__(self) -> Iterator[int]:
        index = 0
        while self.size is None or index < self.size:
            yield index
            index += 1

    def __len__(self) -> int:
        if self.size is None:
            raise TypeError("endless")
        return self.size


class Probed:
    """An object whose `__getattr__` is slow; it counts how often it is asked."""

    probes = 0

    def __init__(self) -> None:
        self.visible = 1

    def __getattr__(self, name: str) -> Any:
        type(self).probes += 1
        raise AttributeError(name)


class Answering:
    """A proxy answering every attribute (like a mock): never mistaken for pydantic."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: Answering()


def test_a_million_entries_cost_the_budget_and_say_how_many_were_left_out() -> None:
    big = {i: i for i in range(1_000_000)}
    text = to_json({"d": big})
    assert len(text) <= 32768
    match = NOT_READ.search(text)
    assert match, text[-100:]
    shown = text.count(": ") - 1  # one "key": value per entry shown, and "d"
    assert 900_000 < int(match.group(2)) <= 1_000_000 - shown
    lazy = CountingMapping(1_000_000)
    text = to_json(lazy)
    assert lazy.reads < 20_000  # the budget, not the million
    match = NOT_READ.search(text)
    assert match and int(match.group(2)) == 1_000_000 - lazy.reads


def test_a_short_result_keeps_the_note_of_what_was_left_out() -> None:
    text = to_json(list(range(100_000)))
    assert len(text) < 32768  # fits: the note is inside the JSON, not in a cut marker
    values = json.loads(text)
    assert values[:3] == [0, 1, 2]
    assert values[-1] == f"...[{100_000 - len(values) + 1} more items]"


def test_an_endless_mapping_stops() -> None:
    endless = CountingMapping(None)
    text = to_json({"e": endless}, 1000)
    assert endless.reads < 2000
    assert NOT_READ.search(text), text[-80:]
    assert to_jsonable({"e": CountingMapping(None)}, 100)["e"]["..."] == "...[more items not read]"


def test_getattr_is_never_asked() -> None:
    Probed.probes = 0
    assert to_jsonable({"p": Probed(), "list": [Probed(), Probed()]}) == {
        "p": {"visible": 1},
        "list": [{"visible": 1}, {"visible": 1}],
    }
    assert Probed.probes == 0
    assert to_json(Answering()) == "{}"  # no attributes of its own


ENDLESS_PROGRAM = r"""
import json, resource, sys
from collections.abc import Mapping

# The untraced call returns at once; traced, it must too, within a fixed memory.
limit = 1024 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

import traceroot
traceroot.initialize()

class Endless(Mapping):
    def __getitem__(self, key):
        return "x" * 1000
    def __iter__(self):
        n = 0
        while True:
            yield n
            n += 1
    def __len__(self):
        return sys.maxsize

@traceroot.observe
def consume(data):
    return data

consume(Endless())
print(json.dumps({"done": True}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="resource limits are POSIX")
def test_an_endless_mapping_argument_under_a_memory_limit(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    proc, spans = run_traced(
        run_python, receiver, traceroot_env, ENDLESS_PROGRAM, expect=1, timeout=60
    )
    assert stdout_json(proc) == {"done": True}
    attributes = spans.one("consume").attributes
    for key in ("traceroot.span.input", "traceroot.span.output"):
        value = attributes[key]
        assert len(value) <= 32768
        assert NOT_READ.search(value), value[-80:]


def test_numpy_values_are_numbers_lists_and_shapes() -> None:
    np = pytest.importorskip("numpy")
    value = {
        "int": np.int64(3),
        "float": np.float32(1.5),
        "bool": np.bool_(True),
        "nan": np.float64("nan"),
        "zero_d": np.array(7),
        "vector": np.array([1, 2, 3]),
        "matrix": np.arange(4).reshape(2, 2),
        "strided": np.arange(10)[::2],
    }
    assert to_jsonable(value) == {
        "int": 3,
        "float": 1.5,
        "bool": True,
        "nan": "NaN",
        "zero_d": 7,
        "vector": [1, 2, 3],
        "matrix": [[0, 1], [2, 3]],
        "strided": [0, 2, 4, 6, 8],
    }
    assert to_output_value(np.int64(5)) == "5"
    big = to_jsonable(np.zeros((1000, 1000)), 1000)
    assert big["shape"] == [1000, 1000] and big["dtype"] == "float64"
    assert 0 < len(big["values"]) < 1000 and set(big["values"]) == {0.0}
    assert big["..."] == f"...[{1_000_000 - len(big['values'])} more items]"


def test_pandas_values_are_shapes_columns_and_rows() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1, 2], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    assert to_jsonable({"df": frame, "s": pd.Series([1.5, 2.5])}) == {
        "df": {
            "shape": [2, 2],
            "columns": ["x", "when"],
            "rows": [
                {"x": 1, "when": "2024-01-01T00:00:00"},
                {"x": 2, "when": "2024-01-02T00:00:00"},
            ],
        },
        "s": [1.5, 2.5],
    }
    long = to_jsonable(pd.DataFrame({"x": range(1_000_000)}), 1000)
    assert long["shape"] == [1_000_000, 1] and 0 < len(long["rows"]) < 1000
    assert long["..."] == f"...[{1_000_000 - len(long['rows'])} more items]"


NUMPY_PROGRAM = r"""
import json, sys
import traceroot
traceroot.initialize()

@traceroot.observe
def plain(values):
    return {"n": len(values)}

plain([1, 2, 3])
before = sorted(m for m in ("numpy", "pandas") if m in sys.modules)

import numpy as np

@traceroot.observe
def stats(values, scale):
    return values * scale

stats(np.array([1.0, 2.0]), np.float64(2))
print(json.dumps({"imported_by_us": before}))
"""


def test_numpy_is_never_imported_by_us_and_captured_when_the_program_uses_it(
    run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    pytest.importorskip("numpy")
    proc, spans = run_traced(run_python, receiver, traceroot_env, NUMPY_PROGRAM, expect=2)
    assert stdout_json(proc) == {"imported_by_us": []}
    attributes = spans.one("stats").attributes
    assert json.loads(attributes["traceroot.span.input"]) == {"values": [1.0, 2.0], "scale": 2.0}
    assert json.loads(attributes["traceroot.span.output"]) == [2.0, 4.0]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8000  # 2 MB of base64 once encoded


def test_media_in_an_argument_becomes_a_placeholder() -> None:
    encoded = base64.b64encode(PNG).decode()
    placeholder = f"[media image/png, {len(PNG)} bytes]"
    assert to_jsonable({"url": "data:image/png;base64," + encoded}) == {"url": placeholder}
    assert to_jsonable([encoded]) == [placeholder]  # sniffed from its first bytes
    assert to_output_value(encoded) == placeholder
    wav = base64.b64encode(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8).decode()
    assert to_output_value(wav) == f"[media audio/wav, {16 + 256 * 8} bytes]"
    # Shorter than the sample read, its padding included: still media.
    small = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 5).decode()
    assert small.endswith("==") and len(small) < 4096
    assert to_jsonable({"image": small}) == {"image": "[media image/png, 1288 bytes]"}
    # Long text that is not base64 is cut as before; a long hex digest is not media.
    assert to_output_value("word " * 1000, 100).startswith("word word")  # type: ignore[union-attr]
    assert to_output_value("ab12" * 500) == "ab12" * 500


def test_a_failure_is_told_in_words_never_as_a_raw_repr() -> None:
    from traceroot._errors import in_words

    class Loud(Exception):
        def __str__(self) -> str:
            return "line one\nline two\x00" + "x" * 1000

    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no words")

    words = in_words(Loud())
    assert words.startswith("Loud: line one line two") and words.endswith("...")
    assert "\n" not in words and "\x00" not in words and len(words) < 320
    assert in_words(Broken()) == "Broken"
    assert in_words(ValueError()) == "ValueError"


# What OTLP cannot carry as it is: strings UTF-8 cannot carry, a lone surrogate (JSON's "\ud83d"
# on its own, a file name decoded with surrogateescape) or a pair as two code points, which
# protobuf and SQLite refuse (one such value once cost every span sent in the same request);
# integers beyond 64 bits, which once wrapped around (2**70 arrived as 0).
UNCARRIED = r"""
import json, traceroot
from opentelemetry import trace
from traceroot import observe, update_current_span

@observe(type="tool")
def before():
    return "ok"

@observe(type="tool")
def lone():
    update_current_span(metadata={"file": "caf\udce9.txt"})
    return "half \ud83d of an emoji"

@observe(type="tool")
def pair():
    return "whole \ud83d\ude00"

@observe(type="tool")
def fails():
    raise ValueError("bad byte \udcff")

@observe(type="tool")
def huge():
    trace.get_current_span().set_attribute("count", 2**70)
    trace.get_tracer("lib").start_span("odd kind", kind=7).end()  # no SpanKind: INTERNAL
    return -(2**64)

@observe(name="agent \udc80", type="agent")
def agent():
    before()
    lone()
    pair()
    huge()
    try:
        fails()
    except ValueError:
        pass
    return "done"

print(agent())
"""
UNCARRIED_SPANS = 7


def _check_made_encodable(spans: list[Any]) -> None:
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"agent \ufffd", "before", "lone", "pair", "huge", "fails", "odd kind"}
    assert by_name["huge"].attributes["traceroot.span.output"] == str(-(2**64))
    assert by_name["huge"].attributes["count"] == str(2**70)
    assert by_name["lone"].attributes["traceroot.span.output"] == "half \ufffd of an emoji"
    assert "caf\\udce9" in by_name["lone"].attributes["traceroot.span.metadata"]  # JSON escape
    assert by_name["pair"].attributes["traceroot.span.output"] == "whole \U0001f600"
    failed = by_name["fails"]
    assert failed.status_message == "ValueError: bad byte \ufffd"
    assert failed.events[0].attributes["exception.message"] == "bad byte \ufffd"


def test_values_otlp_cannot_carry_cost_no_span_over_otlp_http(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, UNCARRIED, expect=UNCARRIED_SPANS)
    assert proc.stdout == "done\n" and proc.stderr == ""
    assert {r.status for r in receiver.requests} == {200}
    assert len(spans) == UNCARRIED_SPANS
    _check_made_encodable(list(spans))


def test_values_otlp_cannot_carry_cost_no_span_over_grpc(run_python: Any) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")
    from net_servers import GRPCReceiver

    with GRPCReceiver() as rx:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "TRACEROOT_FLUSH_INTERVAL": "0.2",
        }
        proc = run_python(UNCARRIED, env=env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "done\n", "")
        spans = rx.wait_for_spans(UNCARRIED_SPANS)
    assert len(spans) == UNCARRIED_SPANS
    _check_made_encodable(spans)


def test_values_otlp_cannot_carry_cost_no_span_in_the_local_store(
    run_python: Any, tmp_path: Any
) -> None:
    import sqlite3

    env = {"TRACEROOT_LOCAL_DIR": str(tmp_path), "TRACEROOT_CONSOLE": "false"}
    proc = run_python(UNCARRIED, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "done\n", "")
    with sqlite3.connect(tmp_path / "traces.db") as conn:
        rows = dict(conn.execute("SELECT name, attributes FROM spans").fetchall())
    assert set(rows) == {"agent \ufffd", "before", "lone", "pair", "huge", "fails", "odd kind"}
    assert json.loads(rows["lone"])["traceroot.span.output"] == "half \ufffd of an emoji"


BROKEN_STR = """
from traceroot import observe

class Broken(Exception):
    def __str__(self):
        raise RuntimeError("its __str__ is broken")

@observe(type="tool")
def fails():
    raise Broken()

@observe(type="agent")
def agent():
    try:
        fails()
    except Broken:  # the program's own exception, not one raised while recording it
        return "caught"

print(agent())
"""


def test_an_exception_whose_str_fails_reaches_the_program_unchanged(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    proc, spans = run_traced(run_python, receiver, traceroot_env, BROKEN_STR, expect=2)
    assert proc.stdout == "caught\n" and proc.stderr == ""
    failed = spans.one("fails")
    assert failed.status_message == "Broken: <exception str() failed>"
    [event] = failed.events
    assert event.attributes["exception.message"] == "<exception str() failed>"
    assert "its __str__ is broken" not in event.attributes["exception.stacktrace"]
    assert spans.one("agent").attributes["traceroot.span.output"] == "caught"


MISUSED = """
from traceroot import observe, update_current_span, update_current_trace, using_attributes

@observe(name=123, tags="one tag", session_id=object(), user_id=42)
def named_by_a_number():
    update_current_trace(tags="t")
    return 1

@observe
def renamed():
    update_current_span(name=7, cost="free", model="m")
    return 2

with using_attributes(tags="block", metadata="text"):
    named_by_a_number()
    renamed()
print("ok")
"""


def test_values_of_the_wrong_type_are_made_sense_of_and_cost_no_span(
    run_python: Any, receiver: OTLPReceiver, traceroot_env: dict[str, str]
) -> None:
    # A name that is a number once failed the whole batch at export; tags given as one string
    # became its letters; metadata given as text broke the `with` block; an object as a
    # session id showed its memory address; for a cost that is not a number, the
    # warning said only that the update failed.
    proc, spans = run_traced(run_python, receiver, traceroot_env, MISUSED, expect=2)
    assert proc.stdout == "ok\n"
    [warning] = proc.stderr.splitlines()
    assert "update_current_span(cost=...) takes a number" in warning and "got a str" in warning
    first = spans.one("123").attributes
    assert first["traceroot.span.tags"] == ["one tag"]
    assert first["traceroot.trace.tags"] == ["t"]
    assert (first["traceroot.trace.session_id"], first["traceroot.trace.user_id"]) == (
        "<object>",
        "42",
    )
    assert first["tag.tags"] == ["block"]
    assert json.loads(first["metadata"]) == {"metadata": "text"}
    second = spans.one("7").attributes
    assert second["traceroot.llm.model"] == "m" and "traceroot.llm.cost.total" not in second
