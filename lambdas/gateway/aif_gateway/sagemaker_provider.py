"""Custom models hosted on Amazon SageMaker real-time endpoints (``sagemaker-runtime`` InvokeEndpoint).

A catalog entry with ``provider: sagemaker`` names an endpoint and a *content handler*: how the
gateway's chat request becomes the endpoint's request body and how its answer becomes a ``ChatResult``.

- ``openai-chat``: the container speaks OpenAI's chat-completions JSON (vLLM, LMI, SGLang and
  ``ai_factory.training`` models all can): ``{"messages", "max_tokens", ...}`` in,
  ``{"choices": [{"message": {"content"}, "finish_reason"}], "usage": {...}}`` out.
- ``tgi``: Hugging Face Text Generation Inference: ``{"inputs", "parameters"}`` in,
  ``[{"generated_text", "details": {...}}]`` out. The chat is flattened into a plain transcript.

Usage the endpoint does not report is estimated by counting words (like the echo model), so metering
and budgets always have a number; the audit record cannot tell the two apart, the catalog docs say so.

The gateway's Bedrock guardrail applies here too: SageMaker has no guardrail of its own, so the prompt
and the answer each go through Bedrock ``ApplyGuardrail`` when the gateway has a guardrail; an
intervention answers with the guardrail's message and ``finish_reason`` ``content_filter``, as Converse does.

Errors map like Bedrock's: throttling, 503, model-not-ready, internal and model (424) errors let the
route fall back to its next target; ``ValidationError`` is the request's own fault (a 400).

Streamed requests (``chat_stream``) use ``InvokeEndpointWithResponseStream`` where that can work:
``openai-chat`` endpoints, no guardrail (``sagemaker_stream``); otherwise they are buffered.
"""

from __future__ import annotations

import json
from typing import Any

from .aws_clients import LazyClients, make_client
from .config import ModelTarget
from .guardrail_check import guardrail_block
from .openai_schema import ChatRequest, EmbeddingsRequest
from .provider_types import (
    BufferedStream,
    CallContext,
    ChatResult,
    ChatStream,
    EmbeddingResult,
    ProviderError,
    TokenUsage,
)
from .sagemaker_stream import SageMakerSseStream

CONTENT_HANDLERS = ("openai-chat", "tgi")

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailable",
        "ModelNotReadyException",
        "InternalFailure",
        "InternalDependencyException",
        # The container answered with an error (HTTP 424): often an overloaded or crashed worker;
        # another target may well serve the request.
        "ModelError",
    }
)
CLIENT_FAULT_CODES = frozenset({"ValidationError"})

# TGI's finish reasons in OpenAI's vocabulary.
_TGI_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


class SageMakerProvider:
    """Calls SageMaker endpoints for chat; embeddings are not supported (a non-retryable error).

    :param timeout_s: read timeout of one InvokeEndpoint call (SageMaker itself stops at 60 s).
    :param client_factory: ``(service, region) -> client`` for ``sagemaker-runtime`` and
        ``bedrock-runtime`` (tests); default: boto3.
    """

    def __init__(self, timeout_s: float = 60.0, client_factory: Any = None) -> None:
        # No SDK retries: the route's fallback chain is the retry (as for Bedrock).
        self._clients: LazyClients[tuple[str, str | None]] = LazyClients(
            (lambda key: client_factory(*key))
            if client_factory is not None
            else (lambda key: make_client(key[0], key[1], read_timeout=timeout_s, max_attempts=1))
        )

    def client(self, region: str | None, service: str = "sagemaker-runtime") -> Any:
        return self._clients.get((service, region))

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        handler = target.content_handler or "openai-chat"
        if handler not in CONTENT_HANDLERS:
            raise ProviderError(
                "UnsupportedContentHandler",
                f"{target.name}: unknown content handler {handler!r}",
                retryable=False,
            )
        if request.tools or isinstance(request.tool_choice, dict):
            raise ProviderError(
                "UnsupportedFeature",
                f"{target.name}: tool calling is not supported for SageMaker endpoints",
                retryable=False,
                client_fault=True,
            )
        blocked = self._guard(target, ctx, "INPUT", "\n".join(_text_of(m) for m in request.messages))
        if blocked is not None:
            return ChatResult(blocked, "content_filter", TokenUsage(), guardrail_intervened=True)
        body = _openai_body(request) if handler == "openai-chat" else _tgi_body(request)
        response = self._invoke(target, body, ctx)
        try:
            payload = json.loads(response["Body"].read())
            result = (
                _from_openai(payload, request) if handler == "openai-chat" else _from_tgi(payload, request)
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ProviderError(
                "InvalidModelResponse",
                f"{target.name}: the endpoint's answer does not match content handler {handler!r}",
                retryable=True,
            ) from exc
        blocked = self._guard(target, ctx, "OUTPUT", result.text)
        if blocked is not None:
            # The model was called: its tokens are still metered.
            return ChatResult(blocked, "content_filter", result.usage, guardrail_intervened=True)
        return result

    def _guard(self, target: ModelTarget, ctx: CallContext, source: str, text: str) -> str | None:
        """The guardrail's replacement text when it intervenes on ``text``, else None."""
        if ctx.guardrail is None:
            return None
        return guardrail_block(self.client(target.region, "bedrock-runtime"), ctx, source, text)

    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult:
        raise ProviderError(
            "UnsupportedModel", f"{target.name}: SageMaker endpoints serve chat routes only", retryable=False
        )

    def chat_stream(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatStream:
        """``InvokeEndpointWithResponseStream`` for ``openai-chat`` endpoints when no guardrail applies.

        Buffered (the finished ``chat`` answer as one burst of events) when the gateway has a guardrail
        (``ApplyGuardrail`` must see the whole answer before any of it leaves), for ``tgi`` endpoints,
        and for an endpoint that refuses to stream (a ``ValidationError`` before the first byte).
        """
        handler = target.content_handler or "openai-chat"
        if ctx.guardrail is not None or handler != "openai-chat" or request.tools:
            return BufferedStream(self.chat(target, request, ctx))
        body = {**_openai_body(request), "stream": True, "stream_options": {"include_usage": True}}
        try:
            response = self._call(
                lambda: self.client(target.region, "sagemaker-runtime").invoke_endpoint_with_response_stream(
                    EndpointName=target.model_id,
                    Body=json.dumps(body).encode(),
                    ContentType="application/json",
                    Accept="text/event-stream",
                    InferenceId=ctx.request_id[:64],
                )
            )
        except ProviderError as exc:
            if not exc.client_fault:
                raise
            return BufferedStream(self.chat(target, request, ctx))  # the container cannot stream
        return SageMakerSseStream(response["Body"], _estimated_input(request))

    def _invoke(self, target: ModelTarget, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return self._call(
            lambda: self.client(target.region, "sagemaker-runtime").invoke_endpoint(
                EndpointName=target.model_id,
                Body=json.dumps(body).encode(),
                ContentType="application/json",
                Accept="application/json",
                # Shows up in the endpoint's data capture, tying the call to the gateway request.
                InferenceId=ctx.request_id[:64],
            )
        )

    @staticmethod
    def _call(fn: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        try:
            result: dict[str, Any] = fn()
            return result
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "ClientError")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            retryable = code in RETRYABLE_CODES or status in (429, 500, 502, 503, 504)
            raise ProviderError(
                code,
                error.get("Message", ""),
                retryable=retryable,
                client_fault=code in CLIENT_FAULT_CODES,
            ) from exc
        except ReadTimeoutError as exc:
            raise ProviderError("Timeout", "the endpoint did not answer in time", retryable=True) from exc
        except BotoCoreError as exc:
            raise ProviderError(
                type(exc).__name__, "the endpoint could not be reached", retryable=True
            ) from exc


def _count_words(text: str) -> int:
    return len(text.split())


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _openai_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": m["role"], "content": _text_of(m)} for m in request.messages],
    }
    for name in ("temperature", "top_p", "max_tokens"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop"] = list(request.stop)
    if request.response_format and request.response_format.get("type") != "text":
        body["response_format"] = request.response_format
    return body


def _transcript(request: ChatRequest) -> str:
    lines = [f"{m['role'].capitalize()}: {_text_of(m)}" for m in request.messages]
    return "\n".join([*lines, "Assistant:"])


def _tgi_body(request: ChatRequest) -> dict[str, Any]:
    parameters: dict[str, Any] = {"details": True, "return_full_text": False}
    if request.max_tokens is not None:
        parameters["max_new_tokens"] = request.max_tokens
    # TGI rejects temperature 0 (it wants > 0); greedy decoding is its default without sampling.
    if request.temperature:
        parameters.update(temperature=request.temperature, do_sample=True)
    if request.top_p is not None and 0 < request.top_p < 1:
        parameters["top_p"] = request.top_p
    if request.stop:
        parameters["stop"] = list(request.stop)
    return {"inputs": _transcript(request), "parameters": parameters}


def _estimated_input(request: ChatRequest) -> int:
    return sum(_count_words(_text_of(m)) for m in request.messages)


def _from_openai(payload: dict[str, Any], request: ChatRequest) -> ChatResult:
    choice = payload["choices"][0]
    text = choice["message"].get("content") or ""
    if not isinstance(text, str):
        raise TypeError("content is not a string")
    usage = payload.get("usage") or {}
    tokens = TokenUsage(
        input=int(usage.get("prompt_tokens", _estimated_input(request))),
        output=int(usage.get("completion_tokens", _count_words(text))),
    )
    finish = choice.get("finish_reason") or "stop"
    return ChatResult(text, finish if finish in ("stop", "length", "content_filter") else "stop", tokens)


def _from_tgi(payload: Any, request: ChatRequest) -> ChatResult:
    item = payload[0] if isinstance(payload, list) else payload
    text = item["generated_text"]
    if not isinstance(text, str):
        raise TypeError("generated_text is not a string")
    details = item.get("details") or {}
    prefill = details.get("prefill")
    tokens = TokenUsage(
        input=len(prefill) if prefill else _estimated_input(request),
        output=int(details.get("generated_tokens", _count_words(text))),
    )
    return ChatResult(text, _TGI_FINISH.get(details.get("finish_reason", ""), "stop"), tokens)
