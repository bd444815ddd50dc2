"""The kinds of span `@observe` can create."""

from __future__ import annotations

from enum import Enum


class SpanKind(str, Enum):
    """Kind of a decorator span; members compare equal to their lowercase strings."""

    SPAN = "span"
    AGENT = "agent"
    TOOL = "tool"
    LLM = "llm"

    def __str__(self) -> str:
        return self.value
