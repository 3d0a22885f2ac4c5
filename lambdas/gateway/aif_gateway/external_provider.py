"""What every external model API (OpenAI, Anthropic, Mistral) shares behind the gateway.

A subclass speaks one provider's wire format (``_chat``, ``_stream``, ``_embed``); this base adds the
rest, the same for every provider:

- credentials: the target's Secrets Manager secret (``provider_secrets.SecretCache``), re-read once
  when the provider answers 401 (a rotated key), never logged;
- the gateway's Bedrock guardrail on the prompt and the answer (``guardrail_check``), as for SageMaker
  endpoints. With a guardrail a streamed request is served buffered (``BufferedStream``): the guardrail
  must see the whole answer before any of it leaves the gateway;
- error mapping (``provider_http.http_error``) to the router's fallback rules;
- timeouts from the route: a chat call reads for the whole generation time, a stream waits its
  first-token timeout for the response to start and then at most its idle timeout between reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from .aws_clients import LazyClients, make_client
from .config import ModelTarget, RouteTimeouts
from .guardrail_check import guardrail_block
from .openai_schema import ChatRequest, EmbeddingsRequest
from .provider_http import HttpStatusError, SseResponse, http_error
from .provider_secrets import ProviderCredentials, SecretCache
from .provider_types import (
    BufferedStream,
    CallContext,
    ChatResult,
    ChatStream,
    EmbeddingResult,
    ProviderError,
    StreamEvent,
    TokenUsage,
)

T = TypeVar("T")


class ExternalProvider:
    """Base of the external providers. ``label`` names the provider in errors ("OpenAI")."""

    label = "external"
    default_base_url = ""

    def __init__(
        self,
        timeout_s: float = 60.0,
        secrets: SecretCache | None = None,
        bedrock_factory: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self.secrets = secrets if secrets is not None else SecretCache()
        self._bedrock: LazyClients[str | None] = LazyClients(
            bedrock_factory
            if bedrock_factory is not None
            else (
                lambda region: make_client("bedrock-runtime", region, read_timeout=timeout_s, max_attempts=1)
            )
        )

    # -- the Provider protocol ---------------------------------------------------------------------

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        blocked = self._guard(ctx, "INPUT", prompt_text(request))
        if blocked is not None:  # the prompt never reaches the provider
            return ChatResult(blocked, "content_filter", TokenUsage(), guardrail_intervened=True)
        total_s = ctx.timeouts.total_s if ctx.timeouts else self._timeout_s
        result = self._authed(target, lambda creds: self._chat(target, request, creds, total_s))
        answer = "\n".join([result.text, *(c["function"]["arguments"] for c in result.tool_calls)])
        blocked = self._guard(ctx, "OUTPUT", answer)
        if blocked is not None:  # the model was called: its tokens are still metered
            return ChatResult(blocked, "content_filter", result.usage, guardrail_intervened=True)
        return result

    def chat_stream(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatStream:
        if ctx.guardrail is not None:
            return BufferedStream(self.chat(target, request, ctx))
        timeouts = ctx.timeouts or RouteTimeouts()
        return self._authed(target, lambda creds: self._stream(target, request, creds, timeouts))

    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult:
        return self._authed(target, lambda creds: self._embed(target, request, creds, self._timeout_s))

    # -- what a provider implements ----------------------------------------------------------------

    def _chat(
        self, target: ModelTarget, request: ChatRequest, creds: ProviderCredentials, total_s: float
    ) -> ChatResult:
        raise NotImplementedError

    def _stream(
        self, target: ModelTarget, request: ChatRequest, creds: ProviderCredentials, timeouts: RouteTimeouts
    ) -> ChatStream:
        raise NotImplementedError

    def _embed(
        self, target: ModelTarget, request: EmbeddingsRequest, creds: ProviderCredentials, timeout_s: float
    ) -> EmbeddingResult:
        raise ProviderError(
            "UnsupportedModel", f"{target.name}: {self.label} has no embeddings API", retryable=False
        )

    # -- shared steps ------------------------------------------------------------------------------

    def base_url(self, target: ModelTarget) -> str:
        return (target.base_url or self.default_base_url).rstrip("/")

    def _authed(self, target: ModelTarget, call: Callable[[ProviderCredentials], T]) -> T:
        """``call`` with the target's credentials; on 401 once more with the secret re-read."""
        if not target.secret:
            raise ProviderError(
                "InvalidConfiguration",
                f"{target.name}: no secret names the {self.label} API key",
                retryable=False,
            )
        creds = self.secrets.get(target.secret)
        try:
            return call(creds)
        except HttpStatusError as exc:
            if exc.status != 401:
                raise http_error(exc, self.label) from None
        fresh = self.secrets.get(target.secret, refresh=True)  # the key may have been rotated
        if fresh == creds:
            raise ProviderError(
                "AuthenticationError", f"{self.label} refused the key in {target.secret!r}", retryable=False
            )
        try:
            return call(fresh)
        except HttpStatusError as exc:
            raise http_error(exc, self.label) from None

    def _guard(self, ctx: CallContext, source: str, text: str) -> str | None:
        if ctx.guardrail is None:
            return None
        return guardrail_block(self._bedrock.get(None), ctx, source, text)


class ProviderStream:
    """A provider's started SSE answer as gateway stream events: subclasses turn the provider's events
    into ``StreamEvent``s in ``_generate``; ``close`` stops reading and drops the connection (which
    stops the generation at the provider)."""

    def __init__(self, sse: SseResponse) -> None:
        self._sse = sse
        self._events = self._generate()

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()
        self._sse.close()

    def _generate(self) -> Generator[StreamEvent, None, None]:
        raise NotImplementedError


def prompt_text(request: ChatRequest) -> str:
    """Everything in the conversation a guardrail should read: texts, tool calls and tool results."""
    parts: list[str] = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
        for call in message.get("tool_calls") or []:
            parts.append(json.dumps(call.get("function", {})))
    return "\n".join(p for p in parts if p)


def invalid_answer(label: str, target: ModelTarget) -> ProviderError:
    return ProviderError(
        "InvalidModelResponse",
        f"{target.name}: {label}'s answer does not have the expected shape",
        retryable=True,
    )
