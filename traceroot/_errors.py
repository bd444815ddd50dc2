"""Exceptions in words, for the one warning a failure of ours becomes."""

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
