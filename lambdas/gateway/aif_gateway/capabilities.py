"""What a model can do and accept, and how a chat request is fitted to one route target.

The catalog records each model's capabilities (``capabilities:`` on a model entry, checked by
``ModelCapabilities.from_catalog``); the router asks ``unfit_reason`` before calling a target, and the
provider receives ``adapt``'s copy of the request. Adaptations are only the lossless, documented ones
(docs/gateway.md, "Capabilities and parameter adaptation"): anything else makes the target unfit, so a
fallback never answers a request it would have to change the meaning of.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .openai_schema import ChatRequest

REASONING_STYLES = ("thinking",)  # Anthropic extended thinking (budget_tokens) through Converse


@dataclass(frozen=True)
class ModelCapabilities:
    """A catalog model's capabilities and limits. The defaults describe a model nothing is known about:
    text and tools, no prompt caching or reasoning, no known limits."""

    tools: bool = True
    vision: bool = True
    structured_output: bool = True  # Bedrock outputConfig json_schema
    prompt_caching: bool = False  # Converse cachePoint blocks
    count_tokens: bool = False  # Bedrock CountTokens answers for the model (/v1/messages/count_tokens)
    reasoning: str | None = None  # one of REASONING_STYLES
    max_output_tokens: int | None = None
    temperature_max: float | None = None  # e.g. 1.0 for Claude and Nova (OpenAI's range is 0-2)
    # Sampling parameters the model refuses together (Claude 4.5: temperature and top_p).
    exclusive_params: tuple[str, ...] = ()

    @classmethod
    def from_catalog(cls, raw: Any, max_output_tokens: int | None = None) -> ModelCapabilities:
        """The ``capabilities`` mapping of a catalog entry; ``ValueError`` names the bad field."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError("capabilities: must be a mapping")
        known = {f.name for f in fields(cls)} - {"max_output_tokens"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"capabilities.{unknown[0]}: unknown (known: {', '.join(sorted(known))})")
        for name in ("tools", "vision", "structured_output", "prompt_caching", "count_tokens"):
            if name in raw and not isinstance(raw[name], bool):
                raise ValueError(f"capabilities.{name}: must be true or false")
        reasoning = raw.get("reasoning")
        if reasoning is not None and reasoning not in REASONING_STYLES:
            raise ValueError(f"capabilities.reasoning: must be one of {', '.join(REASONING_STYLES)}")
        t_max = raw.get("temperature_max")
        if t_max is not None and (
            isinstance(t_max, bool) or not isinstance(t_max, int | float) or t_max <= 0
        ):
            raise ValueError("capabilities.temperature_max: must be a positive number")
        exclusive = raw.get("exclusive_params", [])
        if not isinstance(exclusive, list) or not set(exclusive) <= {"temperature", "top_p"}:
            raise ValueError("capabilities.exclusive_params: must be a list of temperature, top_p")
        return cls(
            **{k: v for k, v in raw.items() if k not in ("exclusive_params", "temperature_max")},
            temperature_max=float(t_max) if t_max is not None else None,
            exclusive_params=tuple(exclusive),
            max_output_tokens=max_output_tokens,
        )

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["exclusive_params"] = list(self.exclusive_params)
        return data


UNKNOWN = ModelCapabilities()


def needs(request: ChatRequest) -> dict[str, bool]:
    """What serving ``request`` takes, independent of the model."""
    tools = bool(request.tools)
    vision = False
    for message in request.messages:
        if message.get("tool_calls") or message["role"] == "tool":
            tools = True
        content = message.get("content")
        if isinstance(content, list) and any(p.get("type") == "image_url" for p in content):
            vision = True
    structured = bool(request.response_format and request.response_format["type"] == "json_schema")
    return {"tools": tools, "vision": vision, "structured_output": structured}


_LABELS = {"tools": "tool use", "vision": "image input", "structured_output": "json_schema output"}


def unfit_reason(request: ChatRequest, caps: ModelCapabilities) -> str | None:
    """Why a model with ``caps`` cannot serve ``request`` (None: it can, perhaps after ``adapt``)."""
    missing = [_LABELS[k] for k, needed in needs(request).items() if needed and not getattr(caps, k)]
    if missing:
        return "no " + ", ".join(missing)
    if caps.temperature_max is not None and (request.temperature or 0.0) > caps.temperature_max:
        return f"temperature above {caps.temperature_max:g}"
    if _conflict(request, caps) and _drop_conflicting(request) is None:
        return "takes temperature or top_p, not both"
    return None


def adapt(request: ChatRequest, caps: ModelCapabilities) -> ChatRequest:
    """The request as this model is sent it. Lossless adaptations only:

    - ``max_tokens`` above the model's maximum output is lowered to it (the model cannot write more);
    - of a conflicting temperature/top_p pair, the one at its neutral value (top_p 1, temperature 1)
      is dropped (``unfit_reason`` refuses the target otherwise);
    - ``reasoning_effort`` on a model without reasoning, and cache points on a model without prompt
      caching, are left out (both only change cost and latency, not what a valid answer is).
    """
    changes: dict[str, Any] = {}
    if caps.max_output_tokens is not None and (request.max_tokens or 0) > caps.max_output_tokens:
        changes["max_tokens"] = caps.max_output_tokens
    if _conflict(request, caps):
        dropped = _drop_conflicting(request)
        if dropped is not None:
            changes[dropped] = None
    if request.reasoning_effort is not None and caps.reasoning is None:
        changes["reasoning_effort"] = None
    return replace(request, **changes) if changes else request


def _conflict(request: ChatRequest, caps: ModelCapabilities) -> bool:
    return (
        {"temperature", "top_p"} <= set(caps.exclusive_params)
        and request.temperature is not None
        and request.top_p is not None
    )


def _drop_conflicting(request: ChatRequest) -> str | None:
    if request.top_p == 1.0:
        return "top_p"
    if request.temperature == 1.0:
        return "temperature"
    return None
