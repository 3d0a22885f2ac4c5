"""The local SQLite key store and ledger: same contract as the DynamoDB stores."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ai_factory.local.sqlite_store import SqliteKeyStore, SqliteLedger, default_db_path
from aif_gateway.records import (
    ApiKeyRecord,
    LedgerWriteError,
    UnknownKeyError,
    UsageRecord,
    generate_key,
    hash_key,
)

NOW = datetime(2026, 11, 25, 21, 30, 15, tzinfo=UTC)


def make_key(team: str = "payments", feature: str = "invoices", **kw: object) -> tuple[str, ApiKeyRecord]:
    plaintext, key_id, key_hash = generate_key()
    fields: dict[str, object] = {
        "key_id": key_id,
        "key_hash": key_hash,
        "team": team,
        "feature": feature,
        "allowed_models": ("echo", "chat-fast"),
        "monthly_budget_usd": 12.5,
        "rate_limit_rpm": 30,
        "created_at": NOW,
        **kw,
    }
    return plaintext, ApiKeyRecord(**fields)


def usage(request_id: str, ts: datetime = NOW, cost: float = 0.25, **kw: object) -> UsageRecord:
    fields: dict[str, object] = {
        "request_id": request_id,
        "timestamp": ts,
        "team": "payments",
        "feature": "invoices",
        "key_id": "k1",
        "route": "echo",
        "status": 200,
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 2,
        "cache_write_tokens": 1,
        "cost_usd": cost,
        **kw,
    }
    return UsageRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "local.db"


def test_default_location_follows_ai_factory_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "local.db"
    assert default_db_path(tmp_path / "x") == tmp_path / "x" / "local.db"
    monkeypatch.delenv("AI_FACTORY_HOME")
    assert default_db_path() == Path.home() / ".ai-factory" / "local.db"


def test_key_round_trip_by_hash_and_id(db: Path) -> None:
    store = SqliteKeyStore(db)  # creates the missing folder
    plaintext, record = make_key(expires_at=NOW + timedelta(days=3), description="for tests")
    store.put(record)
    assert store.get_by_hash(hash_key(plaintext)) == record
    assert store.get(record.key_id) == record
    assert store.get_by_hash(hash_key("aif-nope")) is None
    assert store.get("nope") is None


def test_only_the_hash_is_stored(db: Path) -> None:
    store = SqliteKeyStore(db)
    plaintext, record = make_key()
    store.put(record)
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert record.key_hash in dump
    assert plaintext not in dump
    # Not even the secret part (everything after "aif-<key id>-"; token_urlsafe may itself hold "-").
    assert plaintext.split("-", 2)[2] not in dump


def test_datetimes_are_stored_as_utc_iso(db: Path) -> None:
    store = SqliteKeyStore(db)
    plus_two = datetime(2026, 11, 26, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    _, record = make_key(created_at=plus_two)
    store.put(record)
    raw = sqlite3.connect(db).execute("SELECT created_at FROM api_keys").fetchone()[0]
    assert raw == "2026-11-25T23:00:00+00:00"
    loaded = store.get(record.key_id)
    assert loaded is not None and loaded.created_at == plus_two


def test_list_filters_by_team_and_orders(db: Path) -> None:
    store = SqliteKeyStore(db)
    _, a = make_key("payments", "b-feature")
    _, b = make_key("payments", "a-feature", created_at=NOW + timedelta(seconds=1))
    _, c = make_key("search", "query")
    for r in (c, a, b):
        store.put(r)
    assert [r.key_id for r in store.list()] == [b.key_id, a.key_id, c.key_id]
    assert [r.key_id for r in store.list(team="search")] == [c.key_id]
    assert store.list(team="nobody") == []


def test_revoke_and_expiry(db: Path) -> None:
    store = SqliteKeyStore(db)
    _, record = make_key()
    store.put(record)
    expired = store.set_expiry(record.key_id, NOW + timedelta(hours=24))
    assert expired.expires_at == NOW + timedelta(hours=24)
    assert expired.state(NOW) == "active"
    assert expired.state(NOW + timedelta(hours=25)) == "expired"
    revoked = store.revoke(record.key_id, NOW)
    assert revoked.revoked_at == NOW and revoked.state(NOW) == "revoked"
    assert store.get(record.key_id) == revoked
    with pytest.raises(UnknownKeyError):
        store.revoke("missing", NOW)
    with pytest.raises(UnknownKeyError):
        store.set_expiry("missing", NOW)


def test_a_second_process_sees_changes(db: Path) -> None:
    """The CLI and a running server hold separate connections to one file."""
    server_view, cli_view = SqliteKeyStore(db), SqliteKeyStore(db)
    _, record = make_key()
    cli_view.put(record)
    assert server_view.get(record.key_id) == record
    cli_view.revoke(record.key_id, NOW)
    got = server_view.get(record.key_id)
    assert got is not None and got.revoked_at == NOW


def test_record_updates_counters_and_snapshot(db: Path) -> None:
    ledger = SqliteLedger(db)
    empty = ledger.snapshot("payments", "invoices", NOW)
    assert (empty.month, empty.spent_usd, empty.minute, empty.requests_this_minute) == (
        "2026-11",
        0.0,
        "2026-11-25T21:30",
        0,
    )
    ledger.record(usage("r1", cost=0.25))
    ledger.record(usage("r2", ts=NOW + timedelta(seconds=20), cost=0.5))
    ledger.record(usage("r3", ts=NOW + timedelta(minutes=1), cost=1.0))
    snap = ledger.snapshot("payments", "invoices", NOW + timedelta(seconds=30))
    assert snap.spent_usd == pytest.approx(1.75)  # month to date: every record this month
    assert snap.requests_this_minute == 2
    assert ledger.snapshot("payments", "invoices", NOW + timedelta(minutes=1)).requests_this_minute == 1
    assert ledger.snapshot("payments", "invoices", NOW + timedelta(minutes=1)).spent_usd == pytest.approx(
        1.75
    )
    # other features and months are separate
    assert ledger.snapshot("payments", "other", NOW).spent_usd == 0.0
    assert ledger.snapshot("payments", "invoices", datetime(2026, 12, 1, tzinfo=UTC)).spent_usd == 0.0
    row = (
        sqlite3.connect(db)
        .execute(
            "SELECT requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
            " FROM month_counters WHERE team='payments' AND feature='invoices' AND month='2026-11'"
        )
        .fetchone()
    )
    assert row == (3, 30, 15, 6, 3)


def test_record_is_idempotent_on_request_id(db: Path) -> None:
    ledger = SqliteLedger(db)
    ledger.record(usage("same", cost=0.4))
    ledger.record(usage("same", cost=0.4))
    ledger.record(usage("same", cost=0.4))
    snap = ledger.snapshot("payments", "invoices", NOW)
    assert snap.spent_usd == pytest.approx(0.4)
    assert snap.requests_this_minute == 1
    assert len(ledger.list_usage()) == 1


def test_list_usage_round_trips_records_and_filters(db: Path) -> None:
    ledger = SqliteLedger(db)
    first = usage(
        "a", model_served="echo", model_id="echo", extra={"k": "v"}, prompt_name="p", prompt_version="3"
    )
    ledger.record(first)
    ledger.record(usage("b", ts=NOW - timedelta(days=30), team="search"))
    ledger.record(usage("c", ts=NOW + timedelta(seconds=1), team="search"))
    assert ledger.list_usage(month="2026-11", team="payments") == [first]
    assert [u.request_id for u in ledger.list_usage(team="search")] == ["b", "c"]
    assert [u.request_id for u in ledger.list_usage(month="2026-11")] == ["a", "c"]
    assert [u.request_id for u in ledger.list_usage()] == ["b", "a", "c"]


def test_write_failure_raises_ledger_write_error(db: Path) -> None:
    ledger = SqliteLedger(db)
    ledger.close()
    with pytest.raises(LedgerWriteError):
        ledger.record(usage("x"))


def test_concurrent_records_from_threads_count_once_each(db: Path) -> None:
    ledger = SqliteLedger(db)
    other = SqliteLedger(db)  # a second connection contends for the write lock too
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        target = ledger if worker % 2 else other
        try:
            for i in range(50):
                # every request is recorded twice (a retry) from different workers
                target.record(usage(f"req-{(worker // 2)}-{i}", cost=0.01))
                if worker % 2 == 0:
                    target.snapshot("payments", "invoices", NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    snap = ledger.snapshot("payments", "invoices", NOW)
    assert snap.requests_this_minute == 200  # 4 distinct workers' ids x 50
    assert snap.spent_usd == pytest.approx(2.0)
    assert len(ledger.list_usage()) == 200
