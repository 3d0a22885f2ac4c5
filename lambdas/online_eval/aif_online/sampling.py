"""Which exchanges are sampled, and what a sample holds.

The sampler is fed by Bedrock model invocation logs (a CloudWatch Logs subscription), never by the
gateway's request path: Bedrock writes those logs itself after answering, so sampling costs the request
nothing. Answers of other targets (external providers, SageMaker endpoints) are not in those logs; the
gateway sends those exchanges itself, after the response, to its sample queue
(``aif_gateway.online_samples``), as messages with ``Exchange``'s fields (``exchange_from_message``).

The gateway sends ``requestMetadata`` with every Converse call (as ``aif_request_id``, ``aif_team``,
``aif_feature`` and ``aif_gateway``, its ``LlmGateway.edge_namespace``), which is how a log record is
attributed to a feature. The log group is one per account and region, shared by every gateway there (a
pipeline's staging and production, two factories), whose features may have the same names: a feature's
settings name its gateway, and only records of that gateway are its traffic (``belongs_to``).

The decision is a deterministic function of the request id (``contract.is_sampled``, shared with the gateway):
replaying the same logs samples the same requests, and a request is sampled whole or not at all
whichever records mention it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aif_gateway import contract as c
from aif_gateway.contract import is_sampled

__all__ = [
    "Exchange",
    "SamplingSettings",
    "belongs_to",
    "exchange_from_log",
    "exchange_from_message",
    "is_sampled",
    "sample_item",
]

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SamplingSettings:
    """One feature's sampling: the share of requests kept, how long, where, and the gateway whose
    traffic it is (``LlmGateway.edge_namespace``; another gateway's feature of the same name is not
    this feature)."""

    rate: float
    retention_days: int
    table: str
    gateway: str

    def __post_init__(self) -> None:
        if not self.gateway:
            raise ValueError("gateway is required: without it any gateway's traffic would be sampled")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be in 0..1, got {self.rate!r}")
        if self.retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {self.retention_days!r}")


@dataclass(frozen=True)
class Exchange:
    """One sampled request and answer, as the scorer and the drift job read them."""

    request_id: str
    team: str
    feature: str
    model: str
    timestamp: str
    input: str
    output: str
    stop_reason: str = ""
    tool_calls: int = 0
    guardrail_intervened: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    gateway: str = ""
    """The gateway that made the call (its ``edge_namespace``); empty when the record names none."""
    extra: dict[str, Any] = field(default_factory=dict)


def _tool_uses(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for block in content if isinstance(block, dict) and "toolUse" in block)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def exchange_from_log(record: Mapping[str, Any]) -> Exchange | None:
    """The exchange in one Bedrock invocation-log record (Converse / ConverseStream), or ``None`` when
    the record carries no gateway attribution (another application's call) or no text."""
    metadata = record.get("requestMetadata")
    if not isinstance(metadata, Mapping):
        return None
    team, feature = metadata.get(c.REQUEST_METADATA_TEAM), metadata.get(c.REQUEST_METADATA_FEATURE)
    request_id = metadata.get(c.REQUEST_METADATA_REQUEST_ID) or record.get("requestId")
    gateway = metadata.get(c.REQUEST_METADATA_GATEWAY)
    if not (isinstance(team, str) and isinstance(feature, str) and isinstance(request_id, str)):
        return None
    body_in = (record.get("input") or {}).get("inputBodyJson") or {}
    body_out = (record.get("output") or {}).get("outputBodyJson") or {}
    answer_content = ((body_out.get("output") or {}).get("message") or {}).get("content")
    stop_reason = str(body_out.get("stopReason") or "")
    # Converse's own usage and latency; the log's token counts when the body has none.
    usage, metrics = body_out.get("usage"), body_out.get("metrics")
    usage = usage if isinstance(usage, Mapping) else {}
    metrics = metrics if isinstance(metrics, Mapping) else {}
    return Exchange(
        request_id=request_id,
        team=team,
        feature=feature,
        model=str(record.get("modelId") or ""),
        timestamp=str(record.get("timestamp") or ""),
        input=c.last_user_text(body_in.get("messages")),
        output="\n".join(c.content_texts(answer_content)),
        stop_reason=stop_reason,
        tool_calls=_tool_uses(answer_content),
        guardrail_intervened=stop_reason == "guardrail_intervened",
        input_tokens=_count(usage.get("inputTokens"))
        or _count((record.get("input") or {}).get("inputTokenCount")),
        output_tokens=_count(usage.get("outputTokens"))
        or _count((record.get("output") or {}).get("outputTokenCount")),
        latency_ms=_count(metrics.get("latencyMs")),
        gateway=gateway if isinstance(gateway, str) else "",
    )


_TEXT_FIELDS = (
    "request_id",
    "team",
    "feature",
    "model",
    "timestamp",
    "input",
    "output",
    "stop_reason",
    "gateway",
)
_COUNT_FIELDS = ("tool_calls", "input_tokens", "output_tokens", "latency_ms")


def exchange_from_message(message: Mapping[str, Any]) -> Exchange:
    """The exchange in one gateway sample message (``aif_gateway.online_samples.exchange_sample``).

    :raises ValueError: a field is missing or of the wrong type (the message names which).
    """
    if not isinstance(message, Mapping):
        raise ValueError(f"sample message: must be a JSON object, got {type(message).__name__}")
    unknown = sorted(set(message) - {f.name for f in fields(Exchange)} - {"extra"})
    if unknown:
        raise ValueError(f"sample message: unknown fields {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        value = message.get(name)
        if not isinstance(value, str):
            raise ValueError(f"sample message: {name}: must be a string, got {type(value).__name__}")
        values[name] = value
    for name in _COUNT_FIELDS:
        value = message.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"sample message: {name}: must be a whole number >= 0, got {value!r}")
        values[name] = value
    intervened = message.get("guardrail_intervened")
    if not isinstance(intervened, bool):
        raise ValueError(f"sample message: guardrail_intervened: must be true or false, got {intervened!r}")
    for name in ("request_id", "team", "feature", "gateway"):
        if not values[name]:
            raise ValueError(f"sample message: {name}: must not be empty")
    return Exchange(guardrail_intervened=intervened, **values)


def belongs_to(exchange: Exchange, settings: SamplingSettings) -> bool:
    """Whether ``exchange`` is traffic of the feature ``settings`` describe: made by its gateway. A record
    without a gateway (a gateway older than this check, ``ai-factory serve``) is no feature's traffic."""
    return bool(exchange.gateway) and exchange.gateway == settings.gateway


def sample_item(exchange: Exchange, retention_days: int, now_epoch: int) -> dict[str, Any]:
    """The sample-table item of ``exchange``: its fields, ``sampled_at`` (``now_epoch``) and
    ``expires_at`` (the table's TTL attribute, epoch seconds) ``retention_days`` later."""
    item = {k: v for k, v in asdict(exchange).items() if k != "extra"}
    item["sampled_at"] = now_epoch
    item["expires_at"] = now_epoch + retention_days * SECONDS_PER_DAY
    return item
