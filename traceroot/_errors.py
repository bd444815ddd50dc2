"""Exceptions in words: for the one warning a failure of ours becomes, and the program's own
exceptions as a span records them."""

from __future__ import annotations

_MAX = 300  # a message longer than this says nothing more a reader needs


def in_words(exc: BaseException) -> str:
    """``TypeName: message``, on one printable line and bounded (never a raw repr)."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break the warning about it
        message = ""
    message = "".join(c if c.isprintable() else " " for c in message).strip()
    if len(message) > _MAX:
        message = message[:_MAX] + "..."
    return f"{name}: {message}" if message else name


def exception_message(exc: BaseException) -> str:
    """`str(exc)`, or what Python's own traceback says when that fails (a program's exception
    may break its `__str__`: recording it must not raise in its place)."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"
