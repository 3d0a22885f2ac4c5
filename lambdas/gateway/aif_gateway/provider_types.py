"""What every model provider returns to the gateway, independent of Bedrock's or OpenAI's shapes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import GuardrailRef, ModelTarget, RouteTimeouts
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
    guardrail_units: dict[str, int] = field(default_factory=dict)  # text units per policy assessed
    reasoning_signature: str = ""  # Anthropic's signature of that reasoning (sent back in later turns)
    stop_sequence: str | None = None  # the stop sequence that ended the answer, when the model says


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
    timeouts: RouteTimeouts | None = None  # the route's limits; None: the provider's own default
    # The key's application inference profiles, {catalog model ID: profile ARN} (ApiKeyRecord): Bedrock
    # targets are invoked through them so the bill is split by feature.
    inference_profiles: Mapping[str, str] = field(default_factory=dict, hash=False)
    # ``grounding.Grounding`` when a chat ``retrieval`` asked for the contextual grounding check: providers
    # guarded by ApplyGuardrail send its sources and query with the answer.
    grounding: Any = None


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


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer's text, as the model produced it."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning text; ``signature`` (Anthropic's proof that the thinking is
    unaltered) arrives as its own piece, with empty text."""

    text: str
    signature: str = ""


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call ``index``: the first piece carries ``id`` and ``name``, later ones only
    argument JSON text (concatenated, the pieces form the call's ``arguments``)."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class StreamStop:
    """The model finished; ``finish_reason`` in OpenAI vocabulary."""

    finish_reason: str
    guardrail_intervened: bool = False
    stop_sequence: str | None = None  # which of the request's stop sequences ended the answer


@dataclass(frozen=True)
class StreamUsage:
    """The model's own usage counters for the whole call (Bedrock: the ``metadata`` event)."""

    usage: TokenUsage
    guardrail_units: dict[str, int] = field(default_factory=dict)  # from the metadata event's trace


StreamEvent = TextDelta | ReasoningDelta | ToolCallDelta | StreamStop | StreamUsage


class ChatStream(Protocol):
    """A started model stream. Iterating raises ``ProviderError`` when the model fails mid-way;
    ``close`` stops the model call (and is safe to call twice)."""

    def __iter__(self) -> Iterator[StreamEvent]: ...
    def __next__(self) -> StreamEvent: ...
    def close(self) -> None: ...


class Provider(Protocol):
    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult: ...
    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult: ...


class StreamingProvider(Provider, Protocol):
    """A provider that can stream a chat answer. ``chat_stream`` returns once the call has started;
    errors before that raise ``ProviderError`` like ``chat`` does. Providers without it are streamed
    buffered (``BufferedStream``): the whole answer arrives as one burst of events."""

    def chat_stream(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatStream: ...


class BufferedStream:
    """A finished ``ChatResult`` as a stream: text, then tool calls, stop and usage."""

    def __init__(self, result: ChatResult) -> None:
        events: list[StreamEvent] = []
        if result.reasoning:
            events.append(ReasoningDelta(result.reasoning))
        if result.text:
            events.append(TextDelta(result.text))
        for index, call in enumerate(result.tool_calls):
            fn = call["function"]
            events.append(ToolCallDelta(index, fn["arguments"], call["id"], fn["name"]))
        events.append(StreamStop(result.finish_reason, result.guardrail_intervened, result.stop_sequence))
        events.append(StreamUsage(result.usage))
        self._events = iter(events)

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        self._events = iter(())
