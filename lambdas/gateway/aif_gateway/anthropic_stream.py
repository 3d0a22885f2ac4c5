"""The Anthropic Messages API's streaming wire format, as server-sent events with ``event:`` names.

One stream is, in order: ``message_start`` (the message with empty content; usage arrives at the
end, because Bedrock reports it there), a ``ping``, then per content block ``content_block_start``,
its deltas (``thinking_delta`` and ``signature_delta``, ``text_delta``, or ``input_json_delta`` for a
tool call's input) and ``content_block_stop``; then ``message_delta`` with the ``stop_reason`` and the
full usage, and ``message_stop``. A stream that fails after it started ends with an ``error`` event
(the official SDKs raise it).
"""

from __future__ import annotations

import json
from typing import Any

from .anthropic_messages import stop_reason, usage_body
from .provider_types import TokenUsage

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One named server-sent event carrying ``payload`` as JSON."""
    return b"event: " + name.encode() + b"\ndata: " + _dumps(payload).encode("utf-8") + b"\n\n"


class MessageStreamEncoder:
    """Encodes one streamed message (a ``streaming.StreamEncoder``); keeps the open content block so a
    change from thinking to text to a tool call closes one block and starts the next."""

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._index = -1
        self._open: str | None = None  # "thinking", "text" or "tool_use"

    def _start(self, block: dict[str, Any]) -> bytes:
        out = self._stop()
        self._index += 1
        self._open = block["type"]
        return out + event(
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

    def _stop(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
        )

    def role(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_body(TokenUsage()),
        }
        return event("message_start", {"type": "message_start", "message": message}) + event(
            "ping", {"type": "ping"}
        )

    def reasoning(self, text: str, signature: str) -> bytes:
        out = (
            b""
            if self._open == "thinking"
            else self._start({"type": "thinking", "thinking": "", "signature": ""})
        )
        if text:
            out += self._delta({"type": "thinking_delta", "thinking": text})
        if signature:
            out += self._delta({"type": "signature_delta", "signature": signature})
        return out

    def content(self, text: str) -> bytes:
        out = b"" if self._open == "text" else self._start({"type": "text", "text": ""})
        return out + self._delta({"type": "text_delta", "text": text})

    def tool_call(self, index: int, arguments: str, call_id: str | None, name: str | None) -> bytes:
        out = b""
        if call_id is not None:
            out = self._start({"type": "tool_use", "id": call_id, "name": name or "", "input": {}})
        if arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def end(self, finish_reason: str, usage: TokenUsage | None, stop_sequence: str | None = None) -> bytes:
        delta = {"stop_reason": stop_reason(finish_reason, stop_sequence), "stop_sequence": stop_sequence}
        body = {"type": "message_delta", "delta": delta, "usage": usage_body(usage or TokenUsage())}
        return self._stop() + event("message_delta", body) + event("message_stop", {"type": "message_stop"})

    def error(self, message: str, code: str) -> bytes:
        kind = "overloaded_error" if code == "model_stream_error" else "api_error"
        return event("error", {"type": "error", "error": {"type": kind, "message": message}})
