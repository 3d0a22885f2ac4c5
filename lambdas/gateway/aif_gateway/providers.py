"""Model providers: Amazon Bedrock (Converse, InvokeModel for embeddings) and the offline ``echo`` model.

boto3 is imported lazily and clients are created on first use, so local mode works without AWS
credentials as long as only echo routes are called, and the handler's cold import stays small.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import TYPE_CHECKING, Any

from .aws_clients import LazyClients, make_client
from .bedrock_translate import from_converse, to_converse
from .config import ModelTarget
from .openai_schema import ChatRequest, EmbeddingsRequest
from .provider_types import CallContext, ChatResult, EmbeddingResult, Provider, ProviderError, TokenUsage
from .sagemaker_provider import SageMakerProvider

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

# Bedrock errors worth trying the next target for. ValidationException is the request's own fault and is
# returned to the caller; every other failure also moves on (another model may well serve it) but only
# these count as transient in the audit record.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelTimeoutException",
    }
)
CLIENT_FAULT_CODES = frozenset({"ValidationException"})


class BedrockProvider:
    def __init__(self, timeout_s: float = 60.0, client_factory: Any = None) -> None:
        # No SDK retries: the route's fallback chain is the retry, and retrying here would only stack
        # latency before the next target gets its turn.
        self._clients: LazyClients[str | None] = LazyClients(
            client_factory
            or (lambda region: make_client("bedrock-runtime", region, read_timeout=timeout_s, max_attempts=1))
        )

    def client(self, region: str | None) -> BedrockRuntimeClient:
        client: BedrockRuntimeClient = self._clients.get(region)
        return client

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        kwargs = to_converse(request, target.model_id, ctx.guardrail, _metadata(ctx))
        response = self._call(lambda: self.client(target.region).converse(**kwargs))
        return from_converse(response)

    def embed(self, target: ModelTarget, request: EmbeddingsRequest, ctx: CallContext) -> EmbeddingResult:
        if not target.model_id.startswith("amazon.titan-embed"):
            raise ProviderError(
                "UnsupportedModel",
                f"{target.name}: only Titan text embedding models are supported",
                retryable=False,
            )
        client = self.client(target.region)
        vectors, tokens = [], 0
        for text in request.inputs:
            body: dict[str, Any] = {"inputText": text, "normalize": True}
            if request.dimensions is not None:
                body["dimensions"] = request.dimensions
            response = self._call(
                lambda body=body: client.invoke_model(
                    modelId=target.model_id,
                    body=json.dumps(body),
                    contentType="application/json",
                    accept="application/json",
                )
            )
            payload = json.loads(response["body"].read())
            vectors.append(payload["embedding"])
            tokens += int(payload.get("inputTextTokenCount", 0))
        return EmbeddingResult(vectors=vectors, input_tokens=tokens)

    @staticmethod
    def _call(fn: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        try:
            return fn()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            message = exc.response.get("Error", {}).get("Message", "")
            raise ProviderError(
                code, message, retryable=code in RETRYABLE_CODES, client_fault=code in CLIENT_FAULT_CODES
            ) from exc
        except ReadTimeoutError as exc:
            raise ProviderError("Timeout", "the model did not answer in time", retryable=True) from exc
        except BotoCoreError as exc:
            # Connection errors, missing credentials, ...: this target cannot serve; try the next one.
            raise ProviderError(
                type(exc).__name__, "the model endpoint could not be reached", retryable=True
            ) from exc


def _metadata(ctx: CallContext) -> dict[str, str]:
    # Shows up in Bedrock's model invocation logs, tying each call to a team, feature and gateway request.
    return {"aif_team": ctx.team, "aif_feature": ctx.feature, "aif_request_id": ctx.request_id}


_WORD = re.compile(r"\S+")


def count_tokens(text: str) -> int:
    """The echo model's token count: whitespace-separated words, deterministic and cheap."""
    return len(_WORD.findall(text))


class EchoProvider:
    """Offline, deterministic model for local development and tests.

    Chat answers ``echo: <last user text>``, honours max_tokens (finish_reason ``length``) and stop
    sequences, calls the forced tool when tool_choice names one, and reports word counts as token usage.
    Embeddings are unit vectors derived from a hash of the text.
    """

    def chat(self, target: ModelTarget, request: ChatRequest, ctx: CallContext) -> ChatResult:
        all_text, last_user = [], ""
        for message in request.messages:
            content = message.get("content")
            texts = (
                [content]
                if isinstance(content, str)
                else [p["text"] for p in content or [] if p.get("type") == "text"]
            )
            all_text.extend(texts)
            if message["role"] == "user":
                last_user = " ".join(texts)
        usage_in = sum(count_tokens(t) for t in all_text)
        choice = request.tool_choice
        if isinstance(choice, dict) or (choice == "required" and request.tools):
            tools = request.tools or []
            name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
            call = {
                "id": f"call_{hashlib.sha256(last_user.encode()).hexdigest()[:12]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"text": last_user})},
            }
            return ChatResult("", "tool_calls", TokenUsage(input=usage_in, output=1), tool_calls=[call])

        reply = f"echo: {last_user}"
        finish = "stop"
        for stop in request.stop:
            cut = reply.find(stop)
            if cut >= 0:
                reply = reply[:cut]
        words = reply.split(" ")
        if request.max_tokens is not None and len(words) > request.max_tokens:
            reply, finish = " ".join(words[: request.max_tokens]), "length"
        if request.response_format and request.response_format["type"] != "text":
            reply = json.dumps({"echo": last_user})
        return ChatResult(reply, finish, TokenUsage(input=usage_in, output=count_tokens(reply)))

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


def default_providers(timeout_s: float = 60.0) -> dict[str, Provider]:
    from .offline_model import OfflineModel  # echo with canned answers and a JSON mode (imports this module)

    return {
        "bedrock": BedrockProvider(timeout_s),
        "echo": OfflineModel(),
        "sagemaker": SageMakerProvider(timeout_s),
    }
