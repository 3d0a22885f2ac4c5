"""What every model provider returns to the gateway, independent of Bedrock's or OpenAI's shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import GuardrailRef, ModelTarget
from .openai_schema import ChatRequest, EmbeddingsRequest


@dataclass(frozen=True)
class TokenUsage:
    """Bedrock's usage counters. ``input`` excludes the cache-read and cache-write tokens."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class ChatResult:
    text: str
    finish_reason: str  # OpenAI vocabulary: stop, length, tool_calls, content_filter
    usage: TokenUsage
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI shape
    guardrail_intervened: bool = False
    reasoning: str = ""  # the model's reasoning text, when reasoning was asked for


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    input_tokens: int


@dataclass(frozen=True)
class CallContext:
    """Who a model call is made for; sent to Bedrock as requestMetadata for invocation-log attribution."""

    request_id: str
    team: str
    feature: str
    guardrail: GuardrailRef | None = None


class ProviderError(Exception):
    """A failed model call. ``retryable`` errors move the request to the route's next target;
    ``client_fault`` errors (the request itself is invalid for the model) are returned as a 400."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool,
        client_fault: bool = False,
        usage: TokenUsage | None = None,
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.client_fault = client_fault
        self.usage = usage  # tokens already billed before the failure (e.g. earlier embedding calls)


class Provider(Protocol):
    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult: ...
    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult: ...
