"""`traceroot._frozen` records against what `@dataclass(frozen=True)` makes of the same class."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Mapping
from typing import Any

import pytest

from traceroot import _frozen as frozen


def _pair() -> tuple[type, type]:
    """The same class twice: as a dataclass, and as our record."""

    def body(field: Any) -> dict[str, Any]:
        return {
            "__annotations__": {
                "kind": "str",
                "count": "int",
                "headers": "Mapping[str, str]",
                "note": "str | None",
                "seen": "bool",
            },
            "count": 1,
            "headers": field(default_factory=dict),
            "note": None,
            "seen": field(default=False, compare=False),
        }

    ours = frozen.record(type("Thing", (), body(frozen.field)))
    theirs = dataclasses.dataclass(frozen=True)(type("Thing", (), body(dataclasses.field)))
    return ours, theirs


OURS, THEIRS = _pair()
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a",), {}),
    (("a", 2), {}),
    ((), {"kind": "b", "headers": {"x": "1"}}),
    (("a",), {"note": "n", "seen": True}),
    (("a", 3, {"y": "2"}, "n", True), {}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_a_record_is_built_as_a_dataclass_is(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    ours, theirs = OURS(*args, **kwargs), THEIRS(*args, **kwargs)
    names = [f.name for f in dataclasses.fields(theirs)]
    assert list(frozen.fields(ours)) == names == list(frozen.fields(OURS))
    assert [getattr(ours, n) for n in names] == [getattr(theirs, n) for n in names]
    assert repr(ours) == repr(theirs).replace("_pair.<locals>.", "")
    assert OURS.__match_args__ == THEIRS.__match_args__


def test_equality_and_hash_leave_out_uncompared_fields() -> None:
    a, b = OURS("a", note="n"), OURS("a", note="n", seen=True)
    assert a == b and THEIRS("a", note="n") == THEIRS("a", note="n", seen=True)
    assert hash(OURS("a", 2, ())) == hash(OURS("a", 2, (), seen=True))  # type: ignore[arg-type]
    assert OURS("a") != OURS("b")
    assert OURS("a") != THEIRS("a")  # another class is never equal, as with dataclasses
    with pytest.raises(TypeError):
        hash(OURS("a"))  # a dict field: unhashable, as the dataclass is
    with pytest.raises(TypeError):
        hash(THEIRS("a"))


def test_each_record_gets_its_own_default_factory_value() -> None:
    first, second = OURS("a"), OURS("b")
    assert first.headers == {} and first.headers is not second.headers


def test_fields_cannot_be_changed() -> None:
    for thing in (OURS("a"), THEIRS("a")):
        with pytest.raises(AttributeError):
            thing.kind = "b"
        with pytest.raises(AttributeError):
            del thing.kind
    with pytest.raises(frozen.FrozenInstanceError):
        OURS("a").count = 2


def test_replace_is_dataclasses_replace() -> None:
    ours = frozen.replace(OURS("a", headers={"x": "1"}), count=5, seen=True)
    theirs = dataclasses.replace(THEIRS("a", headers={"x": "1"}), count=5, seen=True)
    assert (ours.kind, ours.count, ours.headers, ours.seen) == (
        theirs.kind, theirs.count, theirs.headers, theirs.seen,
    )  # fmt: skip
    for replace, thing in ((frozen.replace, OURS("a")), (dataclasses.replace, THEIRS("a"))):
        with pytest.raises(TypeError):
            replace(thing, bogus=1)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("a", 1, {}, None, False, "extra"), {}),
        (("a",), {"kind": "b"}),
        (("a",), {"x": 1}),
    ],
)
def test_bad_calls_fail_as_with_dataclasses(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        THEIRS(*args, **kwargs)
    with pytest.raises(TypeError):
        OURS(*args, **kwargs)


def test_a_required_field_after_a_default_is_refused() -> None:
    bad = {"__annotations__": {"a": "int", "b": "int"}, "a": 1}
    with pytest.raises(TypeError):
        dataclasses.dataclass(frozen=True)(type("Bad", (), dict(bad)))
    with pytest.raises(TypeError):
        frozen.record(type("Bad", (), dict(bad)))


def test_a_class_of_its_own_repr_keeps_it_and_records_copy_and_pickle() -> None:
    from traceroot._config import Destination
    from traceroot._otlp_config import OTLPSettings

    destination = Destination(kind="otlp", endpoint="http://u:pw@host", headers={"k": "secret"})
    assert "secret" not in repr(destination) and "pw" not in repr(destination)
    settings = OTLPSettings(endpoint="http://host", headers={"a": "b"}, timeout=2.0)
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert copy.deepcopy(settings) == settings == copy.copy(settings)
    assert isinstance(settings.headers, Mapping)
