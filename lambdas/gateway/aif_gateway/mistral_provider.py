"""Mistral's API (La Plateforme): chat completions, streaming, tools and embeddings (``mistral-embed``).

Mistral's chat API is close to OpenAI's, so this provider is ``OpenAiProvider`` with Mistral's
differences: base URL ``https://api.mistral.ai/v1``, ``max_tokens``, ``tool_choice`` ``"any"`` for
OpenAI's ``"required"``, no ``stream_options`` (Mistral sends usage in the last chunk anyway), no
``reasoning_effort``, no ``dimensions`` on embeddings, and tool call IDs of exactly nine letters or
digits: IDs another provider made (``call_...``, ``toolu_...``) are mapped to such IDs, the same way in
the assistant's calls and in the tool results, so a conversation can move to Mistral in a fallback.
Validation errors are HTTP 422 (the request's own fault, like OpenAI's 400).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .config import ModelTarget
from .openai_provider import OpenAiProvider
from .openai_schema import ChatRequest, EmbeddingsRequest
from .provider_secrets import ProviderCredentials
from .provider_types import EmbeddingResult, ProviderError

_MISTRAL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def mistral_tool_id(tool_call_id: str) -> str:
    """A Mistral-valid tool call ID for any ID: kept when valid, else nine characters from its hash."""
    if _MISTRAL_ID.match(tool_call_id):
        return tool_call_id
    digest = hashlib.sha256(tool_call_id.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:9])


class MistralProvider(OpenAiProvider):
    label = "Mistral"
    default_base_url = "https://api.mistral.ai/v1"
    stream_options = False
    reasoning_effort = False

    def max_tokens_key(self, target: ModelTarget) -> str:
        return "max_tokens"

    def headers(self, target: ModelTarget, creds: ProviderCredentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {creds.api_key}"}

    def tool_choice(self, choice: str | dict[str, Any]) -> str | dict[str, Any]:
        return "any" if choice == "required" else choice

    def messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        messages = super().messages(request)
        for message in messages:
            if message.get("tool_calls"):
                message["tool_calls"] = [
                    {**call, "id": mistral_tool_id(str(call.get("id", "")))} for call in message["tool_calls"]
                ]
            if message.get("tool_call_id"):
                message["tool_call_id"] = mistral_tool_id(str(message["tool_call_id"]))
        return messages

    def _embed(
        self, target: ModelTarget, request: EmbeddingsRequest, creds: ProviderCredentials, timeout_s: float
    ) -> EmbeddingResult:
        if request.dimensions is not None:
            raise ProviderError(
                "ValidationException",
                f"{target.name}: Mistral embeddings have a fixed size; omit 'dimensions'",
                retryable=False,
                client_fault=True,
            )
        return super()._embed(target, request, creds, timeout_s)
