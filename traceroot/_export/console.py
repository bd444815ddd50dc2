"""The local view: each finished trace printed to stderr as a readable tree."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from traceroot import _attributes as attr

MAX_DEPTH = 10
MAX_CHILDREN = 20
MAX_VALUE = 60
MAX_SPANS_PER_TRACE = 2000

LOCAL_NOTICE = (
    "traceroot: no TRACEROOT_API_KEY set, so traces stay local and are printed here. "
    "Set TRACEROOT_API_KEY to send them to TraceRoot (or OTEL_EXPORTER_OTLP_ENDPOINT for any "
    "OTLP backend); TRACEROOT_CONSOLE=false silences this view."
)
# When spans stay local because the destination was refused (its warning said why): the
# notice above would wrongly say that no key is set.
REFUSED_NOTICE = (
    "traceroot: traces stay local and are printed here until the destination is fixed; "
    "TRACEROOT_CONSOLE=false silences this view."
)


def _short(text: str, limit: int = MAX_VALUE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_line(description: str) -> str:
    """A status description without the stack trace some libraries put in it (LangChain's
    is the error's repr and its traceback run together): the tree shows the error alone."""
    head, found, _ = description.partition("Traceback (most recent call last)")
    return head.strip() if found and head.strip() else description


def _duration(span: ReadableSpan) -> str:
    if span.start_time is None or span.end_time is None:
        return "?"
    seconds = (span.end_time - span.start_time) / 1e9
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.2f}s"


def _kind(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    kind = attributes.get(attr.SPAN_TYPE) or attributes.get(attr.OI_SPAN_KIND)
    return str(kind).lower() if kind else "span"


def _tokens(attributes: Mapping[str, Any]) -> tuple[Any, Any]:
    """Token counts from OpenInference keys, else from `update_current_span(usage=...)`."""
    prompt = attributes.get(attr.OI_TOKENS_PROMPT)
    completion = attributes.get(attr.OI_TOKENS_COMPLETION)
    if prompt is None and completion is None and isinstance(attributes.get(attr.LLM_USAGE), str):
        try:
            usage = json.loads(attributes[attr.LLM_USAGE])
        except ValueError:
            return None, None
        if isinstance(usage, dict):
            prompt = usage.get("input_tokens", usage.get("prompt_tokens"))
            completion = usage.get("output_tokens", usage.get("completion_tokens"))
    return prompt, completion


def describe_span(span: ReadableSpan) -> str:
    """One line: name, kind, duration, model and tokens where present, error marked."""
    attributes = span.attributes or {}
    parts = [f"{_short(span.name)} [{_kind(span)}] {_duration(span)}"]
    model = attributes.get(attr.OI_MODEL_NAME) or attributes.get(attr.LLM_MODEL)
    if model:
        parts.append(f"model={_short(str(model), 40)}")
    prompt, completion = _tokens(attributes)
    if prompt is not None or completion is not None:
        parts.append(
            f"tokens={prompt if prompt is not None else '?'}->"
            f"{completion if completion is not None else '?'}"
        )
    if span.status.status_code is StatusCode.ERROR:
        parts.append(f"ERROR {_short(_error_line(span.status.description or ''))}".rstrip())
    return "  ".join(parts)


class TraceTree:
    """Renders the spans of one trace, folding deep and wide parts with counts."""

    def __init__(self, spans: list[ReadableSpan], ascii_only: bool) -> None:
        self._children: dict[int | None, list[ReadableSpan]] = {}
        ids = {s.context.span_id for s in spans if s.context is not None}
        for span in sorted(spans, key=lambda s: s.start_time or 0):
            parent = span.parent.span_id if span.parent is not None else None
            key = parent if parent in ids else None
            self._children.setdefault(key, []).append(span)
        self._branch, self._last, self._pipe = (
            ("|- ", "`- ", "|  ") if ascii_only else ("├─ ", "└─ ", "│  ")
        )

    def lines(self) -> list[str]:
        out: list[str] = []
        self._render(self._children.get(None, []), "", 0, out)
        return out

    def _count(self, span: ReadableSpan) -> int:
        kids = self._children.get(span.context.span_id if span.context else None, [])
        return len(kids) + sum(self._count(k) for k in kids)

    def _render(self, spans: list[ReadableSpan], prefix: str, depth: int, out: list[str]) -> None:
        shown = spans[:MAX_CHILDREN]
        hidden = spans[MAX_CHILDREN:]
        for index, span in enumerate(shown):
            last = index == len(shown) - 1 and not hidden
            out.append(prefix + (self._last if last else self._branch) + describe_span(span))
            kids = self._children.get(span.context.span_id if span.context else None, [])
            child_prefix = prefix + ("   " if last else self._pipe)
            if kids and depth + 1 >= MAX_DEPTH:
                folded = len(kids) + sum(self._count(k) for k in kids)
                out.append(f"{child_prefix}{self._last}... {folded} more spans below")
            elif kids:
                self._render(kids, child_prefix, depth + 1, out)
        if hidden:
            folded = len(hidden) + sum(self._count(s) for s in hidden)
            out.append(f"{prefix}{self._last}... {folded} more spans")


class ConsoleView:
    """Collects each trace's spans and prints the tree when its local root span ends."""

    def __init__(
        self, notice: str | None = None, stream: Callable[[], TextIO] = lambda: sys.stderr
    ) -> None:
        # Shown once, before the first tree: a process that makes no span prints nothing.
        self._notice = notice
        self._stream = stream
        self._lock = threading.Lock()
        self._pending: dict[int, list[ReadableSpan]] = {}
        self._overflow: dict[int, int] = {}

    def on_end(self, span: ReadableSpan) -> None:
        """Keep `span`; print its trace's tree when it is the trace's local root."""
        if span.context is None:
            return
        trace_id = span.context.trace_id
        is_root = span.parent is None or span.parent.is_remote
        with self._lock:
            spans = self._pending.setdefault(trace_id, [])
            if len(spans) < MAX_SPANS_PER_TRACE:
                spans.append(span)
            else:
                self._overflow[trace_id] = self._overflow.get(trace_id, 0) + 1
            if not is_root:
                return
            spans = self._pending.pop(trace_id)
            dropped = self._overflow.pop(trace_id, 0)
        self._print(trace_id, spans, dropped)

    def _print(self, trace_id: int, spans: list[ReadableSpan], dropped: int) -> None:
        stream = self._stream()
        encoding = (getattr(stream, "encoding", None) or "ascii").lower().replace("-", "")
        tree = TraceTree(spans, ascii_only=encoding not in ("utf8", "utf16", "utf32"))
        root = spans[-1]
        header = (
            f"traceroot: trace {trace_id:032x}  {len(spans) + dropped} spans  {_duration(root)}"
        )
        lines = [header, *tree.lines()]
        if self._notice:
            lines.insert(0, self._notice)
            self._notice = None
        if dropped:
            lines.append(f"... {dropped} spans not shown (trace too large for the console)")
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: the view is best-effort
            pass

    def shutdown(self) -> None:
        """Forget traces whose root never ended."""
        with self._lock:
            self._pending.clear()
