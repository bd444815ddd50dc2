"""Turning captured Python values into span attribute values.

Never raises, never shows a memory address, and bounds the size of what it makes.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime
import enum
import json
import json.encoder
import math
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from types import ModuleType
from typing import Any

from opentelemetry.util.types import AttributeValue

from traceroot import _compat as compat
from traceroot._media import MEDIA_MIN_LENGTH, media_placeholder


def _is_decimal(value: Any) -> bool:
    # Looked up, not imported: a program that never loaded `decimal` (3 ms) holds none.
    decimal = sys.modules.get("decimal")
    return decimal is not None and isinstance(value, decimal.Decimal)


CYCLE = "<cycle>"
_MAX_DEPTH = 32


def as_id(value: Any) -> str:
    """A user or session id as text: a string as it is, a number or UUID as its `str`,
    anything else as its JSON (never an object's memory address)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | uuid.UUID):
        return str(value)
    text = to_jsonable(value, 256)
    return text if isinstance(text, str) else json.dumps(text)


def as_tags(tags: Any) -> list[str]:
    """Tags as the strings they are sent as: one string is one tag (not its letters), None
    items are left out, anything else is its `str`."""
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    try:
        items = list(tags)
    except TypeError:  # one tag that is not a string
        return [str(tags)]
    return [t if isinstance(t, str) else str(t) for t in items if t is not None]


def well_formed(text: str) -> str:
    """`text` as UTF-8 can carry it: a surrogate pair joined, a lone surrogate made U+FFFD.

    Python strings may hold surrogates (a file name decoded with `surrogateescape`, JSON's
    "\\ud83d" on its own); UTF-8, and so protobuf and SQLite, refuse them.
    """
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def truncate(text: str, limit: int, already_cut: int = 0, unread: str = "") -> str:
    """Cut `text` to at most `limit` characters, ending in a marker saying how much went.

    `already_cut`: characters removed from the original before `text` was made
    (long strings cut inside a value that was then JSON-encoded), so the marker
    counts what the original lost, not what this last cut removed. `unread`: how
    many items the walk left unread (the marker says so), when it stopped early.
    """
    if len(text) <= limit:
        return text
    note = f", {unread} items not read" if unread else ""
    # The marker fits inside the limit, so a cut value is never cut again downstream.
    widest = len(f"...[truncated {len(text) + already_cut} chars{note}]")
    keep = max(0, limit - widest)
    return f"{text[:keep]}...[truncated {len(text) - keep + already_cut} chars{note}]"


# Past this much work the walk stops: what it would add is cut by the length bound anyway.
# Items: every value converted costs one. Characters: strings (each already cut) and keys.
def _item_budget(limit: int) -> int:
    return max(256, limit // 8)


def _char_budget(limit: int) -> int:
    return 2 * limit + 1024


class _Walk(set[int]):
    """One conversion: ids of the containers open (cycle detection), budget, what was cut."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.cut = 0
        self.items = _item_budget(limit)
        self.chars = _char_budget(limit)
        self.unread = 0  # items left out when the budget ran out
        self.unread_unknown = False  # ... and some container could not say how many

    def truncate(self, text: str, limit: int, already_cut: int = 0) -> str:
        short = truncate(text, limit, already_cut)
        self.cut += len(text) + already_cut - len(short)
        self.chars -= len(short)
        return short

    @property
    def spent(self) -> bool:
        return self.items <= 0 or self.chars <= 0

    def left_out(self, count: int | None) -> str:
        """Note `count` items not read (None: unknown); the marker put in their place."""
        if count is None:
            self.unread_unknown = True
            return "...[more items not read]"
        self.unread += count
        return f"...[{count} more items]"

    def unread_note(self) -> str:
        if self.unread_unknown:
            return f"{self.unread}+" if self.unread else "more"
        return str(self.unread) if self.unread else ""


def to_jsonable(value: Any, limit: int = 32768) -> Any:
    """A JSON-compatible copy of `value`: cycles become a placeholder, long strings are cut.

    The walk stops when its budget of items and characters is spent: a huge or
    endless container costs what the length bound lets through, not its size.
    """
    return _convert(value, limit, _Walk(limit), 0)


def _string(value: str, limit: int, active: _Walk) -> str:
    if len(value) >= MEDIA_MIN_LENGTH:
        placeholder = media_placeholder(value)
        if placeholder is not None:
            active.chars -= len(placeholder)
            return placeholder
    return active.truncate(value, limit)


def _convert(value: Any, limit: int, active: _Walk, depth: int) -> Any:
    active.items -= 1
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _string(value, limit, active)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, enum.Enum):
        return _convert(value.value, limit, active, depth)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | PurePath) or _is_decimal(value):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        # Only what the bound can let through is decoded (UTF-8: at most 4 bytes a character).
        try:
            whole = len(value) if not isinstance(value, memoryview) else value.nbytes
            raw = bytes(value[: limit * 4 + 4] if not isinstance(value, memoryview) else value)
            text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=len(raw) == whole)
        except Exception:  # not UTF-8, or a memoryview that cannot be read as bytes
            return f"<{len(value)} bytes>"
        return active.truncate(text, limit, whole - len(raw))
    if isinstance(value, ModuleType):
        return f"<module {value.__name__}>"
    if isinstance(value, BaseException):
        return active.truncate(f"{type(value).__name__}: {value}", limit)
    if depth >= _MAX_DEPTH:
        return f"<{type(value).__name__}: nested too deep>"
    key = id(value)
    if key in active:
        return CYCLE
    active.add(key)
    try:
        return _convert_container(value, limit, active, depth + 1)
    except Exception:  # a user object whose accessors raise must not break the call
        return f"<{type(value).__name__}>"
    finally:
        active.discard(key)


def _length(value: Any) -> int | None:
    try:
        return len(value)
    except Exception:  # an endless or broken container
        return None


def _items(
    keys: Iterable[Any],
    get: Callable[[Any], Any],
    total: int | None,
    limit: int,
    active: _Walk,
    depth: int,
) -> dict[str, Any]:
    """Items converted until the budget is spent; a note counts the rest.

    The budget is checked before the next value is fetched: a lazy mapping computes
    no value that is not shown.
    """
    out: dict[str, Any] = {}
    read = 0
    for k in keys:
        if active.spent:
            out["..."] = active.left_out(None if total is None else max(total - read, 1))
            break
        name = str(k) if isinstance(k, str | int | float | bool) or k is None else _key(k)
        active.chars -= len(name)
        out[name] = _convert(get(k), limit, active, depth)
        read += 1
    return out


def _key(key: Any) -> str:
    try:
        return str(key)
    except Exception:
        return f"<{type(key).__name__}>"


def _sequence(
    values: Iterable[Any], total: int | None, limit: int, active: _Walk, depth: int
) -> list[Any]:
    """A sequence's items converted until the budget is spent; a note counts the rest."""
    out: list[Any] = []
    for v in values:
        if active.spent:
            out.append(active.left_out(None if total is None else max(total - len(out), 1)))
            break
        out.append(_convert(v, limit, active, depth))
    return out


def _attribute(value: Any, name: str) -> Any:
    """`value.name` read without falling back to `__getattr__` (a proxy may answer anything)."""
    return object.__getattribute__(value, name)


def _class_has(value: Any, name: str) -> Any:
    """`name` looked up on the class only, so a `__getattr__` on the instance is never asked."""
    return getattr(type(value), name, None)


def _convert_container(value: Any, limit: int, active: _Walk, depth: int) -> Any:
    if isinstance(value, Mapping):
        return _items(value, value.__getitem__, _length(value), limit, active, depth)
    if isinstance(value, list | tuple):
        return _sequence(value, len(value), limit, active, depth)
    if isinstance(value, set | frozenset):
        items = _sequence(value, len(value), limit, active, depth)
        try:
            return sorted(items)
        except TypeError:
            return items
    numeric = _numeric(value, limit, active, depth)
    if numeric is not _NOT_NUMERIC:
        return numeric
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        return _items(names, lambda name: _attribute(value, name), None, limit, active, depth)
    if callable(_class_has(value, "model_dump")):  # pydantic v2
        return _convert(value.model_dump(mode="json"), limit, active, depth)
    if callable(_class_has(value, "dict")) and _class_has(value, "__fields__") is not None:
        return _convert(value.dict(), limit, active, depth)  # pydantic v1
    if callable(value):
        return f"<{type(value).__name__} {getattr(value, '__qualname__', '')}>".replace(" >", ">")
    state = _instance_dict(value)
    if state is not None:
        public = [k for k in state if not k.startswith("_")]
        return _items(public, state.__getitem__, None, limit, active, depth)
    slots = _slot_names(type(value))
    if slots:
        assigned = dict(_slot_values(value, slots))
        return _items(assigned, assigned.__getitem__, None, limit, active, depth)
    return f"<{type(value).__name__}>"


def _instance_dict(value: Any) -> dict[str, Any] | None:
    try:
        state = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return None
    return state if isinstance(state, dict) else None


def _slot_values(value: Any, slots: list[str]) -> Iterable[tuple[str, Any]]:
    for name in slots:
        if name.startswith("_"):
            continue
        try:
            yield name, _attribute(value, name)
        except AttributeError:  # a slot never assigned
            continue


_NOT_NUMERIC: Any = object()


def _numeric(value: Any, limit: int, active: _Walk, depth: int) -> Any:
    """numpy and pandas values as numbers, bounded lists and shapes.

    Only when the program imported them already: we never import either.
    """
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):  # np.int64(3), np.bool_(True), ...
            return _convert(value.item(), limit, active, depth)
        if isinstance(value, numpy.ndarray):
            return _array(value, limit, active, depth)
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            return _frame(value, limit, active, depth)
        if isinstance(value, pandas.Series | pandas.Index):
            return _array(value.to_numpy(), limit, active, depth)
    return _NOT_NUMERIC


def _array(array: Any, limit: int, active: _Walk, depth: int) -> Any:
    """A small array as nested lists; a large one as its shape, dtype and first values."""
    if array.ndim == 0:
        return _convert(array.item(), limit, active, depth)
    if array.size <= active.items:
        return _convert(array.tolist(), limit, active, depth)
    head = max(0, min(active.items, array.size) - 3)
    first = array.reshape(-1)[:head] if array.flags.c_contiguous else array.flat[:head]
    shape = {
        "shape": [int(n) for n in array.shape],
        "dtype": str(array.dtype),
        "values": _convert(first.tolist(), limit, active, depth),
    }
    shape["..."] = active.left_out(int(array.size) - head)
    return shape


def _frame(frame: Any, limit: int, active: _Walk, depth: int) -> Any:
    """A DataFrame as its shape, column names and first rows."""
    rows, columns = (int(n) for n in frame.shape)
    # Each row costs its dict and one item a column; the column names are read first.
    head = max(0, min(rows, (active.items - 2 * columns - 8) // (columns + 1)))
    described: dict[str, Any] = {
        "shape": [rows, columns],
        "columns": _convert([str(c) for c in frame.columns], limit, active, depth),
        "rows": _convert(frame.head(head).to_dict(orient="records"), limit, active, depth),
    }
    if head < rows:
        described["..."] = active.left_out(rows - head)
    return described


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else list(slots))
    return [n for n in names if n not in ("__dict__", "__weakref__")]


# A value the walk would copy unchanged: dicts with string keys, lists and tuples, holding
# at most this many values in all, this deep, of strings too short to be media, ints,
# finite floats, bools and None. Such a value is its JSON as it is, encoded in C at once.
_PLAIN_ITEMS = 64
_PLAIN_DEPTH = 8


def _plain_tree(value: Any) -> bool:
    """Whether `value` holds only what the walk copies unchanged (see `_PLAIN_ITEMS`)."""
    todo = [(value, 0)]
    left = _PLAIN_ITEMS
    while todo:
        node, depth = todo.pop()
        if type(node) is dict:
            for key in node:
                if type(key) is not str:  # the walk writes True as "True", JSON as "true"
                    return False
            items: Any = node.values()
        elif type(node) is list or type(node) is tuple:
            items = node
        else:
            return False
        left -= len(items)
        if left < 0 or depth >= _PLAIN_DEPTH:
            return False
        for item in items:
            kind = type(item)
            if kind is str:
                if len(item) >= MEDIA_MIN_LENGTH:  # the walk may make it a media placeholder
                    return False
            elif kind is dict or kind is list or kind is tuple:
                todo.append((item, depth + 1))
            elif kind is float:
                if not math.isfinite(item):  # the walk writes "NaN", JSON NaN
                    return False
            elif kind is not int and kind is not bool and item is not None:
                return False
    return True


# A plain tree is walked for shape, not for cycles (its item bound ends any cycle as too
# many items): one encoder, without cycle markers, serves every call.
_dumps_plain = compat.plain_json_encoder()


def to_json(value: Any, limit: int = 32768) -> str:
    """`value` as a JSON string, bounded to `limit` characters."""
    try:
        if _plain_tree(value):  # the common case: a call's arguments, a tool's small result
            text = _dumps_plain(value)
            # Within the bound, no string in it was cut and the walk's budget never ran out:
            # the walk would have made these very characters. Past it, the walk says what went.
            if len(text) <= limit:
                return text
    except Exception:  # changed by another thread meanwhile: the walk copes with that
        pass
    walk = _Walk(limit)
    try:
        text = json.dumps(_convert(value, limit, walk, 0), allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(f"<{type(value).__name__}>")
    return truncate(text, limit, walk.cut, walk.unread_note())


def _text(value: str, limit: int) -> str:
    """A string on its own: a media placeholder for base64 media, else cut to `limit`."""
    if len(value) >= MEDIA_MIN_LENGTH:
        placeholder = media_placeholder(value)
        if placeholder is not None:
            return placeholder
    return truncate(value, limit)


# The integers an attribute carries as a number (OTLP's int_value is a signed 64-bit int);
# a larger one goes as its JSON text, its digits, where it would otherwise wrap around.
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def to_output_value(value: Any, limit: int = 32768) -> AttributeValue:
    """The contract's output shape: scalars as themselves, a list of str as an array, else JSON
    (an integer beyond 64 bits too)."""
    if isinstance(value, str):
        return _text(value, limit)
    if isinstance(value, bytes | bytearray) and len(value) <= 4 * limit:
        try:  # text in bytes is that text, as 0.5.0 sends it; other bytes are JSON below
            return _text(bytes(value).decode("utf-8"), limit)
        except UnicodeDecodeError:
            pass
    if isinstance(value, bool) or (isinstance(value, int) and INT64_MIN <= value <= INT64_MAX):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else to_jsonable(value)  # type: ignore[no-any-return]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return _bounded_strings(value, limit)
    return to_json(value, limit)


# A string array's items are each cut at the limit; the whole array stops at this many limits.
ARRAY_LIMITS = 8


def _bounded_strings(values: list[str] | tuple[str, ...], limit: int) -> list[str]:
    items: list[str] = []
    total = 0
    for index, value in enumerate(values):
        item = _text(value, limit)
        total += len(item)
        if items and total > limit * ARRAY_LIMITS:
            items.append(f"...[{len(values) - index} more items]")
            break
        items.append(item)
    return items
