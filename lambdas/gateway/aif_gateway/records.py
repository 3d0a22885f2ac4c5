"""The records the gateway keeps: API keys (as hashes), usage/audit records, usage snapshots.

Storage backends implement the ``KeyStore`` and ``Ledger`` protocols: DynamoDB in the cloud
(``dynamo_store``) and SQLite in local mode (``ai_factory.local.sqlite_store``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

KEY_PREFIX = "aif"
# Limits a key record gets when it names none (records created before these limits existed, too).
DEFAULT_TOKENS_PER_MINUTE = 2_000_000
DEFAULT_MAX_CONCURRENCY = 32


def utc_now() -> datetime:
    return datetime.now(UTC)


def hash_key(plaintext: str) -> str:
    """Keys are 256-bit random secrets, so an unsalted SHA-256 is not guessable; only this is stored."""
    # surrogatepass: a header with a lone surrogate hashes to no key (401) instead of raising.
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key as (plaintext, key_id, key_hash). The plaintext is shown once and never stored.

    Format ``aif-<key_id>-<secret>``: the key ID is not secret and lets logs and the CLI name a key.
    """
    key_id = secrets.token_hex(6)
    plaintext = f"{KEY_PREFIX}-{key_id}-{secrets.token_urlsafe(32)}"
    return plaintext, key_id, hash_key(plaintext)


def month_of(ts: datetime) -> str:
    return ts.strftime("%Y-%m")


def next_month_start(ts: datetime) -> datetime:
    year, month = (ts.year + 1, 1) if ts.month == 12 else (ts.year, ts.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ApiKeyRecord:
    """A feature's API key. Budget and rate limit belong to the team/feature, so rotation keeps them."""

    key_id: str
    key_hash: str
    team: str
    feature: str
    allowed_models: tuple[str, ...]
    monthly_budget_usd: float
    rate_limit_rpm: int
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    description: str = ""
    # The feature's data clearance (public < internal < confidential < restricted): which route targets
    # may receive its requests (aif_gateway.clearance). None: not recorded, enforced as restricted.
    clearance: str | None = None
    # Input + output tokens per minute (reserved as input estimate + max_tokens, settled to the real
    # count) and requests in flight at once, across every gateway instance (aif_gateway.quota).
    tokens_per_minute: int = DEFAULT_TOKENS_PER_MINUTE
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    # The feature's Bedrock application inference profiles, {catalog model ID: profile ARN}: the gateway
    # invokes a target through its profile, so AWS's bill carries the feature's cost-allocation tags
    # (ai_factory.constructs.inference_profiles). Empty: the catalog's model ID is invoked directly.
    inference_profiles: dict[str, str] = field(default_factory=dict, hash=False)
    # The feature has its own API Gateway usage plan (contract.usage_identifier); otherwise the edge
    # authorizer puts the key in the gateway's shared plan.
    edge_usage_plan: bool = False
    # Share of requests (0..1) whose exchanges the gateway sends to its online-evaluation sample queue
    # when the target's answers are not in Bedrock's invocation log (``online_samples``). 0: none.
    sampling_rate: float = 0.0

    def state(self, now: datetime) -> str:
        """'active', 'revoked' or 'expired'."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass
class UsageRecord:
    """One request's usage and audit record. Holds no prompt or completion text."""

    request_id: str
    timestamp: datetime
    team: str
    feature: str
    key_id: str
    route: str  # the model alias asked for
    status: int
    model_served: str | None = None  # catalog entry that answered
    model_id: str | None = None  # Bedrock model / inference profile ID that answered
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 0  # targets tried, including the one that served
    guardrail_action: str = "NONE"  # NONE or INTERVENED
    error_type: str | None = None
    operation: str = "chat"  # chat or embeddings
    prompt_name: str | None = None
    prompt_version: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def month(self) -> str:
        return month_of(self.timestamp)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamp as ISO 8601), used by the audit log line and the spill queue."""
        data = asdict(self)
        data["timestamp"] = self.timestamp.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageRecord:
        return cls(**{**data, "timestamp": datetime.fromisoformat(data["timestamp"])})


@dataclass(frozen=True)
class UsageSnapshot:
    """What budget and rate checks need: month-to-date spend and this minute's request count."""

    month: str
    spent_usd: float
    minute: str  # "YYYY-MM-DDTHH:MM"
    requests_this_minute: int


@dataclass(frozen=True)
class FeedbackRecord:
    """A person's verdict on one answered request (``POST /v1/feedback``), kept with the usage ledger.

    ``team``/``feature``/``request_month``/``route``/``model_served`` are copied from the request's
    usage record, so summaries per feature, month and model need no join. ``comment`` is user text.
    """

    request_id: str
    team: str
    feature: str
    request_month: str  # "YYYY-MM" of the request (not of the feedback): feedback sits with its request
    score: float  # 0..1 (thumbs up = 1, down = 0)
    submitted_at: datetime
    key_id: str  # the key that submitted the feedback
    comment: str | None = None
    tags: tuple[str, ...] = ()
    route: str = ""
    model_served: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["submitted_at"] = self.submitted_at.isoformat()
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedbackRecord:
        return cls(
            **{
                **data,
                "submitted_at": datetime.fromisoformat(data["submitted_at"]),
                "tags": tuple(data.get("tags") or ()),
            }
        )


class UnknownKeyError(LookupError):
    """No key with that key ID."""


class StoreError(Exception):
    """A key or usage store could not be read (or a key written) after retries; the cause is chained.
    The gateway answers 503 with Retry-After: the caller's request was fine, the platform was not."""


class LedgerWriteError(Exception):
    """The durable write failed after retries; the caller must spill the record, never drop it."""


class KeyStore(Protocol):
    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...
    def get(self, key_id: str) -> ApiKeyRecord | None: ...
    def put(self, record: ApiKeyRecord) -> None: ...
    def list(self, team: str | None = None) -> list[ApiKeyRecord]: ...
    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Raises UnknownKeyError."""
        ...

    def set_expiry(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Raises UnknownKeyError."""
        ...


class Ledger(Protocol):
    def record(self, usage: UsageRecord) -> None:
        """Write the record idempotently (the same request_id twice is stored and counted once). The
        in-process and SQLite ledgers keep the feature's month and minute sums with it; the DynamoDB
        ledger leaves the sums to the feature's quota gate (one item per request, no transaction).
        Raises LedgerWriteError when it cannot."""
        ...

    def snapshot(self, team: str, feature: str, now: datetime) -> UsageSnapshot: ...

    def find(self, request_id: str) -> UsageRecord | None:
        """The usage record of a request, or None if there is none (yet). Raises StoreError."""
        ...

    def record_feedback(self, feedback: FeedbackRecord) -> None:
        """Store human feedback on a request; a later one for the same request replaces it.
        Raises StoreError."""
        ...


def minute_of(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M")
