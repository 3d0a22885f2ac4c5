"""The quota stores' admission rule, one case at a time, on every store (DynamoDB under moto, SQLite,
memory): limits, the minute roll-over, settlements carried on the next reservation, leaked slots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from ai_factory.local.sqlite_store import SqliteQuotaStore
from aif_gateway.dynamo_quota import DynamoQuotaStore
from aif_gateway.dynamo_store import create_tables, make_client
from aif_gateway.memory_store import MemoryQuotaStore
from aif_gateway.quota import Carry, Claim, Limits, QuotaExceeded, QuotaStore

T = 1_800_000_000.0
LIMITS = Limits(monthly_budget_usd=1.0, requests_per_minute=3, tokens_per_minute=1000, max_concurrency=2)


def claim(minute: str = "2026-11-25T12:00", cost: float = 0.1, tokens: int = 100, now: float = T) -> Claim:
    return Claim("t", "f", "2026-11", minute, now, cost, tokens)


@pytest.fixture(params=["dynamodb", "sqlite", "memory"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[QuotaStore]:
    if request.param == "dynamodb":
        for name, value in {
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        with mock_aws():
            client = make_client()
            create_tables(client, usage_table="usage")
            yield DynamoQuotaStore("usage", client)
    elif request.param == "sqlite":
        sqlite = SqliteQuotaStore(tmp_path / "q.db")
        yield sqlite
        sqlite.close()
    else:
        yield MemoryQuotaStore()


def refused(store: QuotaStore, c: Claim, carry: Carry | None = None) -> str:
    with pytest.raises(QuotaExceeded) as info:
        store.reserve(c, LIMITS, carry or Carry())
    return info.value.limit


def test_each_limit_refuses_with_its_name_and_applies_nothing(store: QuotaStore) -> None:
    assert refused(store, claim(cost=1.5)) == "budget"  # more than the whole budget, even on a new gate
    assert refused(store, claim(tokens=1001)) == "tokens_per_minute"
    store.reserve(claim(), LIMITS, Carry())
    store.reserve(claim(), LIMITS, Carry())
    assert refused(store, claim()) == "concurrency"
    state = store.state("t", "f", "2026-11")
    assert (state.in_flight, state.minute_requests, state.committed_usd) == (2, 2, pytest.approx(0.2))
    # One settles (carried on the next reservation): the third request fits, the fourth breaks the rpm.
    done = Carry(
        committed_usd=-0.05, spent_usd=0.05, minute="2026-11-25T12:00", tokens=-50, slots=-1, requests=1
    )
    store.reserve(claim(), LIMITS, done)
    assert refused(store, claim(), Carry(slots=-1, requests=1)) == "requests_per_minute"
    state = store.state("t", "f", "2026-11")
    assert (state.in_flight, state.minute_requests, state.minute_tokens) == (2, 3, 250)
    assert state.committed_usd == pytest.approx(0.25) and state.spent_usd == pytest.approx(0.05)


def test_a_new_minute_resets_the_minute_counts_not_the_budget(store: QuotaStore) -> None:
    for _ in range(2):
        store.reserve(claim(tokens=400), LIMITS, Carry(slots=-1))
    assert refused(store, claim(tokens=400)) == "tokens_per_minute"
    store.reserve(
        claim(minute="2026-11-25T12:01", tokens=400),
        LIMITS,
        Carry(slots=-1, minute="2026-11-25T12:00", tokens=-300),
    )
    state = store.state("t", "f", "2026-11")
    assert (state.minute, state.minute_requests, state.minute_tokens) == ("2026-11-25T12:01", 1, 400)
    assert state.committed_usd == pytest.approx(0.3)


def test_apply_adds_settlements_and_drops_a_past_minute_s_tokens(store: QuotaStore) -> None:
    store.reserve(claim(), LIMITS, Carry())
    store.apply(
        "t",
        "f",
        "2026-11",
        Carry(
            committed_usd=-0.04, spent_usd=0.06, minute="2026-11-25T12:00", tokens=-40, slots=-1, requests=1
        ),
    )
    store.apply("t", "f", "2026-11", Carry(minute="2026-11-25T11:59", tokens=-500))
    state = store.state("t", "f", "2026-11")
    assert (state.in_flight, state.minute_tokens, state.settled_requests) == (0, 60, 1)
    assert state.committed_usd == pytest.approx(0.06) and state.spent_usd == pytest.approx(0.06)


def test_slots_leaked_by_a_crashed_instance_are_reclaimed_after_the_expiry(store: QuotaStore) -> None:
    store.reserve(claim(), LIMITS, Carry())
    store.reserve(claim(), LIMITS, Carry())  # both instances then crash: the slots are never freed
    assert refused(store, claim(now=T + 60)) == "concurrency"
    store.reserve(claim(minute="2026-11-25T12:16", now=T + LIMITS.slot_expiry_s + 1), LIMITS, Carry())
    assert store.state("t", "f", "2026-11").in_flight == 1


def test_a_settlement_made_while_its_gate_is_flushing_is_applied_without_further_traffic() -> None:
    """A request settling while the background flush of the same gate is writing must not wait for this
    instance's next request: on a quiet instance its slot would stay counted in flight on every other
    instance until the slot expiry (the cause of a CI failure: the other instance's threads were refused
    for concurrency until their request cap)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from aif_gateway.access import BackgroundRefresher
    from aif_gateway.quota import Estimate, Gate
    from aif_gateway.records import ApiKeyRecord

    writing, release = threading.Event(), threading.Event()

    class SlowApply(MemoryQuotaStore):
        def apply(self, team: str, feature: str, month: str, carry: Carry) -> None:
            writing.set()
            assert release.wait(5)
            super().apply(team, feature, month, carry)

    store = SlowApply()
    executor = ThreadPoolExecutor(max_workers=2)
    gate = Gate(store, BackgroundRefresher(executor), epoch=lambda: T)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    key = ApiKeyRecord("k", "h", "t", "f", ("echo",), 10.0, 100, now, max_concurrency=2)
    first = gate.reserve(key, now, Estimate(0.1, 100, 10, 90))
    second = gate.reserve(key, now, Estimate(0.1, 100, 10, 90))

    first.settle(0.05, 50)
    assert writing.wait(5)  # the flush has taken the first settlement and is writing it
    second.settle(0.05, 50)  # arrives while that flush is under way
    release.set()
    executor.shutdown(wait=True)

    assert gate.pending() == 0
    state = store.state("t", "f", "2026-11")
    assert (state.in_flight, state.settled_requests) == (0, 2)
