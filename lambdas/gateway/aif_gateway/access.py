"""Who is calling and may they: API-key authentication, budget and rate checks.

Both caches are per execution environment and exist so that the hot path makes no synchronous AWS call
before the model call: key records are re-read after ``key_cache_ttl_s`` (so a revoked key stops
working within that time), usage snapshots after ``usage_snapshot_ttl_s``. Between snapshots this
instance adds what it has itself recorded, so its own traffic is always counted; traffic through other
instances is seen at the next snapshot. That bounds overspend; docs/gateway.md gives the arithmetic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .errors import BudgetExhausted, RateLimited, Unauthorized
from .records import (
    ApiKeyRecord,
    KeyStore,
    Ledger,
    UsageSnapshot,
    hash_key,
    minute_of,
    month_of,
    next_month_start,
)

NEGATIVE_CACHE_S = 5.0


class KeyAuthenticator:
    def __init__(self, store: KeyStore, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store, self._ttl_s, self._clock = store, ttl_s, clock
        self._cache: dict[str, tuple[ApiKeyRecord | None, float]] = {}

    def authenticate(self, authorization: str | None, now: datetime) -> ApiKeyRecord:
        if not authorization:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(
                "The Authorization header must be 'Bearer <key>'.", code="invalid_authorization"
            )
        record = self._lookup(hash_key(token))
        if record is None:
            raise Unauthorized("Unknown API key.")
        state = record.state(now)
        if state == "revoked":
            raise Unauthorized(f"API key {record.key_id} was revoked.", code="revoked_api_key")
        if state == "expired":
            raise Unauthorized(
                f"API key {record.key_id} expired at {record.expires_at:%Y-%m-%dT%H:%M:%SZ}.",
                code="expired_api_key",
            )
        return record

    def _lookup(self, key_hash: str) -> ApiKeyRecord | None:
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None:
            record, fetched = cached
            if now - fetched < (self._ttl_s if record is not None else NEGATIVE_CACHE_S):
                return record
        record = self._store.get_by_hash(key_hash)
        if len(self._cache) > 10_000:  # bound memory against floods of random keys
            self._cache.clear()
        self._cache[key_hash] = (record, now)
        return record


@dataclass
class _FeatureUsage:
    snapshot: UsageSnapshot
    fetched_at: float
    extra_cost: float = 0.0  # recorded by this instance since the snapshot
    extra_requests: dict[str, int] | None = None  # minute -> requests since the snapshot


class UsageGuard:
    """Budget and rate-limit checks against a cached snapshot of the feature's counters."""

    def __init__(self, ledger: Ledger, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger, self._ttl_s, self._clock = ledger, ttl_s, clock
        self._usage: dict[tuple[str, str], _FeatureUsage] = {}
        self._lock = threading.Lock()

    def _current(self, team: str, feature: str, now: datetime) -> _FeatureUsage:
        key = (team, feature)
        entry = self._usage.get(key)
        if (
            entry is None
            or self._clock() - entry.fetched_at >= self._ttl_s
            or entry.snapshot.month != month_of(now)
        ):
            entry = _FeatureUsage(self._ledger.snapshot(team, feature, now), self._clock(), 0.0, {})
            with self._lock:
                self._usage[key] = entry
        return entry

    def check(self, key: ApiKeyRecord, now: datetime) -> None:
        entry = self._current(key.team, key.feature, now)
        spent = entry.snapshot.spent_usd + entry.extra_cost
        if spent >= key.monthly_budget_usd:
            reset = next_month_start(now)
            raise BudgetExhausted(
                f"The monthly budget of ${key.monthly_budget_usd:,.2f} for {key.team}/{key.feature} is spent "
                f"(${spent:,.4f} used in {month_of(now)}). It resets on {reset:%Y-%m-%d} 00:00 UTC; ask the "
                "platform team to raise the budget if you need more now.",
                headers={"Retry-After": str(int((reset - now).total_seconds()))},
            )
        minute = minute_of(now)
        used = entry.snapshot.requests_this_minute if entry.snapshot.minute == minute else 0
        used += (entry.extra_requests or {}).get(minute, 0)
        if used >= key.rate_limit_rpm:
            retry_after = 60 - now.second
            raise RateLimited(
                f"Rate limit of {key.rate_limit_rpm} requests per minute for {key.team}/{key.feature} "
                f"reached. Retry after {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )

    def add(self, team: str, feature: str, now: datetime, cost: float) -> None:
        """Count a request this instance has recorded, until the next snapshot includes it."""
        entry = self._usage.get((team, feature))
        if entry is None:  # the next check reads a fresh snapshot, which includes this request
            return
        with self._lock:
            entry.extra_cost += cost
            requests = entry.extra_requests if entry.extra_requests is not None else {}
            minute = minute_of(now)
            requests[minute] = requests.get(minute, 0) + 1
            entry.extra_requests = requests
