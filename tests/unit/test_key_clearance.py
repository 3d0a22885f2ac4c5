"""A key carries its feature's clearance: stored by every key store, set by ``keys create``, kept by
``keys rotate``; databases from before the field gain it (NULL: not recorded, enforced as restricted)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ai_factory.cli.main import main
from ai_factory.local.sqlite_store import SqliteKeyStore, default_db_path
from aif_gateway.dynamo_store import key_from_item, key_to_item
from aif_gateway.records import ApiKeyRecord, generate_key


def record(clearance: str | None) -> ApiKeyRecord:
    _, key_id, key_hash = generate_key()
    return ApiKeyRecord(
        key_id,
        key_hash,
        "t",
        "f",
        ("echo",),
        10.0,
        60,
        datetime(2026, 12, 1, tzinfo=UTC),
        clearance=clearance,
    )


@pytest.mark.parametrize("clearance", ["confidential", None])
def test_dynamo_item_round_trip_keeps_the_clearance(clearance: str | None) -> None:
    item = key_to_item(record(clearance))
    assert ("clearance" in item) == (clearance is not None)
    assert key_from_item(dict(item)).clearance == clearance


def test_sqlite_store_keeps_the_clearance_and_migrates_old_databases(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE api_keys (key_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, team TEXT NOT NULL, "
        "feature TEXT NOT NULL, allowed_models TEXT NOT NULL, monthly_budget_usd REAL NOT NULL, "
        "rate_limit_rpm INTEGER NOT NULL, created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT, "
        "description TEXT NOT NULL DEFAULT '')"
    )
    old.execute(
        "INSERT INTO api_keys VALUES ('h', 'k1', 't', 'f', '[\"echo\"]', 1.0, 60, "
        "'2026-12-01T00:00:00+00:00', NULL, NULL, '')"
    )
    old.commit()
    old.close()
    store = SqliteKeyStore(path)
    legacy = store.get("k1")
    assert legacy is not None and legacy.clearance is None
    new = record("internal")
    store.put(new)
    assert store.get(new.key_id) == new


def test_keys_create_and_rotate_carry_the_clearance(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))
    argv = ["keys", "create", "--team", "t", "--feature", "f", "--models", "echo", "--format", "json"]
    assert main([*argv, "--clearance", "confidential"]) == 0
    created = json.loads(capsys.readouterr().out)
    store = (
        SqliteKeyStore(tmp_path / "home" / "local.db") if (tmp_path / "home" / "local.db").exists() else None
    )
    assert main(["keys", "rotate", created["key_id"], "--format", "json"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert main([*argv, "--clearance", "secret"]) == 2
    assert "invalid choice: 'secret'" in capsys.readouterr().err
    store = SqliteKeyStore(default_db_path())  # the database the CLI used (AI_FACTORY_HOME)
    assert store.get(created["key_id"]).clearance == "confidential"  # type: ignore[union-attr]
    assert store.get(rotated["key_id"]).clearance == "confidential"  # type: ignore[union-attr]
