"""Spans as the store keeps them, from SDK spans or OTLP protobuf, and what the viewer shows.

Both sources become one `SpanRow`; `span_view` reads a stored span's attributes the
way a person looks at them: input, output, chat messages, model, tokens, error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from traceroot import _attributes as attr

_INPUT_KEYS = (attr.SPAN_INPUT, "input.value")
_OUTPUT_KEYS = (attr.SPAN_OUTPUT, "output.value")
_SESSION_KEYS = (attr.TRACE_SESSION_ID, attr.SESSION_ID)
_USER_KEYS = (attr.TRACE_USER_ID, attr.USER_ID)
_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}


@dataclass
class SpanRow:
    """One span, ready for a row of the `spans` table."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    otel_kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    service: str | None
    scope: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return semantic_kind(self.attributes)

    @property
    def input(self) -> str | None:
        return _first_text(self.attributes, _INPUT_KEYS)

    @property
    def output(self) -> str | None:
        return _first_text(self.attributes, _OUTPUT_KEYS)

    @property
    def session_id(self) -> str | None:
        return _first_text(self.attributes, _SESSION_KEYS)

    @property
    def user_id(self) -> str | None:
        return _first_text(self.attributes, _USER_KEYS)

    @property
    def tokens(self) -> int | None:
        return tokens(self.attributes).get("total")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def from_sdk_span(span: ReadableSpan) -> SpanRow | None:
    """A finished SDK span as a row; None for a span without a context or end."""
    context = span.context
    if context is None or span.start_time is None:
        return None
    resource = dict(span.resource.attributes) if span.resource is not None else {}
    scope = span.instrumentation_scope
    return SpanRow(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
        name=span.name if isinstance(span.name, str) else str(span.name),
        # A kind that is no SpanKind (a library's, which the SDK takes as it is): INTERNAL.
        otel_kind=span.kind.name if isinstance(span.kind, SpanKind) else "INTERNAL",
        start_ns=span.start_time,
        end_ns=span.end_time or span.start_time,
        status=span.status.status_code.name,
        status_message=span.status.description,
        service=_text(resource.get("service.name")),
        scope=scope.name if scope is not None else None,
        attributes={k: _plain(v) for k, v in (span.attributes or {}).items()},
        events=[
            {
                "name": e.name,
                "time_ns": e.timestamp,
                "attributes": {k: _plain(v) for k, v in (e.attributes or {}).items()},
            }
            for e in span.events
        ],
        resource={k: _plain(v) for k, v in resource.items()},
    )


def _any_value(value: Any) -> Any:
    """An OTLP AnyValue as plain Python; maps become JSON text, bytes hex."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return json.dumps({kv.key: _any_value(kv.value) for kv in value.kvlist_value.values})
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _key_values(items: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in items}


def from_otlp(request: Any) -> list[SpanRow]:
    """The spans of an `ExportTraceServiceRequest` as rows."""
    rows = []
    for resource_spans in request.resource_spans:
        resource = _key_values(resource_spans.resource.attributes)
        service = _text(resource.get("service.name"))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name or None
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    continue  # not a valid span: nothing to place it by
                rows.append(
                    SpanRow(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() if span.parent_span_id else None,
                        name=span.name,
                        otel_kind=_KIND_NAMES.get(span.kind, "INTERNAL"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano or span.start_time_unix_nano,
                        status=_STATUS_NAMES.get(span.status.code, "UNSET"),
                        status_message=span.status.message or None,
                        service=service,
                        scope=scope,
                        attributes=_key_values(span.attributes),
                        events=[
                            {
                                "name": e.name,
                                "time_ns": e.time_unix_nano,
                                "attributes": _key_values(e.attributes),
                            }
                            for e in span.events
                        ],
                        resource=resource,
                    )
                )
    return rows


# -- reading attributes the way a person looks at them ----------------------------


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _first_text(attributes: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    for key in keys:
        found = _text(attributes.get(key))
        if found is not None:
            return found
    return None


def semantic_kind(attributes: Mapping[str, Any]) -> str:
    """llm, agent, tool, chain, ... from our span type or OpenInference's kind; else span."""
    kind = attributes.get(attr.SPAN_TYPE) or attributes.get(attr.OI_SPAN_KIND)
    return str(kind).lower() if kind else "span"


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    return None


def tokens(attributes: Mapping[str, Any]) -> dict[str, int]:
    """Prompt, completion and total token counts, from OpenInference keys or our usage."""
    found: dict[str, int | None] = {
        "prompt": _int(attributes.get(attr.OI_TOKENS_PROMPT)),
        "completion": _int(attributes.get(attr.OI_TOKENS_COMPLETION)),
        "total": _int(attributes.get(attr.OI_TOKENS_TOTAL)),
    }
    usage = _json(attributes.get(attr.LLM_USAGE))
    if isinstance(usage, dict):
        if found["prompt"] is None:
            found["prompt"] = _int(usage.get("input_tokens", usage.get("prompt_tokens")))
        if found["completion"] is None:
            found["completion"] = _int(usage.get("output_tokens", usage.get("completion_tokens")))
        if found["total"] is None:
            found["total"] = _int(usage.get("total_tokens"))
    if found["total"] is None and (found["prompt"] is not None or found["completion"] is not None):
        found["total"] = (found["prompt"] or 0) + (found["completion"] or 0)
    return {k: v for k, v in found.items() if v is not None}


_MESSAGE_KEY = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(.+)$")


def _content_text(content: Any) -> str:
    """A message's content as text: strings as they are, parts joined, others as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(content_json(part))
        return "\n".join(parts)
    return content_json(content)


def content_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2)


def messages(attributes: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The chat of an LLM span: OpenInference's flattened messages, else our `prompt`."""
    found: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    for key, value in attributes.items():
        match = _MESSAGE_KEY.match(key)
        if match is None:
            continue
        side, index, rest = match.group(1), int(match.group(2)), match.group(3)
        message = found[side].setdefault(index, {"role": None, "content": "", "tool_calls": []})
        if rest == "role":
            message["role"] = _text(value)
        elif rest == "content":
            message["content"] = _text(value) or ""
        elif rest == "name":
            message["name"] = _text(value)
        elif rest.startswith("contents.") and rest.endswith(".message_content.text"):
            text = _text(value) or ""
            message["content"] = (message["content"] + "\n" + text).strip("\n")
        elif rest.startswith("tool_calls."):
            call_match = re.match(r"^tool_calls\.(\d+)\.tool_call\.(.+)$", rest)
            if call_match:
                calls = message["tool_calls"]
                position = int(call_match.group(1))
                while len(calls) <= position:
                    calls.append({"name": None, "arguments": None})
                field_name = call_match.group(2)
                if field_name == "function.name":
                    calls[position]["name"] = _text(value)
                elif field_name == "function.arguments":
                    calls[position]["arguments"] = _text(value)
    result = {side: [found[side][i] for i in sorted(found[side])] for side in found}
    if not result["input"]:
        prompt = _json(attributes.get(attr.LLM_PROMPT))
        if isinstance(prompt, list):
            for item in prompt:
                if isinstance(item, dict):
                    result["input"].append(
                        {
                            "role": _text(item.get("role")),
                            "content": _content_text(item.get("content")),
                            "tool_calls": [],
                        }
                    )
        elif isinstance(prompt, str) and prompt:
            result["input"].append({"role": "user", "content": prompt, "tool_calls": []})
    for side in result.values():
        for message in side:
            message["tool_calls"] = [
                c for c in message["tool_calls"] if c["name"] or c["arguments"]
            ]
    return result


def _error(row: Mapping[str, Any]) -> dict[str, Any] | None:
    for event in row.get("events") or []:
        if event.get("name") == "exception":
            found = event.get("attributes") or {}
            return {
                "type": _text(found.get("exception.type")),
                "message": _text(found.get("exception.message")),
                "traceback": _text(found.get("exception.stacktrace")),
            }
    if row.get("status") == "ERROR":
        return {"type": None, "message": row.get("status_message"), "traceback": None}
    return None


def _tags(attributes: Mapping[str, Any]) -> list[str]:
    tags: list[str] = []
    for key in (attr.SPAN_TAGS, attr.TRACE_TAGS, attr.TAG_TAGS):
        value = attributes.get(key)
        if isinstance(value, str):
            value = _json(value) if value.startswith("[") else [value]
        for tag in value or []:
            if str(tag) not in tags:
                tags.append(str(tag))
    return tags


def _metadata(attributes: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in (attr.TRACE_METADATA, attr.METADATA, attr.SPAN_METADATA):
        value = _json(attributes.get(key))
        if isinstance(value, dict):
            merged.update(value)
        elif attributes.get(key) is not None:
            merged[key] = attributes[key]
    for key, value in attributes.items():
        if key.startswith("metadata.") or key.startswith(attr.SPAN_METADATA + "."):
            merged[key.split(".", 1)[1]] = value
    return merged


def span_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the viewer shows for a stored span (a dict with `attributes` and `events`)."""
    attributes: Mapping[str, Any] = row.get("attributes") or {}
    model = _first_text(attributes, (attr.OI_MODEL_NAME, attr.LLM_MODEL))
    parameters = _json(
        attributes.get("llm.invocation_parameters") or attributes.get(attr.LLM_MODEL_PARAMETERS)
    )
    return {
        "kind": semantic_kind(attributes),
        "input": _first_text(attributes, _INPUT_KEYS),
        "output": _first_text(attributes, _OUTPUT_KEYS),
        "messages": messages(attributes),
        "model": model,
        "parameters": parameters if isinstance(parameters, dict) else None,
        "tokens": tokens(attributes),
        "metadata": _metadata(attributes),
        "tags": _tags(attributes),
        "error": _error(row),
        "session_id": _first_text(attributes, _SESSION_KEYS),
        "user_id": _first_text(attributes, _USER_KEYS),
    }
