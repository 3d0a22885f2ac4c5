"""Who is calling and may they: API-key authentication, budget and rate checks.

Both lookups are cached per execution environment so that the hot path makes no synchronous AWS call
before the model call. A cached entry is fresh for its TTL (``key_cache_ttl_s``, ``usage_snapshot_ttl_s``);
after that it is *stale*: the request is still decided on it while a background thread re-reads it,
overlapping the model call, so the refresh adds no latency. An entry older than ``MAX_STALE_FACTOR``
TTLs (an idle environment) is not trusted at all and is re-read synchronously.

So a revoked key stops working within one TTL plus the one request that triggers the refresh (at most
two TTLs), and other instances' spend is seen within a snapshot interval. This instance adds what it
has itself recorded to the snapshot, so its own traffic is always counted. docs/gateway.md gives the
overspend arithmetic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from . import contract
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

log = logging.getLogger("aif_gateway")

NEGATIVE_CACHE_S = 5.0
MAX_STALE_FACTOR = 2  # beyond this many TTLs a cached entry is re-read before it is used


class BackgroundRefresher:
    """Runs cache refreshes and gate flushes off the request path, one at a time per key."""

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor
        self._in_flight: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._lock = threading.Lock()

    def submit(self, key: Hashable, refresh: Callable[[], object], *, again_if_running: bool = False) -> None:
        """Run ``refresh`` in the background unless one for ``key`` is under way. ``again_if_running``:
        then run it once more when that one ends, for work that arrived after the running one took its
        input (a settlement made while its gate is being flushed); a cache refresh needs no second run."""
        with self._lock:
            if key in self._in_flight:
                if again_if_running:
                    self._again.add(key)
                return
            self._in_flight.add(key)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="aif-refresh")
        self._executor.submit(self._run, key, refresh)

    def _run(self, key: Hashable, refresh: Callable[[], object]) -> None:
        again = True
        while again:
            try:
                refresh()
            except Exception:  # keep serving the stale entry; the next stale request tries again
                log.warning("background refresh of %s failed", key, exc_info=True)
            except BaseException:
                with self._lock:
                    self._in_flight.discard(key)
                    self._again.discard(key)
                raise
            with self._lock:  # decided under the lock a submit takes, so no request for a rerun is lost
                again = key in self._again
                self._again.discard(key)
                if not again:
                    self._in_flight.discard(key)


class KeyAuthenticator:
    def __init__(
        self,
        store: KeyStore,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        refresher: BackgroundRefresher | None = None,
    ) -> None:
        self._store, self._ttl_s, self._clock = store, ttl_s, clock
        self._refresher = refresher or BackgroundRefresher()
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
        cached = self._cache.get(key_hash)
        if cached is not None:
            record, fetched = cached
            age = self._clock() - fetched
            if record is None:  # unknown keys: short negative cache, never served stale
                if age < NEGATIVE_CACHE_S:
                    return None
            elif age < self._ttl_s:
                return record
            elif age < self._ttl_s * MAX_STALE_FACTOR:
                self._refresher.submit(("key", key_hash), lambda: self._fetch(key_hash))
                return record
        return self._fetch(key_hash)

    def _fetch(self, key_hash: str) -> ApiKeyRecord | None:
        fetched_at = self._clock()
        record = self._store.get_by_hash(key_hash)
        if len(self._cache) > 10_000:  # bound memory against floods of random keys
            self._cache.clear()
        self._cache[key_hash] = (record, fetched_at)
        return record


@dataclass
class _FeatureUsage:
    snapshot: UsageSnapshot
    fetched_at: float
    extra_cost: float = 0.0  # recorded by this instance since the snapshot was read
    extra_requests: dict[str, int] = field(default_factory=dict)  # minute -> requests since then


class UsageGuard:
    """Budget and rate-limit checks against a cached snapshot of the feature's counters."""

    def __init__(
        self,
        ledger: Ledger,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        refresher: BackgroundRefresher | None = None,
    ) -> None:
        self._ledger, self._ttl_s, self._clock = ledger, ttl_s, clock
        self._refresher = refresher or BackgroundRefresher()
        self._usage: dict[tuple[str, str], _FeatureUsage] = {}
        self._lock = threading.Lock()

    def _current(self, team: str, feature: str, now: datetime) -> _FeatureUsage:
        key = (team, feature)
        entry = self._usage.get(key)
        if entry is not None and entry.snapshot.month == month_of(now):
            age = self._clock() - entry.fetched_at
            if age < self._ttl_s:
                return entry
            if age < self._ttl_s * MAX_STALE_FACTOR:
                self._refresher.submit(("usage", key), lambda: self._refresh(key, now))
                return entry
        return self._refresh(key, now)

    def _refresh(self, key: tuple[str, str], now: datetime) -> _FeatureUsage:
        # What this instance records while the read is under way stays in the extras: it may also be
        # in the snapshot, which over-counts by at most those requests (the safe direction).
        with self._lock:
            old = self._usage.get(key)
            base_cost = old.extra_cost if old else 0.0
            base_requests = dict(old.extra_requests) if old else {}
        fetched_at = self._clock()
        snapshot = self._ledger.snapshot(key[0], key[1], now)
        with self._lock:
            current = self._usage.get(key)
            extra_cost, extra_requests = 0.0, {}
            if current is not None and current.snapshot.month == snapshot.month:
                extra_cost = max(0.0, current.extra_cost - base_cost)
                extra_requests = {
                    m: n - base_requests.get(m, 0)
                    for m, n in current.extra_requests.items()
                    if n > base_requests.get(m, 0)
                }
            entry = _FeatureUsage(snapshot, fetched_at, extra_cost, extra_requests)
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
                headers={
                    "Retry-After": str(int((reset - now).total_seconds())),
                    contract.LIMIT_HEADER: "budget",
                },
            )
        minute = minute_of(now)
        used = entry.snapshot.requests_this_minute if entry.snapshot.minute == minute else 0
        used += entry.extra_requests.get(minute, 0)
        if used >= key.rate_limit_rpm:
            retry_after = 60 - now.second
            raise RateLimited(
                f"Rate limit of {key.rate_limit_rpm} requests per minute for {key.team}/{key.feature} "
                f"reached. Retry after {retry_after} s.",
                headers={"Retry-After": str(retry_after), contract.LIMIT_HEADER: "requests_per_minute"},
            )

    def add(self, team: str, feature: str, now: datetime, cost: float) -> None:
        """Count a request this instance has recorded, until the next snapshot includes it."""
        entry = self._usage.get((team, feature))
        if entry is None:  # the next check reads a fresh snapshot, which includes this request
            return
        with self._lock:
            entry.extra_cost += cost
            minute = minute_of(now)
            entry.extra_requests[minute] = entry.extra_requests.get(minute, 0) + 1
