"""``ai-factory keys``: create, list, revoke, rotate against the local store, and input validation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ai_factory.cli.main import main
from ai_factory.local.sqlite_store import SqliteKeyStore
from aif_gateway.dynamo_store import create_tables
from aif_gateway.records import hash_key, utc_now
from tests.catalog_evidence import PASSING_EVIDENCE_YAML


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AI_FACTORY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create(capsys: pytest.CaptureFixture[str], *extra: str, models: str = "echo,chat-fast") -> dict[str, Any]:
    code, out, err = run(
        capsys, "keys", "create", "--team", "payments", "--feature", "invoices", "--models", models,
        "--format", "json", *extra,
    )  # fmt: skip
    assert code == 0, err
    return dict(json.loads(out))


def test_create_prints_key_once_and_stores_only_its_hash(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, err = run(
        capsys, "keys", "create", "--team", "payments", "--feature", "invoices",
        "--models", "echo, chat-fast,echo", "--budget", "25", "--rate-limit", "10",
        "--expires-in-days", "30", "--description", "nightly batch",
    )  # fmt: skip
    assert code == 0
    key_line = next(line for line in out.splitlines() if line.startswith("API key: "))
    plaintext = key_line.removeprefix("API key: ")
    assert plaintext.startswith("aif-")
    assert "cannot be shown again" in err
    record = SqliteKeyStore(home / "local.db").get_by_hash(hash_key(plaintext))
    assert record is not None
    assert record.key_id in out
    assert (record.team, record.feature, record.allowed_models) == (
        "payments",
        "invoices",
        ("echo", "chat-fast"),
    )
    assert (record.monthly_budget_usd, record.rate_limit_rpm, record.description) == (
        25.0,
        10,
        "nightly batch",
    )
    assert record.expires_at is not None
    assert timedelta(days=29, hours=23) < record.expires_at - utc_now() <= timedelta(days=30)
    # listing never shows the secret again
    _, listed, _ = run(capsys, "keys", "list")
    assert plaintext not in listed and record.key_hash not in listed


def test_create_json_output(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    data = create(capsys)
    assert set(data) >= {
        "key_id",
        "api_key",
        "team",
        "feature",
        "models",
        "monthly_budget_usd",
        "rate_limit_rpm",
    }
    assert data["models"] == ["echo", "chat-fast"]
    assert data["state"] == "active" and data["expires_at"] is None
    assert "key_hash" not in data
    assert SqliteKeyStore(home / "local.db").get_by_hash(hash_key(data["api_key"])) is not None


def test_state_dir_flag_overrides_home(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    data = create(capsys, "--state-dir", str(tmp_path / "other"))
    assert SqliteKeyStore(tmp_path / "other" / "local.db").get(data["key_id"]) is not None
    assert SqliteKeyStore(home / "local.db").get(data["key_id"]) is None


def test_list_table_and_json(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    a = create(capsys)
    code, out, _ = run(
        capsys,
        "keys",
        "create",
        "--team",
        "search",
        "--feature",
        "query",
        "--models",
        "embed",
        "--format",
        "json",
    )
    assert code == 0
    b = json.loads(out)
    code, table, _ = run(capsys, "keys", "list")
    assert code == 0
    header, *rows = table.splitlines()
    assert header.split() == [
        "KEY",
        "ID",
        "TEAM",
        "FEATURE",
        "MODELS",
        "BUDGET",
        "USD",
        "RPM",
        "STATE",
        "EXPIRES",
    ]
    assert len(rows) == 2
    assert rows[0].split() == [
        a["key_id"],
        "payments",
        "invoices",
        "echo,chat-fast",
        "100",
        "60",
        "active",
        "never",
    ]
    code, out, _ = run(capsys, "keys", "list", "--team", "search", "--format", "json")
    listed = json.loads(out)
    assert [k["key_id"] for k in listed] == [b["key_id"]]
    assert "api_key" not in listed[0] and "key_hash" not in listed[0]
    code, out, _ = run(capsys, "keys", "list", "--team", "nobody")
    assert (code, out.strip()) == (0, "No keys for team nobody.")


def test_revoke(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    data = create(capsys)
    code, out, _ = run(capsys, "keys", "revoke", data["key_id"])
    assert code == 0 and f"Revoked key {data['key_id']}" in out
    record = SqliteKeyStore(home / "local.db").get(data["key_id"])
    assert record is not None and record.state(utc_now()) == "revoked"
    code, out, _ = run(capsys, "keys", "list", "--format", "json")
    assert json.loads(out)[0]["state"] == "revoked"
    code, out, _ = run(capsys, "keys", "revoke", data["key_id"])
    assert code == 0 and "already revoked" in out


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_unknown_key_id_exits_1(capsys: pytest.CaptureFixture[str], home: Path, command: str) -> None:
    code, out, err = run(capsys, "keys", command, "nope")
    assert code == 1
    assert out == ""
    assert "no key with ID 'nope'" in err


def test_rotate_copies_settings_and_expires_old_after_grace(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    old = create(capsys, "--budget", "7.5", "--rate-limit", "3", "--description", "d")
    before = utc_now()
    code, out, err = run(capsys, "keys", "rotate", old["key_id"], "--grace-hours", "2", "--format", "json")
    assert code == 0
    assert "cannot be shown again" in err
    new = json.loads(out)
    assert new["key_id"] != old["key_id"] and new["api_key"] != old["api_key"]
    assert new["replaces_key_id"] == old["key_id"]
    for field in ("team", "feature", "models", "monthly_budget_usd", "rate_limit_rpm", "description"):
        assert new[field] == old[field]
    store = SqliteKeyStore(home / "local.db")
    old_record = store.get(old["key_id"])
    assert old_record is not None and old_record.expires_at is not None
    assert timedelta(hours=2) <= old_record.expires_at - before < timedelta(hours=2, minutes=1)
    assert old_record.state(utc_now()) == "active"  # still works during the grace period
    assert old_record.state(utc_now() + timedelta(hours=3)) == "expired"
    assert store.get_by_hash(hash_key(new["api_key"])) is not None


def test_rotate_default_grace_is_24h_and_text_output(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    old = create(capsys)
    code, out, _ = run(capsys, "keys", "rotate", old["key_id"])
    assert code == 0
    assert f"Old key {old['key_id']} stops working at" in out
    assert "API key: aif-" in out
    record = SqliteKeyStore(home / "local.db").get(old["key_id"])
    assert record is not None and record.expires_at is not None
    expires_in = record.expires_at - utc_now()
    assert timedelta(hours=23, minutes=59) < expires_in <= timedelta(hours=24)


def test_rotate_does_not_extend_an_earlier_expiry(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    old = create(capsys, "--expires-in-days", "0.01")  # ~14 minutes
    assert run(capsys, "keys", "rotate", old["key_id"])[0] == 0
    record = SqliteKeyStore(home / "local.db").get(old["key_id"])
    assert record is not None and record.expires_at == datetime.fromisoformat(old["expires_at"]).replace(
        microsecond=record.expires_at.microsecond
    )


def test_rotate_refuses_a_revoked_key(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    old = create(capsys)
    run(capsys, "keys", "revoke", old["key_id"])
    code, _, err = run(capsys, "keys", "rotate", old["key_id"])
    assert code == 1 and "is revoked" in err
    assert len(SqliteKeyStore(home / "local.db").list()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--team", ""], "--team must not be empty"),
        (["--team", "Payments"], "--team 'Payments' is not valid"),
        (["--team", "-payments"], "--team '-payments' is not valid"),
        (["--team", "a" * 64], "is not valid: use 1-63"),
        (["--feature", "   "], "--feature must not be empty"),
        (["--feature", "my_feature"], "--feature 'my_feature' is not valid"),
        (["--budget", "0"], "--budget must be a number greater than 0"),
        (["--budget", "-5"], "--budget must be a number greater than 0"),
        (["--budget", "nan"], "--budget must be a number greater than 0"),
        (["--rate-limit", "0"], "--rate-limit must be a number greater than 0"),
        (["--expires-in-days", "0"], "--expires-in-days must be a number greater than 0"),
        (["--models", " , "], "--models must name at least one model alias"),
        (["--models", "echo,gpt-4,claude"], "--models: unknown model aliases gpt-4, claude"),
        (["--models", "gpt-4"], "--models: unknown model alias gpt-4;"),
    ],
)
def test_create_validation_exits_2_with_precise_message(
    capsys: pytest.CaptureFixture[str], home: Path, args: list[str], message: str
) -> None:
    base = {"--team": "payments", "--feature": "invoices", "--models": "echo"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    # --flag=value so that values starting with "-" reach our validation rather than argparse's
    code, out, err = run(capsys, "keys", "create", *[f"{k}={v}" for k, v in base.items()])
    assert code == 2
    assert message in err
    assert out == ""
    assert not (home / "local.db").exists() or SqliteKeyStore(home / "local.db").list() == []


def test_unknown_alias_message_lists_catalog_aliases(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, _, err = run(capsys, "keys", "create", "--team", "t", "--feature", "f", "--models", "nope")
    assert code == 2
    assert "the catalog's aliases are: chat-claude-any, chat-fast, chat-gpt, chat-mistral, chat-smart," in err


def test_custom_catalog_and_bad_catalog(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    catalog = tmp_path / "models.yaml"
    catalog.write_text(
        "models:\n"
        "  - {name: e, provider: echo, modality: chat, model_id: echo, prices: {}, status: approved,\n"
        f"     evidence: {PASSING_EVIDENCE_YAML}}}\n"
        "routes:\n  - {alias: only-echo, targets: [e]}\n"
    )
    base = ["keys", "create", "--team", "t", "--feature", "f", "--catalog", str(catalog)]
    assert run(capsys, *base, "--models", "only-echo")[0] == 0
    code, _, err = run(capsys, *base, "--models", "echo")
    assert code == 2 and "unknown model alias echo" in err
    code, _, err = run(capsys, "keys", "create", "--team", "t", "--feature", "f", "--models", "echo",
                       "--catalog", str(tmp_path / "missing.yaml"))  # fmt: skip
    assert code == 2 and "--catalog: invalid model catalog" in err


def test_missing_required_flag_is_an_argparse_error(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, _, err = run(capsys, "keys", "create", "--team", "t", "--feature", "f")
    assert code == 2 and "--models" in err


def test_aws_store_needs_a_table(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIF_KEYS_TABLE", raising=False)
    code, _, err = run(capsys, "keys", "list", "--store", "aws")
    assert code == 2 and "--table is required with --store aws (or set AIF_KEYS_TABLE)" in err


def test_aws_store_uses_dynamodb(
    capsys: pytest.CaptureFixture[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from moto import mock_aws

    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        create_tables(boto3.client("dynamodb", region_name="eu-west-1"), keys_table="keys")
        monkeypatch.setenv("AIF_KEYS_TABLE", "keys")
        aws = ["--store", "aws", "--region", "eu-west-1"]
        data = create(capsys, *aws)
        code, out, _ = run(capsys, "keys", "list", *aws, "--format", "json")
        assert code == 0 and [k["key_id"] for k in json.loads(out)] == [data["key_id"]]
        assert run(capsys, "keys", "revoke", data["key_id"], *aws)[0] == 0
        code, out, _ = run(capsys, "keys", "list", *aws, "--format", "json")
        assert json.loads(out)[0]["state"] == "revoked"
    assert not (home / "local.db").exists()


def test_create_takes_token_and_concurrency_limits_with_defaults(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    default = create(capsys)
    assert (default["tokens_per_minute"], default["max_concurrency"]) == (2_000_000, 32)
    data = create(capsys, "--tokens-per-minute", "50000", "--max-concurrency", "4")
    record = SqliteKeyStore(home / "local.db").get(data["key_id"])
    assert record is not None and (record.tokens_per_minute, record.max_concurrency) == (50_000, 4)


def test_update_changes_limits_and_keeps_the_key(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    data = create(capsys)
    code, out, _ = run(
        capsys,
        "keys",
        "update",
        data["key_id"],
        "--budget",
        "5",
        "--max-concurrency",
        "2",
        "--format",
        "json",
    )
    assert code == 0
    shown = json.loads(out)
    assert (shown["monthly_budget_usd"], shown["max_concurrency"], shown["rate_limit_rpm"]) == (5.0, 2, 60)
    record = SqliteKeyStore(home / "local.db").get_by_hash(hash_key(data["api_key"]))
    assert record is not None and (record.monthly_budget_usd, record.max_concurrency) == (5.0, 2)
    rotated = json.loads(run(capsys, "keys", "rotate", data["key_id"], "--format", "json")[1])
    assert rotated["max_concurrency"] == 2  # rotation keeps the limits


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "nothing to update"),
        (("--tokens-per-minute", "0"), "--tokens-per-minute"),
        (("--max-concurrency", "-1"), "--max-concurrency"),
    ],
)
def test_update_validation(
    capsys: pytest.CaptureFixture[str], home: Path, argv: tuple[str, ...], message: str
) -> None:
    data = create(capsys)
    code, _, err = run(capsys, "keys", "update", data["key_id"], *argv)
    assert code == 2 and message in err
