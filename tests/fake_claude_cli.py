"""A fake ``claude`` CLI speaking enough of its stream-json protocol for the Agent SDK.

The Claude Agent SDK runs the CLI as a subprocess, writing NDJSON to its stdin and
reading NDJSON from its stdout. This script answers as the CLI does, with no model
behind it (``tests/test_frameworks.py`` copies it to an executable named ``claude``):

- the SDK's ``initialize`` control request is answered, and the hook callbacks it
  registers are kept;
- each user message is a turn: a ``system``/``init`` message; an assistant message
  calling the first tool of the first SDK MCP server (found over MCP: ``initialize`` and
  ``tools/list`` once a session, then ``tools/call`` with each required argument set to
  ``TOOL_ARGUMENT``, each through an ``mcp_message`` control request), with the
  ``PreToolUse`` and ``PostToolUse`` hook callbacks around the call; a user message
  with the tool's result; an assistant message with ``REPLY`` (streamed first as
  ``stream_event`` frames under ``--include-partial-messages``); and a ``result``
  message with the turn's usage and cost;
- stdin closed: exit 0.

Each assistant message reports ``PROMPT_TOKENS``/``COMPLETION_TOKENS`` of usage. The
``TRACEPARENT`` the SDK hands the CLI is appended to ``traceparent.txt`` in the working
directory, one line per start.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

# The same values as fake_providers.py, which this script cannot import (it runs alone).
REPLY = "Hello from the fake provider"
PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7
TOOL_ARGUMENT = "Paris"
VERSION = "2.1.332"
SESSION = str(uuid.uuid4())


def option(name: str, default: str | None = None) -> str | None:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args[:-1] else default


MODEL = option("--model", "claude-sonnet-4-5") or "claude-sonnet-4-5"
SERVERS = json.loads(option("--mcp-config", '{"mcpServers": {}}') or "{}")["mcpServers"]
PARTIAL = "--include-partial-messages" in sys.argv


class Session:
    """The CLI's side of the conversation: stdin lines in, stdout lines out."""

    def __init__(self) -> None:
        self.hooks: dict[str, list[dict[str, Any]]] = {}
        self.pending: list[dict[str, Any]] = []  # messages read while awaiting a reply
        self.requests = 0
        self.rpc_ids = 0
        self.tools: list[dict[str, Any]] | None = None

    def send(self, message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def read(self) -> dict[str, Any] | None:
        """The next message on stdin; None once it is closed."""
        while line := sys.stdin.readline():
            if line.strip():
                return dict(json.loads(line))
        return None

    def next_message(self) -> dict[str, Any] | None:
        return self.pending.pop(0) if self.pending else self.read()

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a control request to the SDK; its response's payload."""
        self.requests += 1
        request_id = f"cli_req_{self.requests}"
        self.send({"type": "control_request", "request_id": request_id, "request": request})
        while True:
            message = self.read()
            if message is None:
                raise SystemExit("stdin closed awaiting a control response")
            response = message.get("response") or {}
            if message.get("type") == "control_response" and (
                response.get("request_id") == request_id
            ):
                if response.get("subtype") == "error":
                    raise SystemExit(f"control request failed: {response.get('error')}")
                return dict(response.get("response") or {})
            self.pending.append(message)

    def answer(self, message: dict[str, Any], payload: dict[str, Any]) -> None:
        self.send(
            {
                "type": "control_response",
                "response": {
                    "subtype": "success",
                    "request_id": message["request_id"],
                    "response": payload,
                },
            }
        )

    def mcp(self, server: str, method: str, params: dict[str, Any] | None = None) -> Any:
        """A JSON-RPC request to an SDK MCP server (a notification when no reply is owed)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        notification = method.startswith("notifications/")
        if not notification:
            self.rpc_ids += 1
            message["id"] = self.rpc_ids
        reply = self.control({"subtype": "mcp_message", "server_name": server, "message": message})
        result = (reply.get("mcp_response") or {}).get("result")
        if not notification and result is None:
            raise SystemExit(f"MCP {method} failed: {reply}")
        return result

    def run_hooks(self, event: str, tool: str, tool_use_id: str, **fields: Any) -> None:
        for matcher in self.hooks.get(event) or []:
            if matcher.get("matcher") not in (None, "", "*", tool):
                continue
            for callback_id in matcher.get("hookCallbackIds") or []:
                hook_input = {
                    "hook_event_name": event,
                    "session_id": SESSION,
                    "tool_name": tool,
                    "tool_use_id": tool_use_id,
                    **fields,
                }
                self.control(
                    {
                        "subtype": "hook_callback",
                        "callback_id": callback_id,
                        "input": hook_input,
                        "tool_use_id": tool_use_id,
                    }
                )

    def assistant(self, message_id: str, content: list[dict[str, Any]], stop: str) -> None:
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
        self.send(
            {
                "type": "assistant",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": content,
                    "stop_reason": stop,
                    "usage": usage,
                },
                "parent_tool_use_id": None,
                "session_id": SESSION,
                "uuid": str(uuid.uuid4()),
            }
        )

    def call_tool(self) -> tuple[str, str, dict[str, Any], str] | None:
        """Find and call the first SDK MCP tool: (its name, use id, input, result text)."""
        sdk = [name for name, config in SERVERS.items() if config.get("type") == "sdk"]
        if not sdk:
            return None
        server = sdk[0]
        if self.tools is None:  # the MCP handshake, once a session
            self.mcp(
                server,
                "initialize",
                {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "claude-code", "version": VERSION},
                },
            )
            self.mcp(server, "notifications/initialized")
            self.tools = self.mcp(server, "tools/list")["tools"]
        (tool, *_) = self.tools
        schema = tool.get("inputSchema") or {}
        arguments = dict.fromkeys(schema.get("required") or [], TOOL_ARGUMENT)
        name, use_id = f"mcp__{server}__{tool['name']}", f"toolu_{uuid.uuid4().hex[:12]}"
        use = {"type": "tool_use", "id": use_id, "name": name, "input": arguments}
        self.assistant(f"msg_{uuid.uuid4().hex[:12]}", [use], "tool_use")
        self.run_hooks("PreToolUse", name, use_id, tool_input=arguments)
        result = self.mcp(server, "tools/call", {"name": tool["name"], "arguments": arguments})
        text = "".join(block.get("text", "") for block in result.get("content") or [])
        self.run_hooks(
            "PostToolUse", name, use_id, tool_input=arguments, tool_response=result["content"]
        )
        return name, use_id, arguments, text

    def turn(self) -> None:
        self.send(
            {
                "type": "system",
                "subtype": "init",
                "session_id": SESSION,
                "model": MODEL,
                "claude_code_version": VERSION,
                "cwd": os.getcwd(),
                "tools": [],
                "mcp_servers": [{"name": n, "status": "connected"} for n in SERVERS],
                "permissionMode": option("--permission-mode", "default"),
                "uuid": str(uuid.uuid4()),
            }
        )
        turns = 1
        called = self.call_tool()
        if called is not None:
            _, use_id, _, text = called
            result = {"type": "tool_result", "tool_use_id": use_id, "content": text}
            self.send(
                {
                    "type": "user",
                    "message": {"role": "user", "content": [result]},
                    "parent_tool_use_id": None,
                    "session_id": SESSION,
                    "uuid": str(uuid.uuid4()),
                    "tool_use_result": [{"type": "text", "text": text}],
                }
            )
            turns += 1
        message_id = f"msg_{uuid.uuid4().hex[:12]}"
        if PARTIAL:
            for event in stream_events(message_id):
                self.send(
                    {
                        "type": "stream_event",
                        "uuid": str(uuid.uuid4()),
                        "session_id": SESSION,
                        "event": event,
                        "parent_tool_use_id": None,
                    }
                )
        self.assistant(message_id, [{"type": "text", "text": REPLY}], "end_turn")
        usage = {"input_tokens": PROMPT_TOKENS * turns, "output_tokens": COMPLETION_TOKENS * turns}
        self.send(
            {
                "type": "result",
                "subtype": "success",
                "duration_ms": 5,
                "duration_api_ms": 4,
                "is_error": False,
                "num_turns": turns,
                "session_id": SESSION,
                "stop_reason": "end_turn",
                "total_cost_usd": 0.001,
                "usage": usage,
                "modelUsage": {
                    MODEL: {"inputTokens": usage["input_tokens"], "outputTokens": turns}
                },
                "result": REPLY,
                "uuid": str(uuid.uuid4()),
            }
        )

    def serve(self) -> None:
        while (message := self.next_message()) is not None:
            kind = message.get("type")
            if kind == "control_request":
                request = message.get("request") or {}
                if request.get("subtype") == "initialize":
                    self.hooks = request.get("hooks") or {}
                    self.answer(message, {"commands": [], "models": [], "account": {}})
                else:  # interrupt, set_model, ...: acknowledged, not acted on
                    self.answer(message, {})
            elif kind == "user":
                self.turn()


def stream_events(message_id: str) -> list[dict[str, Any]]:
    """The Messages API stream of a text reply, as the CLI forwards it."""
    usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": 0}
    pieces = ["Hello", " from", " the", " fake", " provider"]
    return [
        {
            "type": "message_start",
            "message": {"id": message_id, "model": MODEL, "role": "assistant", "usage": usage},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *[
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ],
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": COMPLETION_TOKENS},
        },
        {"type": "message_stop"},
    ]


if __name__ == "__main__":
    with open("traceparent.txt", "a") as record:
        record.write(os.environ.get("TRACEPARENT", "") + "\n")
    Session().serve()
