"""In-memory KeyStore and Ledger: for unit tests and benchmarks, never for production state."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime

from .quota import Carry, Claim, GateState, Limits, admitted, applied
from .records import (
    ApiKeyRecord,
    FeedbackRecord,
    UnknownKeyError,
    UsageRecord,
    UsageSnapshot,
    minute_of,
    month_of,
)


class MemoryKeyStore:
    def __init__(self) -> None:
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self.reads = 0

    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        self.reads += 1
        return self._by_hash.get(key_hash)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return next((r for r in self._by_hash.values() if r.key_id == key_id), None)

    def put(self, record: ApiKeyRecord) -> None:
        self._by_hash[record.key_hash] = record

    def list(self, team: str | None = None) -> list[ApiKeyRecord]:
        return [r for r in self._by_hash.values() if team is None or r.team == team]

    def revoke(self, key_id: str, at: datetime) -> ApiKeyRecord:
        return self._update(key_id, revoked_at=at)

    def set_expiry(self, key_id: str, at: datetime) -> ApiKeyRecord:
        return self._update(key_id, expires_at=at)

    def _update(self, key_id: str, **changes: datetime) -> ApiKeyRecord:
        record = self.get(key_id)
        if record is None:
            raise UnknownKeyError(key_id)
        updated = replace(record, **changes)  # type: ignore[arg-type]
        self._by_hash[record.key_hash] = updated
        return updated


class MemoryLedger:
    def __init__(self) -> None:
        self.records: dict[str, UsageRecord] = {}
        self.feedback: dict[str, FeedbackRecord] = {}
        self._month: dict[tuple[str, str, str], float] = {}
        self._minute: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self.snapshots = 0

    def record(self, usage: UsageRecord) -> None:
        with self._lock:
            if usage.request_id in self.records:
                return
            self.records[usage.request_id] = usage
            month_key = (usage.team, usage.feature, month_of(usage.timestamp))
            self._month[month_key] = self._month.get(month_key, 0.0) + usage.cost_usd
            minute_key = (usage.team, usage.feature, minute_of(usage.timestamp))
            self._minute[minute_key] = self._minute.get(minute_key, 0) + 1

    def snapshot(self, team: str, feature: str, now: datetime) -> UsageSnapshot:
        self.snapshots += 1
        month, minute = month_of(now), minute_of(now)
        return UsageSnapshot(
            month=month,
            spent_usd=self._month.get((team, feature, month), 0.0),
            minute=minute,
            requests_this_minute=self._minute.get((team, feature, minute), 0),
        )

    def find(self, request_id: str) -> UsageRecord | None:
        return self.records.get(request_id)

    def record_feedback(self, feedback: FeedbackRecord) -> None:
        with self._lock:
            self.feedback[feedback.request_id] = feedback


class MemoryQuotaStore:
    """Gates in one process (aif_gateway.quota): the default of a Gateway given no shared store, and the
    store tests share between two gateway instances. ``calls`` counts reserve/apply calls."""

    def __init__(self) -> None:
        self._gates: dict[tuple[str, str, str], GateState] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def reserve(self, claim: Claim, limits: Limits, carry: Carry) -> None:
        key = (claim.team, claim.feature, claim.month)
        with self._lock:
            self.calls += 1
            self._gates[key] = admitted(self._gates.get(key, GateState()), claim, limits, carry)

    def apply(self, team: str, feature: str, month: str, carry: Carry) -> None:
        key = (team, feature, month)
        with self._lock:
            self.calls += 1
            self._gates[key] = applied(self._gates.get(key, GateState()), carry)

    def state(self, team: str, feature: str, month: str) -> GateState:
        return self._gates.get((team, feature, month), GateState())
