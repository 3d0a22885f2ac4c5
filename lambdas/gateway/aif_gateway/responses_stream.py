"""OpenAI's Responses API streaming wire format: typed server-sent events with a ``sequence_number``.

One stream is, in order: ``response.created`` and ``response.in_progress`` (the response without
output), then per output item ``response.output_item.added``, its deltas and ``response.output_item.done``:
a message item carries ``response.content_part.added``, ``response.output_text.delta`` pieces,
``response.output_text.done`` and ``response.content_part.done``; a function call item carries
``response.function_call_arguments.delta`` pieces and ``response.function_call_arguments.done``.
It ends with ``response.completed`` (or ``response.incomplete`` when the answer hit
``max_output_tokens``) holding the whole response with its usage. A stream that fails after it started
ends with an ``error`` event and ``response.failed``. There is no ``[DONE]`` line in this API.
"""

from __future__ import annotations

import json
from typing import Any

from .openai_responses import function_call_item, message_item, response_body
from .openai_schema import ChatRequest
from .provider_types import TokenUsage

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class ResponseStreamEncoder:
    """Encodes one streamed response (a ``streaming.StreamEncoder``), keeping the output items so far
    for the final ``response.completed`` event."""

    def __init__(self, response_id: str, created_at: int, model: str, request: ChatRequest) -> None:
        self._id = response_id
        self._created = created_at
        self._model = model
        self._request = request
        self._seq = 0
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text = ""
        self._tool_items: dict[int, dict[str, Any]] = {}

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _dumps(body).encode("utf-8") + b"\n\n"

    def _response(
        self,
        status: str,
        usage: TokenUsage | None = None,
        finish: str | None = None,
        error: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return response_body(
            self._id, self._created, self._model, self._request,
            status=status, output=list(self._output), usage=usage, finish_reason=finish, error=error,
        )  # fmt: skip

    def _close_item(self) -> bytes:
        item = self._open
        if item is None:
            return b""
        self._open = None
        index = len(self._output)
        out = b""
        if item["type"] == "message":
            part = {"type": "output_text", "text": self._text, "annotations": []}
            ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out += self._event("response.output_text.done", {**ids, "text": self._text, "logprobs": []})
            out += self._event("response.content_part.done", {**ids, "part": part})
            done = message_item(item["id"], self._text)
        else:
            args = item["arguments"]
            out += self._event(
                "response.function_call_arguments.done",
                {"item_id": item["id"], "output_index": index, "name": item["name"], "arguments": args},
            )
            done = function_call_item(item["id"], item["call_id"], item["name"], args)
        self._output.append(done)
        return out + self._event("response.output_item.done", {"output_index": index, "item": done})

    def role(self) -> bytes:
        started = self._response("in_progress")
        return self._event("response.created", {"response": started}) + self._event(
            "response.in_progress", {"response": started}
        )

    def reasoning(self, text: str, signature: str) -> bytes:
        return b""  # reasoning items are not streamed (stateless: nothing could send them back)

    def content(self, text: str) -> bytes:
        out = b""
        if self._open is None or self._open["type"] != "message":
            out += self._close_item()
            item = message_item(
                f"msg_{self._id[len('resp_') :]}_{len(self._output)}", "", status="in_progress"
            )
            self._open, self._text = item, ""
            index = len(self._output)
            out += self._event("response.output_item.added", {"output_index": index, "item": item})
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._event(
                "response.content_part.added",
                {"item_id": item["id"], "output_index": index, "content_index": 0, "part": part},
            )
        self._text += text
        assert self._open is not None
        return out + self._event(
            "response.output_text.delta",
            {"item_id": self._open["id"], "output_index": len(self._output), "content_index": 0,
             "delta": text, "logprobs": []},
        )  # fmt: skip

    def tool_call(self, index: int, arguments: str, call_id: str | None, name: str | None) -> bytes:
        out = b""
        if call_id is not None:
            out += self._close_item()
            item_id = f"fc_{self._id[len('resp_') :]}_{index}"
            item = function_call_item(item_id, call_id, name or "", "", status="in_progress")
            self._open = item
            out += self._event(
                "response.output_item.added", {"output_index": len(self._output), "item": dict(item)}
            )
        if arguments and self._open is not None and self._open["type"] == "function_call":
            self._open["arguments"] += arguments
            out += self._event(
                "response.function_call_arguments.delta",
                {"item_id": self._open["id"], "output_index": len(self._output), "delta": arguments},
            )
        return out

    def end(self, finish_reason: str, usage: TokenUsage | None, stop_sequence: str | None = None) -> bytes:
        out = b""
        if not self._output and self._open is None:
            out += self.content("")  # an empty answer is still one (empty) message, as OpenAI returns it
        out += self._close_item()
        final = self._response("completed", usage, finish_reason)
        kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": final})

    def error(self, message: str, code: str) -> bytes:
        out = self._event("error", {"code": code, "message": message, "param": None})
        failed = self._response("failed", error={"code": "server_error", "message": message})
        return out + self._event("response.failed", {"response": failed})
