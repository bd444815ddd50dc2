"""Frozen records, as ``@dataclass(frozen=True)`` makes them, without importing `dataclasses`.

`dataclasses` imports `inspect` (and with it `ast`, `dis`, `tokenize`...): about a third of
``traceroot-run``'s own start-up, for the four records the launcher needs (the configuration,
its destination, the OTLP settings, the integrations table). `record` gives a class the same
``__init__`` (positional or by name, defaults, ``field(default_factory=...)``), the same
``__eq__`` and ``__hash__`` (``compare=False`` fields left out), the same ``__repr__`` unless
the class has its own, and the same ``FrozenInstanceError``-like refusal to change a field;
`replace` and `fields` do what `dataclasses.replace` and `dataclasses.fields` do.
``tests/test_frozen.py`` holds them to `dataclasses` itself.
"""

from __future__ import annotations

_MISSING: object = object()  # no default given

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` is not loaded by the launcher
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
    R = TypeVar("R")

    @overload
    def field(*, default: T, compare: bool = True) -> T: ...
    @overload
    def field(*, default_factory: Callable[[], T], compare: bool = True) -> T: ...
    def field(*, default: Any = ..., default_factory: Any = ..., compare: bool = True) -> Any: ...

else:

    def dataclass_transform(**_options):
        return lambda decorated: decorated

    def field(*, default=_MISSING, default_factory=None, compare=True):
        """A field's default or default factory, and whether it is compared."""
        return _Field(default, default_factory, compare)


class FrozenInstanceError(AttributeError):
    """A field of a frozen record was assigned or deleted (as `dataclasses`' own error)."""


class _Field:
    __slots__ = ("compare", "default", "factory")

    def __init__(
        self, default: object, factory: Callable[[], object] | None, compare: bool
    ) -> None:
        self.default = default
        self.factory = factory
        self.compare = compare


class _Spec:
    """What `record` read from a class: field names in order, defaults, compared fields."""

    __slots__ = ("compared", "defaults", "factories", "names")

    def __init__(self, cls: type) -> None:
        # The class's own annotations, in order (from 3.14 they may be made on first read).
        own = vars(cls).get("__annotations__")
        self.names: tuple[str, ...] = tuple(own if own is not None else cls.__annotations__)
        self.defaults: dict[str, object] = {}
        self.factories: dict[str, Callable[[], object]] = {}
        compared = []
        for name in self.names:
            value = vars(cls).get(name, _MISSING)
            compare = True
            if isinstance(value, _Field):
                compare = value.compare
                if value.factory is not None:
                    self.factories[name] = value.factory
                elif value.default is not _MISSING:
                    self.defaults[name] = value.default
                delattr(cls, name)  # the instance's own value is read, never the class's
            elif value is not _MISSING:
                self.defaults[name] = value
            elif self.defaults or self.factories:
                raise TypeError(f"non-default argument {name!r} follows default argument")
            if compare:
                compared.append(name)
        self.compared = tuple(compared)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[R]) -> type[R]:
    """Make ``cls`` a frozen record of its annotated fields (see the module docstring)."""
    spec = _Spec(cls)
    names = spec.names

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(
                f"{cls.__name__}.__init__() takes {len(names) + 1} positional arguments "
                f"but {len(args) + 1} were given"
            )
        values = dict(zip(names, args, strict=False))  # fewer arguments than fields
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(
                    f"{cls.__name__}.__init__() got an unexpected keyword argument {key!r}"
                )
            if key in values:
                raise TypeError(
                    f"{cls.__name__}.__init__() got multiple values for argument {key!r}"
                )
            values[key] = value
        set_field = object.__setattr__
        for name in names:
            if name in values:
                value = values[name]
            elif name in spec.factories:
                value = spec.factories[name]()
            elif name in spec.defaults:
                value = spec.defaults[name]
            else:
                raise TypeError(f"{cls.__name__}.__init__() missing 1 required argument: {name!r}")
            set_field(self, name, value)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in spec.compared)

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in spec.compared))

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{cls.__qualname__}({shown})"

    def __setattr__(self: Any, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    made: dict[str, Any] = {
        "__init__": __init__,
        "__eq__": __eq__,
        "__hash__": __hash__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__match_args__": names,
    }
    if "__repr__" not in vars(cls):
        made["__repr__"] = __repr__
    for name, value in made.items():
        setattr(cls, name, value)
    cls.__record_spec__ = spec  # type: ignore[attr-defined]
    return cls


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in order (as `dataclasses.fields`)."""
    spec: _Spec = obj.__record_spec__  # type: ignore[attr-defined]
    return spec.names


def replace(obj: R, **changes: Any) -> R:
    """A copy of the record ``obj`` with ``changes`` (as `dataclasses.replace`)."""
    values = {name: getattr(obj, name) for name in fields(obj)}
    for key in changes:
        if key not in values:
            raise TypeError(
                f"{type(obj).__name__}.__init__() got an unexpected keyword argument {key!r}"
            )
    values.update(changes)
    return type(obj)(**values)
