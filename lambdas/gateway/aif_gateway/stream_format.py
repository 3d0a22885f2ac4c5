"""OpenAI's Chat Completions streaming wire format: ``chat.completion.chunk`` events as server-sent events.

One stream is, in order: a role chunk (``delta: {"role": "assistant", "content": ""}``), content deltas
(``{"content": "..."}``), tool-call deltas (``{"tool_calls": [{"index", "id", "type", "function":
{"name", "arguments"}}]}`` on a call's first piece, then ``{"index", "function": {"arguments"}}``
pieces), one chunk with an empty delta and the ``finish_reason``, the usage chunk (``choices: []``) when
the request set ``stream_options.include_usage``, and ``data: [DONE]``. A stream that fails after it
started ends with an error event in OpenAI's error shape, then ``[DONE]`` (the official SDKs raise it).
"""

from __future__ import annotations

import json
from typing import Any

from .provider_types import TokenUsage

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return b"data: " + _dumps(payload).encode("utf-8") + b"\n\n"


def usage_body(usage: TokenUsage) -> dict[str, Any]:
    """OpenAI's ``usage`` object. OpenAI's prompt tokens include cached ones; Bedrock's input does not."""
    prompt = usage.input + usage.cache_read + usage.cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": prompt + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
    }


class ChunkEncoder:
    """Encodes one completion's chunks; every chunk carries the same id, created time and model.

    The common prefix is serialised once, so a content delta costs one small ``json`` call.
    """

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        head = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self._prefix = b"data: " + _dumps(head)[:-1].encode("utf-8") + b","

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return self._prefix + b'"choices":[' + _dumps(choice).encode("utf-8") + b"]}\n\n"

    def role(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def content(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def tool_call(self, index: int, arguments: str, call_id: str | None, name: str | None) -> bytes:
        piece: dict[str, Any] = {"index": index}
        if call_id is not None:
            piece["id"] = call_id
            piece["type"] = "function"
            piece["function"] = {"name": name or "", "arguments": arguments}
        else:
            piece["function"] = {"arguments": arguments}
        return self._chunk({"tool_calls": [piece]})

    def reasoning(self, text: str, signature: str) -> bytes:
        """Reasoning text as ``reasoning_content`` (where OpenAI-compatible clients read it)."""
        return self._chunk({"reasoning_content": text}) if text else b""

    def end(self, finish_reason: str, usage: TokenUsage | None, stop_sequence: str | None = None) -> bytes:
        """Everything after the last delta: finish chunk, usage chunk (when asked for), ``[DONE]``."""
        tail = self.finish(finish_reason)
        if usage is not None:
            tail += self.usage(usage)
        return tail + DONE

    def error(self, message: str, code: str) -> bytes:
        """The end of a stream that failed after its first byte: an error event, then ``[DONE]``."""
        return error_event(message, "server_error", code) + DONE

    def finish(self, finish_reason: str) -> bytes:
        return self._chunk({}, finish_reason)

    def usage(self, usage: TokenUsage) -> bytes:
        return self._prefix + b'"choices":[],"usage":' + _dumps(usage_body(usage)).encode("utf-8") + b"}\n\n"


def error_event(message: str, error_type: str, code: str) -> bytes:
    """The event that ends a stream that failed after its first byte (HTTP 200 was already sent)."""
    return sse({"error": {"message": message, "type": error_type, "param": None, "code": code}})
