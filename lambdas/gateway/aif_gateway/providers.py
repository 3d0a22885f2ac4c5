"""Model providers: Amazon Bedrock (Converse, ConverseStream, InvokeModel for embeddings) and the offline
``echo`` model; ``provider_registry.default_providers`` adds SageMaker endpoints and the external APIs
(OpenAI and compatible servers, Anthropic, Mistral: ``external_provider``).

boto3 is imported lazily and clients are created on first use, so local mode works without AWS
credentials as long as only echo routes are called, and the handler's cold import stays small.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import contract
from .aws_clients import LazyClients, make_client
from .bedrock_embed import TitanEmbedder
from .bedrock_errors import CLIENT_FAULT_CODES, RETRYABLE_CODES, to_provider_error
from .bedrock_stream import ConverseStreamReader
from .bedrock_translate import from_converse, to_converse
from .config import ModelTarget, RouteTimeouts
from .echo_agent import scripted_turn
from .openai_schema import ChatRequest, EmbeddingsRequest
from .provider_types import (
    CallContext,
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

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

__all__ = ["CLIENT_FAULT_CODES", "RETRYABLE_CODES", "BedrockProvider", "EchoProvider"]


class BedrockProvider:
    """Bedrock Converse, ConverseStream, CountTokens and Titan embeddings.

    :param gateway_namespace: this gateway's identity in the requestMetadata of every call
        (``LlmGateway.edge_namespace``). Default: ``AIF_EDGE_NAMESPACE`` from the environment (set on the
        deployed gateway function); unset or empty (``ai-factory serve``), calls carry none.
    :raises ValueError: the namespace is not a value Bedrock accepts as requestMetadata.
    """

    def __init__(
        self, timeout_s: float = 60.0, client_factory: Any = None, gateway_namespace: str | None = None
    ) -> None:
        if gateway_namespace is None:
            gateway_namespace = os.environ.get(contract.EDGE_NAMESPACE_ENV) or None
        # Checked here, once: Bedrock would refuse every call with a ValidationException.
        if gateway_namespace is not None and not contract.REQUEST_METADATA_RE.fullmatch(gateway_namespace):
            raise ValueError(
                f"{contract.EDGE_NAMESPACE_ENV}: {gateway_namespace!r} is not a Bedrock requestMetadata "
                "value (at most 256 of letters, digits, whitespace and :_@$#=/+,-.); expected the gateway's "
                "edge_namespace"
            )
        self.gateway_namespace = gateway_namespace
        # No SDK retries: the route's fallback chain is the retry, and retrying here would only stack
        # latency before the next target gets its turn. One client per (region, read timeout): a chat
        # call reads with its route's total generation time, a stream with its first-token timeout,
        # an embedding call with ``timeout_s``.
        self._timeout_s = timeout_s
        create = (
            (lambda key: client_factory(key[0]))
            if client_factory is not None
            else (lambda key: make_client("bedrock-runtime", key[0], read_timeout=key[1], max_attempts=1))
        )
        self._clients: LazyClients[tuple[str | None, float]] = LazyClients(create)
        self.embedder = TitanEmbedder(timeout_s)  # a batch's calls run concurrently

    def client(self, region: str | None, read_timeout: float | None = None) -> BedrockRuntimeClient:
        client: BedrockRuntimeClient = self._clients.get((region, read_timeout or self._timeout_s))
        return client

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        kwargs = to_converse(
            request, invoke_id(target, ctx), ctx.guardrail, self._metadata(ctx), target.capabilities
        )
        # Converse answers in one piece: the read timeout is the whole generation's limit.
        client = self.client(target.region, ctx.timeouts.total_s if ctx.timeouts else None)
        response = self._call(lambda: client.converse(**kwargs))
        return from_converse(response, request.stop)

    def chat_stream(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatStream:
        """ConverseStream, started: returns once Bedrock accepted the call (HTTP 200); the events, and
        any error the model raises later, arrive while iterating. Reads wait at most the route's
        first-token timeout until the first event, then its idle timeout."""
        timeouts = ctx.timeouts or RouteTimeouts()
        kwargs = to_converse(
            request, invoke_id(target, ctx), ctx.guardrail, self._metadata(ctx), target.capabilities
        )
        client = self.client(target.region, timeouts.first_token_s)
        response = self._call(lambda: client.converse_stream(**kwargs))
        return ConverseStreamReader(response["stream"], idle_s=timeouts.idle_s, stop=request.stop)

    def count_input_tokens(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> int:
        """Bedrock ``CountTokens`` for the Converse request ``chat`` would send: the number the model
        would bill. It takes a foundation-model ID, so a cross-region profile's prefix is dropped."""
        kwargs = to_converse(request, target.model_id, None, {}, target.capabilities)
        converse: Any = {k: kwargs[k] for k in COUNTED_FIELDS if k in kwargs}
        client = self.client(target.region)
        model_id = foundation_model_id(target.model_id)
        response = self._call(lambda: client.count_tokens(modelId=model_id, input={"converse": converse}))
        return int(response["inputTokens"])

    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult:
        if not target.model_id.startswith("amazon.titan-embed"):
            raise ProviderError(
                "UnsupportedModel",
                f"{target.name}: only Titan text embedding models are supported",
                retryable=False,
            )
        # Titan is checked on the catalog's ID above; the call goes through the feature's profile.
        through = replace(target, model_id=invoke_id(target, ctx))
        return self.embedder.embed(self.client(target.region), through, request, self._call)

    def _metadata(self, ctx: CallContext) -> dict[str, str]:
        """Shows up in Bedrock's model invocation logs, tying each call to a team, feature, gateway request
        and gateway (the online sampler keeps only its features' own gateway's records)."""
        metadata = {
            contract.REQUEST_METADATA_TEAM: ctx.team,
            contract.REQUEST_METADATA_FEATURE: ctx.feature,
            contract.REQUEST_METADATA_REQUEST_ID: ctx.request_id,
        }
        if self.gateway_namespace:
            metadata[contract.REQUEST_METADATA_GATEWAY] = self.gateway_namespace
        return metadata

    @staticmethod
    def _call(fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            error = to_provider_error(exc)
            if error is None:
                raise
            raise error from exc


# What CountTokens takes of a Converse request (its ``input.converse`` member).
COUNTED_FIELDS = ("messages", "system", "toolConfig", "additionalModelRequestFields")
# System-defined cross-region inference profile IDs start with their geography.
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "jp", "au", "ca", "us-gov")


def foundation_model_id(model_id: str) -> str:
    """``us.anthropic.claude-…`` -> ``anthropic.claude-…``; a foundation-model ID or ARN unchanged."""
    prefix, _, rest = model_id.partition(".")
    return rest if rest and prefix in PROFILE_PREFIXES else model_id


def invoke_id(target: ModelTarget, ctx: CallContext) -> str:
    """What Bedrock is called with: the feature's application inference profile for the target's model
    when its key has one (the bill then carries the feature's cost-allocation tags), else the catalog's
    model or system inference profile ID. A target pinned to another region keeps the catalog ID: a
    profile is invocable only in the region it was created in, the gateway's own."""
    if target.region is None:
        return ctx.inference_profiles.get(target.model_id, target.model_id)
    return target.model_id


_WORD = re.compile(r"\S+")


def count_tokens(text: str) -> int:
    """The echo model's token count: whitespace-separated words, deterministic and cheap."""
    return len(_WORD.findall(text))


class EchoProvider:
    """Offline, deterministic model for local development and tests.

    Chat answers ``echo: <last user text>``, honours max_tokens (finish_reason ``length``) and stop
    sequences, calls tools by the rules of ``echo_agent`` (a forced tool, or offered tools the user names)
    and answers tool results, and reports word counts as token usage.
    Embeddings are unit vectors derived from a hash of the text.

    Streamed (``chat_stream``), it is a paced model: one word every ``token_ms`` milliseconds (default:
    ``AIF_ECHO_TOKEN_MS``, else 0), its first one after one interval, so time to first token is
    measurable locally. A forced tool call streams as its id and name, then its arguments in pieces.
    """

    token_s: float = 0.0  # unpaced unless set (subclasses that skip __init__ stream unpaced)

    def __init__(self, token_ms: float | None = None) -> None:
        if token_ms is None:
            token_ms = float(os.environ.get(contract.ECHO_TOKEN_MS_ENV) or 0)
        if token_ms < 0:
            raise ValueError(f"token_ms must be >= 0, got {token_ms!r}")
        self.token_s = token_ms / 1000.0

    def chat_stream(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatStream:
        return _PacedStream(self.chat(target, request, ctx), self.token_s)

    def count_input_tokens(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> int:
        """The input tokens ``chat`` would report for ``request``: the words of every message."""
        return sum(count_tokens(" ".join(_texts(m))) for m in request.messages)

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        last_user = ""
        for message in request.messages:
            if message["role"] == "user":
                last_user = " ".join(_texts(message))
        usage_in = self.count_input_tokens(target, request, ctx)
        scripted = scripted_turn(request, usage_in, last_user)  # tool calls and tool results (echo_agent)
        if scripted is not None:
            return scripted

        reply = f"echo: {last_user}"
        finish = "stop"
        matched = None
        for stop in request.stop:
            cut = reply.find(stop)
            if cut >= 0:
                reply, matched = reply[:cut], stop
        words = reply.split(" ")
        if request.max_tokens is not None and len(words) > request.max_tokens:
            reply, finish = " ".join(words[: request.max_tokens]), "length"
        if request.response_format and request.response_format["type"] != "text":
            reply = json.dumps({"echo": last_user})
        usage = TokenUsage(input=usage_in, output=count_tokens(reply))
        return ChatResult(reply, finish, usage, stop_sequence=matched if finish == "stop" else None)

    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult:
        dims = request.dimensions or 16
        vectors = []
        for text in request.inputs:
            digest = b""
            counter = 0
            while len(digest) < dims:
                digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
                counter += 1
            raw = [(b - 127.5) / 127.5 for b in digest[:dims]]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        return EmbeddingResult(vectors, sum(count_tokens(t) for t in request.inputs))


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [p["text"] for p in content or [] if p.get("type") == "text"]


class _PacedStream:
    """A finished echo answer, released one token per interval."""

    def __init__(self, result: ChatResult, interval_s: float) -> None:
        self._interval_s = interval_s
        self._events = iter(self._plan(result))

    @staticmethod
    def _plan(result: ChatResult) -> list[StreamEvent]:
        events: list[StreamEvent] = [TextDelta(piece) for piece in re.findall(r"\S+\s*|\s+", result.text)]
        for index, call in enumerate(result.tool_calls):
            fn = call["function"]
            events.append(ToolCallDelta(index, "", call["id"], fn["name"]))
            args = fn["arguments"]
            step = max(1, -(-len(args) // 3))  # three pieces, as models send partial JSON
            events.extend(ToolCallDelta(index, args[i : i + step]) for i in range(0, len(args), step))
        stop = StreamStop(result.finish_reason, stop_sequence=result.stop_sequence)
        return [*events, stop, StreamUsage(result.usage)]

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        event = next(self._events)
        if self._interval_s and isinstance(event, TextDelta | ToolCallDelta):
            time.sleep(self._interval_s)
        return event

    def close(self) -> None:
        self._events = iter(())
