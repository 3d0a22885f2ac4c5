"""Anthropic's own API (Messages, ``POST /v1/messages``): chat, streaming and tools. No embeddings.

The gateway's Chat Completions request becomes a Messages request: system and developer messages go to
``system``; user texts and images (data URLs as base64 sources, https URLs as URL sources) become
content blocks; an assistant's ``tool_calls`` become ``tool_use`` blocks and ``tool`` messages become
``tool_result`` blocks in the next user turn; consecutive turns of one role are merged. ``max_tokens`` is
required by Anthropic: the request's, else the catalog's ``max_output_tokens``, else 4096. Tool choice
``required`` is ``{"type": "any"}``, a named function ``{"type": "tool"}``, and
``parallel_tool_calls: false`` sets ``disable_parallel_tool_use``.

Answers: ``text`` and ``tool_use`` blocks; ``stop_reason`` ``end_turn``/``stop_sequence`` -> stop,
``max_tokens`` -> length, ``tool_use`` -> tool_calls, ``refusal`` -> content_filter. Usage:
``input_tokens`` (without cache), ``cache_read_input_tokens``, ``cache_creation_input_tokens`` and
``output_tokens``, each priced apart. Streams: ``message_start`` (input usage), ``content_block_start``
(a tool call's id and name), ``content_block_delta`` (``text_delta``, ``input_json_delta``),
``message_delta`` (stop reason, output tokens), ``message_stop``; an ``error`` event after HTTP 200
(e.g. ``overloaded_error``) raises a retryable ``ProviderError``.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from .config import ModelTarget, RouteTimeouts
from .external_provider import ExternalProvider, ProviderStream, invalid_answer
from .openai_schema import ChatRequest
from .provider_http import open_sse, post_json
from .provider_secrets import ProviderCredentials
from .provider_types import (
    ChatResult,
    ChatStream,
    ProviderError,
    StreamEvent,
    StreamStop,
    StreamUsage,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic's transient error types (as stream events after HTTP 200, or error bodies).
RETRYABLE_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


class AnthropicProvider(ExternalProvider):
    label = "Anthropic"
    default_base_url = "https://api.anthropic.com"

    def headers(self, creds: ProviderCredentials) -> dict[str, str]:
        return {"x-api-key": creds.api_key, "anthropic-version": ANTHROPIC_VERSION}

    def _chat(
        self, target: ModelTarget, request: ChatRequest, creds: ProviderCredentials, total_s: float
    ) -> ChatResult:
        answer = post_json(
            f"{self.base_url(target)}/v1/messages", self.headers(creds), to_messages(target, request), total_s
        )
        try:
            return from_message(answer)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise invalid_answer(self.label, target) from exc

    def _stream(
        self, target: ModelTarget, request: ChatRequest, creds: ProviderCredentials, timeouts: RouteTimeouts
    ) -> ChatStream:
        sse = open_sse(
            f"{self.base_url(target)}/v1/messages",
            self.headers(creds),
            {**to_messages(target, request), "stream": True},
            timeouts.first_token_s,
            timeouts.idle_s,
        )
        return MessageEventStream(sse)


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                media = header[5:].split(";")[0] or "image/png"
                blocks.append(
                    {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
                )
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
    return blocks


def _tool_result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def to_messages(target: ModelTarget, request: ChatRequest) -> dict[str, Any]:
    """The Messages API body for ``request`` (see the module docstring)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(_tool_result_text(message.get("content")))
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _tool_result_text(message.get("content")),
            }
            add("user", [block])
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    arguments = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    arguments = {}
                blocks.append(
                    {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": arguments}
                )
            add("assistant", blocks)
        else:
            add("user", _blocks(message.get("content")))
    max_tokens = request.max_tokens or target.capabilities.max_output_tokens or DEFAULT_MAX_TOKENS
    body: dict[str, Any] = {"model": target.model_id, "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = "\n\n".join(s for s in system if s)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in request.tools
        ]
    choice = _tool_choice(request)
    if choice is not None:
        body["tool_choice"] = choice
    return body


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    result: dict[str, Any] | None = None
    if choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "auto":
        result = {"type": "auto"}
    elif isinstance(choice, dict):
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    if request.tools and not request.parallel_tool_calls:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def usage_of(raw: dict[str, Any] | None) -> TokenUsage:
    raw = raw or {}
    return TokenUsage(
        input=int(raw.get("input_tokens") or 0),
        output=int(raw.get("output_tokens") or 0),
        cache_read=int(raw.get("cache_read_input_tokens") or 0),
        cache_write=int(raw.get("cache_creation_input_tokens") or 0),
    )


def from_message(answer: dict[str, Any]) -> ChatResult:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in answer["content"]:
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "tool_use":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
    finish = STOP_REASONS.get(answer.get("stop_reason") or "end_turn", "stop")
    return ChatResult("".join(texts), finish, usage_of(answer.get("usage")), calls)


class MessageEventStream(ProviderStream):
    """Anthropic's Messages stream events as the gateway's stream events."""

    def _generate(self) -> Generator[StreamEvent, None, None]:
        usage = TokenUsage()
        have_usage = False
        tool_index: dict[int, int] = {}  # content block index -> tool call index
        for _, data in self._sse:
            try:
                event = json.loads(data)
            except ValueError:
                raise ProviderError(
                    "InvalidModelResponse", "Anthropic's stream is not JSON events", retryable=True
                ) from None
            kind = event.get("type")
            if kind == "message_start":
                usage, have_usage = usage_of((event.get("message") or {}).get("usage")), True
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                if block.get("type") == "tool_use":
                    index = tool_index.setdefault(int(event.get("index", 0)), len(tool_index))
                    yield ToolCallDelta(index, "", block.get("id"), block.get("name"))
                elif block.get("type") == "text" and block.get("text"):
                    yield TextDelta(block["text"])
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield TextDelta(delta["text"])
                elif delta.get("type") == "input_json_delta":
                    call_index = tool_index.get(int(event.get("index", 0)))
                    if call_index is not None and delta.get("partial_json"):
                        yield ToolCallDelta(call_index, delta["partial_json"])
            elif kind == "message_delta":
                out = usage_of(event.get("usage"))
                # message_delta's counts are cumulative; input counts appear here only on some models.
                usage = TokenUsage(
                    input=out.input or usage.input,
                    output=out.output,
                    cache_read=out.cache_read or usage.cache_read,
                    cache_write=out.cache_write or usage.cache_write,
                )
                stop = (event.get("delta") or {}).get("stop_reason")
                if stop:
                    yield StreamStop(STOP_REASONS.get(stop, "stop"))
            elif kind == "message_stop":
                break
            elif kind == "error":
                error = event.get("error") or {}
                error_type = str(error.get("type") or "error")
                raise ProviderError(
                    error_type, str(error.get("message") or ""), retryable=error_type in RETRYABLE_TYPES
                )
        if have_usage:
            yield StreamUsage(usage)
