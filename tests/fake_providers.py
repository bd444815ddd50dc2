"""A loopback HTTP server speaking enough of the OpenAI, Anthropic and Gemini APIs.

The real client libraries talk to it through their ``base_url`` options, so the
tests exercise the real clients and the real instrumentors, with no network and
no keys. Replies are fixed and their token counts known:

- OpenAI ``POST /v1/chat/completions`` (JSON, or SSE when ``stream``; a final
  usage chunk when ``stream_options.include_usage``).
- Anthropic ``POST /v1/messages`` (JSON, or SSE events when ``stream``).
- Gemini ``POST /{version}/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse``.
- OpenAI ``POST /v1/responses`` (JSON, or SSE events when ``stream``).
- Bedrock ``POST /model/{modelId}/converse`` (JSON) and ``/converse-stream`` (AWS event
  stream), as boto3's ``bedrock-runtime`` client sends them with ``endpoint_url=url``.

Tool calls (Chat Completions, Responses, Bedrock Converse and Gemini): a request offering
``tools`` whose conversation has no tool result yet is answered with one call of the first
tool, its required arguments filled from their JSON schema (``TOOL_ARGUMENT`` for a
string, 2 for a number; Gemini: always ``TOOL_ARGUMENT``); once a tool result is in the
conversation, with the text.

DSPy: a Chat Completions request prompting in DSPy's ``[[ ## field ## ]]`` format is
answered in it (``_dspy_reply``), calling the first tool of a ReAct agent once, then
``finish``; every other output field is ``REPLY``.

A request whose model is ``FAIL_MODEL`` gets HTTP 500.
"""

from __future__ import annotations

import ast
import binascii
import json
import re
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAIL_MODEL = "fail-500"
REPLY = "Hello from the fake provider"
PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7
# A streamed reply comes in this many pieces, so a test can stop reading half-way.
STREAM_PIECES = ["Hello", " from", " the", " fake", " provider"]


TOOL_ARGUMENT = "Paris"
TOOL_CALL_ID = "call_fake_1"


def _tool_call(body: dict[str, Any]) -> tuple[str, str] | None:
    """(name, JSON arguments) of the tool this request is answered with, if any."""
    tools = body.get("tools") or (body.get("toolConfig") or {}).get("tools") or []
    items = [*(body.get("messages") or []), *(body.get("input") or [])]
    answered = any(
        isinstance(m, dict) and (m.get("role") == "tool" or m.get("type") == "function_call_output")
        for m in items
    ) or any(  # Bedrock: a user message carrying a toolResult block
        isinstance(block, dict) and "toolResult" in block
        for m in items
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for block in m["content"]
    )
    if not tools or answered:
        return None
    tool = tools[0].get("function") or tools[0].get("toolSpec") or tools[0]
    schema = tool.get("parameters") or (tool.get("inputSchema") or {}).get("json") or {}
    props = schema.get("properties") or {}
    samples = {"string": TOOL_ARGUMENT, "integer": 2, "number": 2, "boolean": True}
    args = {
        n: samples.get(props.get(n, {}).get("type"), TOOL_ARGUMENT)
        for n in schema.get("required") or []
    }
    return str(tool["name"]), json.dumps(args)


_DSPY_DONE = "[[ ## completed ## ]]"


def _dspy_reply(body: dict[str, Any]) -> str | None:
    """The reply to a prompt of DSPy's ChatAdapter, every output field filled; else None.

    A ReAct step (``next_tool_name`` among the outputs) picks the first tool with its
    arguments set to ``TOOL_ARGUMENT``, or ``finish`` once the trajectory has an observation.
    """
    messages = body.get("messages") or []
    texts = [m.get("content") for m in messages if isinstance(m, dict)]
    system, last = (texts[0], texts[-1]) if texts else ("", "")
    if not (isinstance(system, str) and isinstance(last, str) and _DSPY_DONE in last):
        return None
    outputs = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
    tools = re.findall(
        r"\(\d+\) (\w+), whose description .*?It takes arguments (\{.*?\})\.", system
    )
    use = tools[0] if tools and "observation_" not in last else ("finish", "{}")
    values = {
        "next_tool_name": use[0],
        "next_tool_args": json.dumps(dict.fromkeys(ast.literal_eval(use[1]), TOOL_ARGUMENT)),
    }
    fields = re.findall(r"^\d+\. `(\w+)`", outputs, flags=re.MULTILINE)
    parts = [f"[[ ## {name} ## ]]\n{values.get(name, REPLY)}\n" for name in fields]
    return "\n".join([*parts, _DSPY_DONE])


def _openai_completion(
    model: str, call: tuple[str, str] | None = None, text: str = REPLY
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": call[0], "arguments": call[1]},
                }
            ],
        }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "stop" if call is None else "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


def _openai_stream(
    model: str, include_usage: bool, call: tuple[str, str] | None = None
) -> Iterator[str]:
    base = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
    }
    if call is not None:  # the call's id and name first, its arguments in two pieces
        first = {"index": 0, "id": TOOL_CALL_ID, "type": "function"}
        half = len(call[1]) // 2
        deltas: list[dict[str, Any]] = [
            {
                "role": "assistant",
                "tool_calls": [{**first, "function": {"name": call[0], "arguments": ""}}],
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": call[1][:half]}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": call[1][half:]}}]},
        ]
    else:
        deltas = [
            {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            for i, piece in enumerate(STREAM_PIECES)
        ]
    for delta in deltas:
        yield json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    finish = "stop" if call is None else "tool_calls"
    yield json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if include_usage:
        yield json.dumps({**base, "choices": [], "usage": _openai_completion(model)["usage"]})
    yield "[DONE]"


def _anthropic_message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
    }


def _anthropic_stream(model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    start = {
        **_anthropic_message(model),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
    }
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for piece in STREAM_PIECES:
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": COMPLETION_TOKENS},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _gemini_tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The ``functionCall`` part a Gemini request is answered with, if any: the first
    declared function, before any ``functionResponse`` is in the conversation."""
    declarations = [
        d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []
    ]
    answered = any(
        "functionResponse" in part
        for content in body.get("contents") or []
        for part in content.get("parts") or []
    )
    if not declarations or answered:
        return None
    declared = declarations[0]
    schema = next(  # google-genai sends the JSON schema under its snake_case name
        (
            declared[k]
            for k in ("parameters", "parametersJsonSchema", "parameters_json_schema")
            if k in declared
        ),
        {},
    )
    required = schema.get("required") or []
    args = dict.fromkeys(required, TOOL_ARGUMENT)
    return {"functionCall": {"name": declarations[0]["name"], "args": args}}


def _gemini_response(
    model: str, text: str, usage: bool = True, call: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [call or {"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "modelVersion": model,
    }
    if usage:
        body["usageMetadata"] = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
    return body


def _response(model: str, call: tuple[str, str] | None) -> dict[str, Any]:
    """An OpenAI Responses API response: one function call, or one text message."""
    if call is not None:
        item: dict[str, Any] = {
            "type": "function_call",
            "id": "fc_fake",
            "call_id": TOOL_CALL_ID,
            "name": call[0],
            "arguments": call[1],
            "status": "completed",
        }
    else:
        item = {
            "type": "message",
            "id": "msg_fake",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
        }
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": model,
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": PROMPT_TOKENS,
            "output_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _response_events(response: dict[str, Any]) -> Iterator[tuple[str | None, str]]:
    """The stream of a Responses API response: created, the item added and done, completed."""
    (item,) = response["output"]
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    ]
    if item["type"] == "message":
        for piece in STREAM_PIECES:
            events.append(
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": piece,
                    "logprobs": [],
                }
            )
    events += [
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response},
    ]
    for number, event in enumerate(events):
        yield event["type"], json.dumps({**event, "sequence_number": number})


def _converse(call: tuple[str, str] | None) -> dict[str, Any]:
    """A Bedrock Converse response: one toolUse block, or one text block."""
    if call is not None:
        use = {"toolUseId": TOOL_CALL_ID, "name": call[0], "input": json.loads(call[1])}
        content: list[dict[str, Any]] = [{"toolUse": use}]
    else:
        content = [{"text": REPLY}]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "end_turn" if call is None else "tool_use",
        "usage": _converse_usage(),
        "metrics": {"latencyMs": 1},
    }


def _converse_usage() -> dict[str, int]:
    total = PROMPT_TOKENS + COMPLETION_TOKENS
    return {"inputTokens": PROMPT_TOKENS, "outputTokens": COMPLETION_TOKENS, "totalTokens": total}


def _converse_events(call: tuple[str, str] | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """The events of a Bedrock ConverseStream response, text or a tool use in pieces."""
    yield "messageStart", {"role": "assistant"}
    if call is not None:
        start = {"toolUse": {"toolUseId": TOOL_CALL_ID, "name": call[0]}}
        yield "contentBlockStart", {"contentBlockIndex": 0, "start": start}
        half = len(call[1]) // 2
        for piece in (call[1][:half], call[1][half:]):
            yield (
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}},
            )
    else:
        for piece in STREAM_PIECES:
            yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}
    yield "contentBlockStop", {"contentBlockIndex": 0}
    yield "messageStop", {"stopReason": "end_turn" if call is None else "tool_use"}
    yield "metadata", {"usage": _converse_usage(), "metrics": {"latencyMs": 1}}


def _event_stream_message(event: str, payload: dict[str, Any]) -> bytes:
    """One message of the AWS event stream encoding: prelude, string headers, payload, CRCs."""
    headers = b""
    for name, value in (
        (":event-type", event),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        headers += struct.pack("!B", len(name)) + name.encode()
        headers += struct.pack("!BH", 7, len(value)) + value.encode()  # 7: a string value
    body = json.dumps(payload).encode()
    prelude = struct.pack("!II", 12 + len(headers) + len(body) + 4, len(headers))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + headers + body
    return message + struct.pack("!I", binascii.crc32(message))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append((self.path, body))
        path = self.path.split("?", 1)[0]
        model = str(body.get("model", ""))
        if "/models/" in path:
            model = path.split("/models/", 1)[1].split(":", 1)[0]
        if model == FAIL_MODEL:
            self._json(
                500,
                {
                    "error": {
                        "message": "fake provider failure",
                        "type": "server_error",
                        "code": 500,
                        "status": "INTERNAL",
                    }
                },
            )
        elif path.endswith("/chat/completions"):
            call = _tool_call(body)
            if body.get("stream"):
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._sse((None, data) for data in _openai_stream(model, usage, call))
            else:
                self._json(200, _openai_completion(model, call, _dspy_reply(body) or REPLY))
        elif path.endswith("/responses"):
            response = _response(model, _tool_call(body))
            if body.get("stream"):
                self._sse(_response_events(response))
            else:
                self._json(200, response)
        elif path.startswith("/model/") and path.endswith("/converse"):
            self._json(200, _converse(_tool_call(body)))
        elif path.startswith("/model/") and path.endswith("/converse-stream"):
            stream = b"".join(
                _event_stream_message(event, data)
                for event, data in _converse_events(_tool_call(body))
            )
            self._send(200, "application/vnd.amazon.eventstream", stream)
        elif path.endswith("/messages"):
            if body.get("stream"):
                self._sse((event, json.dumps(data)) for event, data in _anthropic_stream(model))
            else:
                self._json(200, _anthropic_message(model))
        elif path.endswith(":generateContent"):
            self._json(200, _gemini_response(model, REPLY, call=_gemini_tool_call(body)))
        elif path.endswith(":streamGenerateContent"):
            call = _gemini_tool_call(body)
            pieces = STREAM_PIECES if call is None else [""]
            last = len(pieces) - 1
            self._sse(
                (None, json.dumps(_gemini_response(model, piece, usage=i == last, call=call)))
                for i, piece in enumerate(pieces)
            )
        else:
            self._json(404, {"error": {"message": f"no fake for {self.path}"}})

    def _json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, "application/json", json.dumps(payload).encode())

    def _send(self, code: int, content_type: str, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[tuple[str | None, str]]) -> None:
        chunks = []
        for event, data in events:
            prefix = f"event: {event}\n" if event else ""
            chunks.append(f"{prefix}data: {data}\n\n")
        payload = "".join(chunks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client closed a half-read stream


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, dict[str, Any]]]


class FakeProviders:
    """The fake provider server on an ephemeral loopback port; a context manager."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProviders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        """Root URL: OpenAI's base_url is ``url + "/v1"``, Anthropic's and Gemini's ``url``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """(path, JSON body) of every request received."""
        return list(self._server.requests)


# -- Mistral and Groq ----------------------------------------------------------------------
# Both speak the Chat Completions dialect above: Mistral's client posts to
# ``url + "/v1/chat/completions"`` (``server_url=url``), Groq's to
# ``url + "/openai/v1/chat/completions"`` (``base_url=url``). Mistral's API puts usage on
# the last chunk of every stream (the one with the finish reason) without being asked;
# streams for models named ``MISTRAL_MODEL_PREFIX...`` come that way here.

MISTRAL_MODEL_PREFIX = "mistral"
_chat_completions_stream = _openai_stream


def _openai_stream(  # noqa: F811
    model: str, include_usage: bool, call: tuple[str, str] | None = None
) -> Iterator[str]:
    if not model.startswith(MISTRAL_MODEL_PREFIX):
        yield from _chat_completions_stream(model, include_usage, call)
        return
    *chunks, finish, usage, done = _chat_completions_stream(model, True, call)
    yield from chunks
    yield json.dumps({**json.loads(finish), "usage": json.loads(usage)["usage"]})
    yield done
