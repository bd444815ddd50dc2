"""Stamps the contract's per-span attributes on every span when it starts.

Runs as a span processor, so spans made by third-party instrumentors get them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.util.types import AttributeValue

from traceroot import _attributes as attr
from traceroot._compat import add_valid_attributes
from traceroot._trace_attributes import context_attributes

# The most open spans whose paths are kept; a program that leaks unended spans starts it over.
_MAX_OPEN_SPANS = 65536
# The most child names whose shared paths one open span keeps.
_MAX_CHILD_NAMES = 64

Path = tuple[tuple[str, ...], tuple[str, ...]]


class Stamper:
    """Adds sdk/git/environment attributes, the span's path, and `using_attributes` values.

    The paths of open spans are kept by span id, so a child finds its parent's path
    even when the parent in its context is only a span context (a `NonRecordingSpan`,
    as some instrumentors and thread hand-offs make), not the span itself.
    """

    def __init__(self, static_attributes: Mapping[str, AttributeValue]) -> None:
        self._static = dict(static_attributes)
        self._open: dict[int, Path] = {}
        # The paths of an open span's children, by name: a parent's many children of one
        # name (a tool called in a loop) share their path tuples instead of each making them.
        self._children: dict[int, dict[str, Path]] = {}
        # What an open SDK span was stamped with: the SDK's attribute count limit makes the
        # oldest attributes give way, ours first (light spans keep them themselves).
        self._stamped: dict[int, dict[str, Any]] = {}

    def attributes_for(
        self,
        name: str,
        parent_context: context_api.Context | None = None,
        parent: trace.Span | None = None,
    ) -> dict[str, AttributeValue]:
        """What a span named `name` starting under `parent_context` gets stamped with.

        `parent`, when the caller has it, is the span current in `parent_context`.
        Arrays are tuples, as OpenTelemetry stores them.
        """
        if parent_context is None:
            parent_context = context_api.get_current()
        if parent is None:
            parent = trace.get_current_span(parent_context)
        return self.stamp(name, parent_context, parent)[0]

    def stamp(
        self, name: str, parent_context: context_api.Context, parent: trace.Span
    ) -> tuple[dict[str, AttributeValue], Path]:
        """`attributes_for`, with the span's path (names, ids of its ancestors) beside it."""
        stamped, path = self._made(name, parent)
        found = context_attributes(parent_context)
        if found:
            stamped.update(found)
        return stamped, path

    def _made(self, name: str, parent: trace.Span) -> tuple[dict[str, AttributeValue], Path]:
        """What we stamp ourselves (valid attribute values all), with the span's path."""
        stamped = self._static.copy()
        path: Path
        parent_ctx = None if parent is trace.INVALID_SPAN else parent.get_span_context()
        if parent_ctx is None or not parent_ctx.is_valid:
            path = ((name,), ())
        else:
            span_id = parent_ctx.span_id
            siblings = self._children.get(span_id)
            shared = siblings.get(name) if siblings is not None else None
            if shared is not None:
                path = shared
            else:
                parent_id = format(span_id, "016x")
                known = self._open.get(span_id)
                if known is not None:
                    path = ((*known[0], name), (*known[1], parent_id))
                    if siblings is None:
                        siblings = self._children[span_id] = {}
                    if len(siblings) < _MAX_CHILD_NAMES:
                        siblings[name] = path
                else:
                    known = _path_of(parent)
                    if known is not None:
                        path = ((*known[0], name), (*known[1], parent_id))
                    else:  # a remote parent (another process) or one from another SDK
                        path = ((name,), (parent_id,))
        stamped[attr.SPAN_PATH], stamped[attr.SPAN_IDS_PATH] = path
        return stamped, path

    def remember(self, span_id: int, path: Path) -> None:
        """Remember the path of a span that has just started (from `stamp`)."""
        opened = self._open
        if len(opened) >= _MAX_OPEN_SPANS:
            opened.clear()  # spans that never end: fall back to reading parents
            self._children.clear()
        opened[span_id] = path

    def opened(self, span_id: int, attributes: Mapping[str, Any]) -> None:
        """Remember the path of a span that has just started with these attributes."""
        path = _path_in(attributes)
        if path is not None:
            if len(self._open) >= _MAX_OPEN_SPANS:
                self._open.clear()  # spans that never end: fall back to reading parents
                self._children.clear()
            self._open[span_id] = path

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        # Decorator spans arrive stamped already (one attribute pass instead of two).
        if attr.SPAN_PATH in (span.attributes or {}):
            attributes = span.attributes or {}
            self.opened(span.context.span_id, attributes)
            self._keep_stamps(span.context.span_id, attributes)
            return
        if parent_context is None:
            parent_context = context_api.get_current()
        made, path = self._made(span.name, trace.get_current_span(parent_context))
        add_valid_attributes(span, made)
        found = context_attributes(parent_context)
        if found:  # the program's values: the SDK checks them
            span.set_attributes(found)
            made.update(found)
        span_id = span.context.span_id
        self.remember(span_id, path)
        self._keep_stamps(span_id, made)

    def _keep_stamps(self, span_id: int, stamped: Mapping[str, Any]) -> None:
        """Keep the backend's keys an SDK span starts with, to restore them if they give way."""
        if len(self._stamped) >= _MAX_OPEN_SPANS:
            self._stamped.clear()  # spans that never end: their stamps are not restored
        self._stamped[span_id] = {k: v for k, v in stamped.items() if attr.is_backend_key(k)}

    def on_end(self, span: ReadableSpan) -> dict[str, Any] | None:
        """Forget an ended span's path: its children now read it from the span, if at all.

        Returns what an SDK span was stamped with and lost to the attribute count limit
        (the backend's keys, which place it in its trace), else None.
        """
        context = span.context
        if context is None:
            return None
        span_id = context.span_id
        self._open.pop(span_id, None)
        if self._children:
            self._children.pop(span_id, None)
        if not self._stamped:
            return None
        stamped = self._stamped.pop(span_id, None)
        if stamped is None or not span.dropped_attributes:
            return None
        present = span.attributes or {}
        lost = {k: v for k, v in stamped.items() if k not in present}
        return lost or None


def _path_in(attributes: Mapping[str, Any]) -> Path | None:
    path = attributes.get(attr.SPAN_PATH)
    if path is None:
        return None
    return tuple(path), tuple(attributes.get(attr.SPAN_IDS_PATH, ()))


def _path_of(span: trace.Span) -> Path | None:
    """The path stamped on `span`, if it is a span we can read (it may have ended)."""
    return _path_in(span.attributes or {}) if isinstance(span, ReadableSpan) else None
