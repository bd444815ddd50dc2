"""Turning captured Python values into span attribute values.

Never raises, never shows a memory address, and bounds the size of what it makes.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import json.encoder
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from types import ModuleType
from typing import Any

from opentelemetry.util.types import AttributeValue

from traceroot import _compat as compat

CYCLE = "<cycle>"
_MAX_DEPTH = 32


def truncate(text: str, limit: int, already_cut: int = 0) -> str:
    """Cut `text` to at most `limit` characters, ending in a marker saying how much went.

    `already_cut`: characters removed from the original before `text` was made
    (long strings cut inside a value that was then JSON-encoded), so the marker
    counts what the original lost, not what this last cut removed.
    """
    if len(text) <= limit:
        return text
    # The marker fits inside the limit, so a cut value is never cut again downstream.
    widest = len(f"...[truncated {len(text) + already_cut} chars]")
    keep = max(0, limit - widest)
    return f"{text[:keep]}...[truncated {len(text) - keep + already_cut} chars]"


class _Walk(set[int]):
    """Ids of the containers being converted (cycle detection), and what cutting removed."""

    cut = 0

    def truncate(self, text: str, limit: int) -> str:
        short = truncate(text, limit)
        self.cut += len(text) - len(short)
        return short


def to_jsonable(value: Any, limit: int = 32768) -> Any:
    """A JSON-compatible copy of `value`: cycles become a placeholder, long strings are cut."""
    return _convert(value, limit, _Walk(), 0)


def _convert(value: Any, limit: int, active: _Walk, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return active.truncate(value, limit)
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
    if isinstance(value, uuid.UUID | Decimal | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return active.truncate(raw.decode("utf-8"), limit)
        except UnicodeDecodeError:
            return f"<{len(raw)} bytes>"
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


def _convert_container(value: Any, limit: int, active: _Walk, depth: int) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _convert(v, limit, active, depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_convert(v, limit, active, depth) for v in value]
    if isinstance(value, set | frozenset):
        items = [_convert(v, limit, active, depth) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _convert(getattr(value, f.name, None), limit, active, depth)
            for f in dataclasses.fields(value)
        }
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):  # pydantic v2
        return _convert(model_dump(mode="json"), limit, active, depth)
    pydantic_v1_dict = getattr(value, "dict", None)
    if callable(pydantic_v1_dict) and hasattr(value, "__fields__"):
        return _convert(pydantic_v1_dict(), limit, active, depth)
    if hasattr(value, "__dict__") and not isinstance(value, type) and not callable(value):
        public = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        return {k: _convert(v, limit, active, depth) for k, v in public.items()}
    slots = _slot_names(type(value))
    if slots:
        return {
            name: _convert(getattr(value, name), limit, active, depth)
            for name in slots
            if not name.startswith("_") and hasattr(value, name)
        }
    if callable(value):
        return f"<{type(value).__name__} {getattr(value, '__qualname__', '')}>".replace(" >", ">")
    return f"<{type(value).__name__}>"


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else list(slots))
    return [n for n in names if n not in ("__dict__", "__weakref__")]


_PLAIN = (str, int, bool, type(None))


def _plain_dict(value: Any, limit: int) -> bool:
    """A dict of short strings, ints, bools and None: JSON as it is, nothing to convert."""
    if type(value) is not dict or len(value) > 32:
        return False
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or kind not in _PLAIN or (kind is str and len(item) > limit):
            return False
    return True


# Plain dicts hold no container, so no cycle to watch for: one encoder serves every call.
_dumps_plain = compat.plain_json_encoder()


def to_json(value: Any, limit: int = 32768) -> str:
    """`value` as a JSON string, bounded to `limit` characters."""
    if _plain_dict(value, limit):  # the common case: a call's arguments
        return truncate(_dumps_plain(value), limit)
    walk = _Walk()
    try:
        text = json.dumps(_convert(value, limit, walk, 0), allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(f"<{type(value).__name__}>")
    return truncate(text, limit, walk.cut)


def to_output_value(value: Any, limit: int = 32768) -> AttributeValue:
    """The contract's output shape: scalars as themselves, a list of str as an array, else JSON."""
    if isinstance(value, str):
        return truncate(value, limit)
    if isinstance(value, bool | int):
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
        item = truncate(value, limit)
        total += len(item)
        if items and total > limit * ARRAY_LIMITS:
            items.append(f"...[{len(values) - index} more items]")
            break
        items.append(item)
    return items
