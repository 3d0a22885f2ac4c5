"""``POST /v1/messages/count_tokens``: how many input tokens a Messages request would be billed for.

The body is a Messages request without ``max_tokens`` (``anthropic_messages`` parses it, so the count
is of exactly what ``/v1/messages`` would send). The model that counts is the one that would answer:
the route's first target the key's clearance reaches and whose capabilities fit the request. It counts
when it can give the billed number:

- Bedrock models whose catalog entry has ``capabilities.count_tokens: true``: Bedrock ``CountTokens``
  on the Converse request (``BedrockProvider.count_input_tokens``);
- the offline ``echo`` models: their own deterministic count, the ``input_tokens`` their answer reports.

Any other model is a 400 ``count_tokens_not_supported`` that names it and says why; an estimate would be
a different number from the one billed.
"""

from __future__ import annotations

from typing import Any

from .anthropic_messages import parse_messages_request
from .capabilities import adapt, unfit_reason
from .config import ModelTarget, Route
from .errors import AllTargetsFailed, InvalidRequest
from .openai_schema import ChatRequest
from .provider_types import CallContext, Provider, ProviderError

# count_tokens takes no max_tokens; the Messages parser requires one, so the count uses the largest.
UNBOUNDED_MAX_TOKENS = 1_000_000
NOT_COUNTED = ("max_tokens", "stream", "stop_sequences", "temperature", "top_p")


def parse_count_tokens_request(data: dict[str, Any]) -> ChatRequest:
    """The Messages request whose input is counted (fields that shape only the output are dropped)."""
    body = {k: v for k, v in data.items() if k not in NOT_COUNTED}
    return parse_messages_request({**body, "max_tokens": UNBOUNDED_MAX_TOKENS})


def counting_target(route: Route, request: ChatRequest, not_cleared: Any) -> ModelTarget:
    """The target that would answer ``request``; a 400 when none of the route's targets fits it."""
    reasons = []
    for target in route.targets:
        reason = not_cleared(target) or unfit_reason(request, target.capabilities)
        if reason is None:
            return target
        reasons.append(f"{target.name}: {reason}")
    raise InvalidRequest(
        f"No model of '{route.alias}' can serve this request ({'; '.join(reasons)}).",
        param="model",
        code="unsupported_by_model",
    )


def count_input_tokens(
    provider: Provider, target: ModelTarget, request: ChatRequest, ctx: CallContext
) -> int:
    """The billed input tokens of ``request`` on ``target``; a 400 naming the model when it cannot count."""
    count = getattr(provider, "count_input_tokens", None)
    if count is None or not (target.provider == "echo" or target.capabilities.count_tokens):
        raise InvalidRequest(
            f"Model '{target.name}' ({target.provider}) cannot count tokens: its catalog entry does not "
            "list capabilities.count_tokens (Bedrock's CountTokens supports only some models). The usage "
            "of every /v1/messages answer gives the exact, billed count.",
            param="model",
            code="count_tokens_not_supported",
        )
    try:
        return int(count(target, adapt(request, target.capabilities), ctx))
    except ProviderError as exc:
        if exc.retryable:
            raise AllTargetsFailed(
                f"Model '{target.name}' could not count tokens right now ({exc.kind}). Retry after 5 s.",
                headers={"Retry-After": "5"},
            ) from None
        raise InvalidRequest(
            f"Model '{target.name}' refused to count tokens ({exc.kind}): {exc.message[:300]}",
            param="model",
            code="count_tokens_not_supported",
        ) from None
