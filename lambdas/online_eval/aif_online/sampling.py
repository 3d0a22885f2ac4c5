"""Which exchanges are sampled, and what a sample holds.

The sampler is fed by Bedrock model invocation logs (a CloudWatch Logs subscription), never by the
gateway's request path: Bedrock writes those logs itself after answering, so sampling costs the request
nothing. The gateway sends ``requestMetadata`` with every Converse call (as ``aif_request_id``, ``aif_team``,
``aif_feature`` and ``aif_gateway``, its ``LlmGateway.edge_namespace``), which is how a log record is
attributed to a feature. The log group is one per account and region, shared by every gateway there (a
pipeline's staging and production, two factories), whose features may have the same names: a feature's
settings name its gateway, and only records of that gateway are its traffic (``belongs_to``).

The decision is a deterministic function of the request id (its SHA-256 as a number in [0, 1) compared
with the rate): replaying the same logs samples the same requests, and a request is sampled whole or not
at all whichever records mention it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aif_gateway import contract as c

__all__ = ["Exchange", "SamplingSettings", "belongs_to", "exchange_from_log", "is_sampled", "sample_item"]

SECONDS_PER_DAY = 86_400
_SCALE = float(1 << 64)


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


def is_sampled(request_id: str, rate: float) -> bool:
    """Whether the request with ``request_id`` belongs to the sample at ``rate`` (deterministic)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE < rate


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


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [str(block["text"]) for block in content if isinstance(block, dict) and "text" in block]


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
    # The last user turn is the question; the system prompt is the feature's own, not traffic.
    question = ""
    for message in reversed(body_in.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            question = "\n".join(_texts(message.get("content")))
            break
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
        input=question,
        output="\n".join(_texts(answer_content)),
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
