"""OpenAI's Chat Completions and Embeddings APIs: OpenAI itself, Azure OpenAI, and any OpenAI-compatible
server (vLLM, Ollama, LM Studio), chosen by the catalog entry's ``base_url`` and ``api_flavor``:

- ``openai`` (default): ``Authorization: Bearer <key>`` (plus ``OpenAI-Organization``/``OpenAI-Project``
  when the secret names them), ``max_completion_tokens``; default base URL ``https://api.openai.com/v1``;
- ``azure``: Azure OpenAI's v1 API (``https://<resource>.openai.azure.com/openai/v1``, ``model`` is the
  deployment name) with the ``api-key`` header;
- ``compatible``: a self-hosted server: bearer key, ``max_tokens`` (what every such server reads).

The gateway's requests are already Chat Completions, so the body is mostly passed on: messages, sampling,
stop, tools, tool choice, response format, reasoning effort. Usage maps ``prompt_tokens`` minus
``prompt_tokens_details.cached_tokens`` to input and the cached tokens to cache reads (priced apart).
Streams are OpenAI's ``data: {chunk}`` events ending in ``data: [DONE]``, with
``stream_options.include_usage`` so the last chunk carries usage.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from .config import ModelTarget, RouteTimeouts
from .external_provider import ExternalProvider, ProviderStream, invalid_answer
from .openai_schema import ChatRequest, EmbeddingsRequest
from .provider_http import SseResponse, open_sse, post_json
from .provider_secrets import ProviderCredentials
from .provider_types import (
    ChatResult,
    ChatStream,
    EmbeddingResult,
    ProviderError,
    StreamEvent,
    StreamStop,
    StreamUsage,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
)

API_FLAVORS = ("openai", "azure", "compatible")
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_MESSAGE_FIELDS = ("role", "content", "name", "tool_calls", "tool_call_id")


class OpenAiProvider(ExternalProvider):
    label = "OpenAI"
    default_base_url = "https://api.openai.com/v1"
    stream_options = True  # ask for the usage chunk at the end of a stream
    reasoning_effort = True  # the API takes reasoning_effort

    def max_tokens_key(self, target: ModelTarget) -> str:
        # OpenAI's reasoning models refuse max_tokens; self-hosted servers read only max_tokens.
        return "max_tokens" if target.api_flavor == "compatible" else "max_completion_tokens"

    # -- wire format -------------------------------------------------------------------------------

    def headers(self, target: ModelTarget, creds: ProviderCredentials) -> dict[str, str]:
        if target.api_flavor == "azure":
            return {"api-key": creds.api_key}
        headers = {"Authorization": f"Bearer {creds.api_key}"}
        if creds.organization:
            headers["OpenAI-Organization"] = creds.organization
        if creds.project:
            headers["OpenAI-Project"] = creds.project
        return headers

    def messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        return [{k: m[k] for k in _MESSAGE_FIELDS if k in m} for m in request.messages]

    def tool_choice(self, choice: str | dict[str, Any]) -> str | dict[str, Any]:
        return choice

    def body(self, target: ModelTarget, request: ChatRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": target.model_id, "messages": self.messages(request)}
        for name in ("temperature", "top_p"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.max_tokens is not None:
            body[self.max_tokens_key(target)] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = request.tools
            if not request.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        if request.tool_choice is not None:
            body["tool_choice"] = self.tool_choice(request.tool_choice)
        if request.response_format and request.response_format.get("type") != "text":
            body["response_format"] = request.response_format
        if request.reasoning_effort and self.reasoning_effort:
            body["reasoning_effort"] = request.reasoning_effort
        return body

    # -- calls -------------------------------------------------------------------------------------

    def _chat(
        self, target: ModelTarget, request: ChatRequest, creds: ProviderCredentials, total_s: float
    ) -> ChatResult:
        answer = post_json(
            f"{self.base_url(target)}/chat/completions",
            self.headers(target, creds),
            self.body(target, request),
            total_s,
        )
        try:
            return from_completion(answer)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise invalid_answer(self.label, target) from exc

    def _stream(
        self, target: ModelTarget, request: ChatRequest, creds: ProviderCredentials, timeouts: RouteTimeouts
    ) -> ChatStream:
        body = {**self.body(target, request), "stream": True}
        if self.stream_options:
            body["stream_options"] = {"include_usage": True}
        sse = open_sse(
            f"{self.base_url(target)}/chat/completions",
            self.headers(target, creds),
            body,
            timeouts.first_token_s,
            timeouts.idle_s,
        )
        return ChunkStream(sse, self.label)

    def _embed(
        self, target: ModelTarget, request: EmbeddingsRequest, creds: ProviderCredentials, timeout_s: float
    ) -> EmbeddingResult:
        body: dict[str, Any] = {
            "model": target.model_id,
            "input": list(request.inputs),
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        answer = post_json(
            f"{self.base_url(target)}/embeddings", self.headers(target, creds), body, timeout_s
        )
        try:
            data = sorted(answer["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
            tokens = int((answer.get("usage") or {}).get("prompt_tokens", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise invalid_answer(self.label, target) from exc
        if len(vectors) != len(request.inputs):
            raise invalid_answer(self.label, target)
        return EmbeddingResult(vectors, tokens)


def usage_of(raw: dict[str, Any] | None) -> TokenUsage:
    """OpenAI usage as the gateway's counters: cached prompt tokens are cache reads, not input."""
    raw = raw or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    cached = int((raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return TokenUsage(
        input=max(0, prompt - cached), output=int(raw.get("completion_tokens") or 0), cache_read=cached
    )


def from_completion(answer: dict[str, Any]) -> ChatResult:
    choice = answer["choices"][0]
    message = choice["message"]
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise TypeError("content is not a string")
    calls = [
        {
            "id": c["id"],
            "type": "function",
            "function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or "{}"},
        }
        for c in message.get("tool_calls") or []
    ]
    finish = FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop")
    reasoning = message.get("reasoning_content") or ""
    return ChatResult(text, finish, usage_of(answer.get("usage")), calls, reasoning=reasoning)


class ChunkStream(ProviderStream):
    """OpenAI ``chat.completion.chunk`` events as stream events. An ``error`` object in the stream (a
    failure after HTTP 200) raises ``ProviderError``; so does an answer that is not chunks."""

    def __init__(self, sse: SseResponse, label: str) -> None:
        self._label = label
        super().__init__(sse)

    def _generate(self) -> Generator[StreamEvent, None, None]:
        usage: TokenUsage | None = None
        for _, data in self._sse:
            if data.strip() == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ProviderError(
                    "InvalidModelResponse", f"{self._label}'s stream is not chat chunks", retryable=True
                ) from None
            if not isinstance(chunk, dict):
                continue
            if isinstance(chunk.get("error"), dict):
                error = chunk["error"]
                raise ProviderError(
                    str(error.get("type") or error.get("code") or "StreamError"),
                    str(error.get("message") or ""),
                    retryable=True,
                )
            if chunk.get("usage"):
                usage = usage_of(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if isinstance(text, str) and text:
                    yield TextDelta(text)
                for position, call in enumerate(delta.get("tool_calls") or []):
                    fn = call.get("function") or {}
                    yield ToolCallDelta(
                        int(call.get("index", position)),
                        fn.get("arguments") or "",
                        call.get("id"),
                        fn.get("name"),
                    )
                finish = choice.get("finish_reason")
                if finish:
                    yield StreamStop(FINISH_REASONS.get(finish, "stop"))
        if usage is not None:
            yield StreamUsage(usage)
