"""Stamps the contract's per-span attributes on every span when it starts.

Runs as a span processor, so spans made by third-party instrumentors get them too.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.util.types import AttributeValue

from traceroot import attributes as attr
from traceroot.trace_attributes import context_attributes


class StampingProcessor(SpanProcessor):
    """Adds sdk/git/environment attributes, the span's path, and `using_attributes` values."""

    def __init__(self, static_attributes: Mapping[str, AttributeValue]) -> None:
        self._static = dict(static_attributes)

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
        stamped = dict(self._static)
        if parent_context is None:
            parent_context = context_api.get_current()
        if parent is None:
            parent = trace.get_current_span(parent_context)
        parent_ctx = parent.get_span_context()
        if not parent_ctx.is_valid:
            stamped[attr.SPAN_PATH] = (name,)
            stamped[attr.SPAN_IDS_PATH] = ()
        else:
            parent_id = format(parent_ctx.span_id, "016x")
            parent_attrs = parent.attributes if isinstance(parent, ReadableSpan) else None
            parent_path = parent_attrs.get(attr.SPAN_PATH) if parent_attrs else None
            if parent_path is not None and parent_attrs is not None:
                stamped[attr.SPAN_PATH] = (*parent_path, name)  # type: ignore[misc]
                parent_ids = parent_attrs.get(attr.SPAN_IDS_PATH, ())
                stamped[attr.SPAN_IDS_PATH] = (*parent_ids, parent_id)  # type: ignore[misc]
            else:  # a remote parent (another process) or one from another SDK
                stamped[attr.SPAN_PATH] = (name,)
                stamped[attr.SPAN_IDS_PATH] = (parent_id,)
        stamped.update(context_attributes(parent_context))
        return stamped

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        # Decorator spans arrive stamped already (one attribute pass instead of two).
        if attr.SPAN_PATH not in (span.attributes or {}):
            span.set_attributes(self.attributes_for(span.name, parent_context))

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
