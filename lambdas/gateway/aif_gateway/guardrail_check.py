"""Bedrock ``ApplyGuardrail`` for models that have no Bedrock guardrail of their own.

Converse applies the gateway's guardrail itself; SageMaker endpoints and external providers (OpenAI,
Anthropic, Mistral) do not, so their prompt (``INPUT``) and answer (``OUTPUT``) each go through
``ApplyGuardrail`` here and one content policy covers every provider. It fails closed: when the
guardrail cannot be asked, the call fails (retryable) rather than letting an unchecked answer out.
When the request asked for the contextual grounding check (chat ``retrieval`` with ``grounding_check``),
the answer is sent with its sources (``grounding_source``) and question (``query``), as Converse does.
"""

from __future__ import annotations

from typing import Any

from .provider_types import CallContext, ProviderError

BLOCKED_DEFAULT = "Blocked by the guardrail."


def guardrail_block(bedrock_runtime: Any, ctx: CallContext, source: str, text: str) -> str | None:
    """The guardrail's replacement text when it intervenes on ``text``, else None (also when the
    gateway has no guardrail or there is no text). ``bedrock_runtime`` is a ``bedrock-runtime`` client."""
    if ctx.guardrail is None or not text.strip():
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    content: list[dict[str, Any]] = [{"text": {"text": text}}]
    if source == "OUTPUT" and ctx.grounding is not None:
        content = [
            {"text": {"text": ctx.grounding.source, "qualifiers": ["grounding_source"]}},
            {"text": {"text": ctx.grounding.query, "qualifiers": ["query"]}},
            {"text": {"text": text, "qualifiers": ["guard_content"]}},
        ]
    try:
        answer = bedrock_runtime.apply_guardrail(
            guardrailIdentifier=ctx.guardrail.identifier,
            guardrailVersion=ctx.guardrail.version,
            source=source,
            content=content,
        )
    except (ClientError, BotoCoreError) as exc:
        # Fail closed: an unguarded answer must not leave the gateway.
        raise ProviderError(
            "GuardrailUnavailable", f"the guardrail could not check the {source.lower()}", retryable=True
        ) from exc
    if answer.get("action") != "GUARDRAIL_INTERVENED":
        return None
    return "".join(o.get("text", "") for o in answer.get("outputs", [])) or BLOCKED_DEFAULT
