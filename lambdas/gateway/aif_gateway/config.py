"""Runtime configuration: routes, targets and prices, generated from the model catalog at synth time.

The catalog (YAML, validated in ``ai_factory.catalog.model_catalog``) is the single source; this module only
reads the JSON view of it that is staged next to the Lambda code (``gateway_config.json``) or handed to the
local server, so the gateway never needs PyYAML or the CDK.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import contract
from .capabilities import UNKNOWN, ModelCapabilities

Modality = Literal["chat", "embedding"]
Provider = Literal["bedrock", "echo", "sagemaker", "openai", "anthropic", "mistral"]
# Data classifications, least to most sensitive: a key's clearance and a target's ceiling use them.
CLASSIFICATIONS = contract.CLEARANCE_LEVELS

CONFIG_FILE_NAME = "gateway_config.json"


@dataclass(frozen=True)
class Prices:
    """USD per one million tokens, one price per usage counter Bedrock reports."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0


@dataclass(frozen=True)
class ModelTarget:
    """One concrete model a route can send a request to."""

    name: str  # catalog entry name, e.g. "claude-haiku-4-5"
    provider: Provider
    model_id: str  # what Bedrock is called with (model or inference profile ID/ARN); SageMaker: endpoint
    modality: Modality
    prices: Prices = field(default_factory=Prices)
    region: str | None = None  # None: the gateway's own region
    # SageMaker targets only (model_id is then the endpoint name): "openai-chat" or "tgi", see
    # aif_gateway.sagemaker_provider.
    content_handler: str | None = None
    capabilities: ModelCapabilities = UNKNOWN  # the catalog's capabilities and limits of the model
    # External providers (openai, anthropic, mistral): the API's base URL and the Secrets Manager secret
    # (name or ARN) holding the account's API key; "azure" sends Azure OpenAI's api-key header.
    base_url: str | None = None
    secret: str | None = None
    api_flavor: str | None = None
    # The most sensitive data classification this target may receive (the catalog's max_classification).
    # A target built without a catalog entry has no ceiling.
    max_classification: str = "restricted"


# Defaults for a route that sets no timeouts: long enough for a long Sonnet answer, short enough that a
# stuck model is passed over quickly (docs/gateway.md, "Timeouts").
DEFAULT_FIRST_TOKEN_S = 60.0
DEFAULT_IDLE_S = 30.0
DEFAULT_TOTAL_MINUTES = 10.0
# Time kept after the model answered for the usage record (ledger write, spill fallback) when the
# deadline is derived from the function timeout (AIF_FUNCTION_TIMEOUT_S).
LEDGER_MARGIN_S = 5.0


@dataclass(frozen=True)
class RouteTimeouts:
    """The three limits of one model attempt on a route.

    ``first_token_s``: a target that has not produced its first event by then is passed over (fallback
    happens only before the first byte reached the client). ``idle_s``: the longest silence between two
    events of a started stream. ``total_minutes``: the whole generation, streamed or not.
    """

    first_token_s: float = DEFAULT_FIRST_TOKEN_S
    idle_s: float = DEFAULT_IDLE_S
    total_minutes: float = DEFAULT_TOTAL_MINUTES

    def __post_init__(self) -> None:
        for name in ("first_token_s", "idle_s", "total_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"'{name}' must be a number > 0, got {value!r}")
        if self.first_token_s > self.total_s:
            raise ValueError(
                f"'first_token_s' ({self.first_token_s}) must not exceed 'total_minutes' "
                f"({self.total_minutes} min = {self.total_s} s)"
            )
        if self.idle_s > self.total_s:
            raise ValueError(
                f"'idle_s' ({self.idle_s}) must not exceed 'total_minutes' "
                f"({self.total_minutes} min = {self.total_s} s)"
            )

    @property
    def total_s(self) -> float:
        return float(self.total_minutes) * 60.0


@dataclass(frozen=True)
class Route:
    """A model alias product teams ask for, and the ordered chain of targets that may serve it."""

    alias: str
    modality: Modality
    targets: tuple[ModelTarget, ...]
    timeouts: RouteTimeouts = field(default_factory=RouteTimeouts)
    prompt_cache: bool = False  # catalog "prompt_cache: auto": cache points after system and tools
    guard_scope: str | None = None  # overrides the gateway guardrail's scope for this route


@dataclass(frozen=True)
class GuardrailPrices:
    """USD per 1,000 guardrail text units, per policy (the catalog's ``guardrail_prices``)."""

    content: float = 0.15
    topic: float = 0.15
    word: float = 0.0
    sensitive_information: float = 0.10
    contextual_grounding: float = 0.10
    automated_reasoning: float = 0.17


GUARD_SCOPES = ("latest", "all")


@dataclass(frozen=True)
class GuardrailRef:
    """The guardrail every Converse call names. ``scope``: what it evaluates (and bills text units
    for): ``latest`` (default) the newest user turn and the tool results it carries, marked as
    ``guardContent``; ``all`` the whole conversation and system prompt on every call."""

    identifier: str
    version: str
    scope: str = "latest"

    def __post_init__(self) -> None:
        if self.scope not in GUARD_SCOPES:
            raise ValueError(f"guardrail scope must be one of {', '.join(GUARD_SCOPES)}, got {self.scope!r}")


@dataclass(frozen=True)
class GatewayConfig:
    routes: dict[str, Route]
    guardrail: GuardrailRef | None = None
    max_body_bytes: int = 1_000_000
    # Key records and usage snapshots are cached per execution environment so that the hot path makes
    # at most one synchronous AWS call (the ledger write) besides the model call. A revoked key stops
    # working within key_cache_ttl_s.
    key_cache_ttl_s: float = 30.0
    usage_snapshot_ttl_s: float = 5.0
    # Circuit breaker per target: open after this many consecutive retryable failures, probe again after
    # the cool-down.
    breaker_failure_threshold: int = 3
    breaker_cooldown_s: float = 30.0
    # Read timeout of one embedding call (chat calls use their route's RouteTimeouts).
    model_timeout_s: float = 60.0
    # Time budget for the whole request, from its start: a target is only tried while its first-token
    # timeout still fits, and a generation is cut at the deadline, so the usage record is written before
    # the Lambda times out. None: no deadline (local mode). In AWS it derives from the function timeout
    # (``with_deadline_from_env``).
    request_deadline_s: float | None = None
    guardrail_prices: GuardrailPrices = field(default_factory=GuardrailPrices)
    # Client model names (claude-sonnet-4-5, gpt-5, ...) -> route alias: the catalog's model_aliases, so
    # a coding assistant configured with a vendor's model name reaches an approved route.
    model_aliases: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatewayConfig:
        routes = {}
        for alias, raw in data["routes"].items():
            targets = tuple(
                ModelTarget(
                    **{
                        **t,
                        "prices": Prices(**t.get("prices", {})),
                        "capabilities": _capabilities(t.get("capabilities")),
                    }
                )
                for t in raw["targets"]
            )
            try:
                timeouts = RouteTimeouts(**raw.get("timeouts") or {})
            except (TypeError, ValueError) as exc:
                raise ValueError(f"gateway config: route '{alias}': timeouts: {exc}") from None
            routes[alias] = Route(
                alias=raw["alias"],
                modality=raw["modality"],
                targets=targets,
                timeouts=timeouts,
                prompt_cache=bool(raw.get("prompt_cache", False)),
                guard_scope=raw.get("guard_scope"),
            )
            if routes[alias].guard_scope not in (None, *GUARD_SCOPES):
                raise ValueError(
                    f"gateway config: route '{alias}': guard_scope must be one of {', '.join(GUARD_SCOPES)}"
                )
        guardrail = GuardrailRef(**data["guardrail"]) if data.get("guardrail") else None
        scalars = {k: v for k, v in data.items() if k not in ("routes", "guardrail", "guardrail_prices")}
        prices = GuardrailPrices(**data.get("guardrail_prices") or {})
        return cls(routes=routes, guardrail=guardrail, guardrail_prices=prices, **scalars)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GatewayConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def with_deadline_from_env(self) -> GatewayConfig:
        """The request deadline from the one setting the construct derives everything from: the
        function timeout (``AIF_FUNCTION_TIMEOUT_S``) minus ``LEDGER_MARGIN_S`` for the usage record."""
        raw = os.environ.get(contract.FUNCTION_TIMEOUT_ENV)
        if not raw:
            return self
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(
                f"{contract.FUNCTION_TIMEOUT_ENV} must be a number of seconds, got {raw!r}"
            ) from None
        if seconds <= LEDGER_MARGIN_S:
            raise ValueError(
                f"{contract.FUNCTION_TIMEOUT_ENV} ({seconds:g} s) must exceed the ledger margin "
                f"({LEDGER_MARGIN_S:g} s)"
            )
        return GatewayConfig(**{**self.__dict__, "request_deadline_s": seconds - LEDGER_MARGIN_S})

    def with_guardrail_from_env(self) -> GatewayConfig:
        """The guardrail ID and version are deploy-time values (CloudFormation), so they come by env."""
        ident = os.environ.get(contract.GUARDRAIL_ID_ENV)
        version = os.environ.get(contract.GUARDRAIL_VERSION_ENV)
        if not ident or not version:
            return self
        scope = os.environ.get(contract.GUARDRAIL_SCOPE_ENV) or "latest"
        return GatewayConfig(**{**self.__dict__, "guardrail": GuardrailRef(ident, version, scope)})


def _capabilities(raw: dict[str, Any] | None) -> ModelCapabilities:
    if not raw:
        return UNKNOWN
    return ModelCapabilities(**{**raw, "exclusive_params": tuple(raw.get("exclusive_params", ()))})
