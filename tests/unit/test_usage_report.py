"""``ai-factory usage`` on a seeded ledger: SQLite (local mode) and DynamoDB (moto) give the same report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from ai_factory.cli.main import main
from ai_factory.cli.usage_report import NO_MODEL, aws_usage, month_partitions, summarize_usage
from ai_factory.local.sqlite_store import SqliteLedger
from aif_gateway.dynamo_store import DynamoLedger, create_tables, make_client
from aif_gateway.records import UsageRecord

TABLE = "aif-usage"
NOV = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
OCT = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)

# (team, feature, model, input, output, cache read, cache write, cost)
SEED = [
    ("support", "summarizer", "claude-haiku-4-5", 1000, 200, 500, 0, 0.002),
    ("support", "summarizer", "claude-haiku-4-5", 3000, 400, 0, 800, 0.006),
    ("support", "summarizer", "nova-lite", 1000, 100, 0, 0, 0.0001),
    ("support", "classifier", "nova-lite", 200, 10, 0, 0, 0.00002),
    ("knowledge", "qa", "claude-sonnet-4-5", 5000, 1000, 2000, 0, 0.03),
    ("knowledge", "qa", None, 0, 0, 0, 0, 0.0),  # every model failed: recorded, no tokens
]


def seed(ledger: Any) -> None:
    for i, (team, feature, model, inp, out, cr, cw, cost) in enumerate(SEED):
        ledger.record(
            UsageRecord(
                request_id=f"req-{i}",
                timestamp=NOV.replace(minute=i),
                team=team,
                feature=feature,
                key_id="k",
                route="chat",
                status=200 if model else 503,
                model_served=model,
                input_tokens=inp,
                output_tokens=out,
                cache_read_tokens=cr,
                cache_write_tokens=cw,
                cost_usd=cost,
            )
        )
    # Another month: must not show up in November's report.
    ledger.record(UsageRecord("req-oct", OCT, "support", "summarizer", "k", "chat", 200, cost_usd=9.0))


def check_report(report: dict[str, Any]) -> None:
    lines = [(x["team"], x["feature"], x["model"]) for x in report["lines"]]
    assert lines == [
        ("knowledge", "qa", "claude-sonnet-4-5"),
        ("support", "summarizer", "claude-haiku-4-5"),
        ("support", "summarizer", "nova-lite"),
        ("support", "classifier", "nova-lite"),
        ("knowledge", "qa", NO_MODEL),
    ]
    haiku = report["lines"][1]
    assert (haiku["requests"], haiku["input_tokens"], haiku["output_tokens"]) == (2, 4000, 600)
    assert (haiku["cache_read_tokens"], haiku["cache_write_tokens"]) == (500, 800)
    assert haiku["cost_usd"] == pytest.approx(0.008)
    features = [(x["team"], x["feature"]) for x in report["features"]]
    assert features == [("knowledge", "qa"), ("support", "summarizer"), ("support", "classifier")]
    assert report["features"][1]["requests"] == 3
    total = report["total"]
    assert total["requests"] == 6 and total["cost_usd"] == pytest.approx(0.03812)
    assert total["input_tokens"] == 10200


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_summary_sorts_by_cost_and_totals() -> None:
    ledger = SqliteLedger(":memory:")
    seed(ledger)
    report = summarize_usage(ledger.list_usage(month="2026-11"), "2026-11").to_dict()
    check_report(report)


def test_cli_local_json_table_and_csv(tmp_path: Path) -> None:
    seed(SqliteLedger(tmp_path / "local.db"))
    base = ("usage", "--month", "2026-11", "--state-dir", str(tmp_path))
    code, text = run_cli(*base, "--format", "json")
    assert code == 0, text
    check_report(json.loads(text))

    code, text = run_cli(*base)
    assert code == 0
    rows = text.splitlines()
    assert rows[1].split()[:3] == ["TEAM", "FEATURE", "MODEL"]
    assert rows[2].split()[:3] == ["knowledge", "qa", "claude-sonnet-4-5"]
    total = next(r for r in rows if r.startswith("TOTAL"))
    assert total.split()[-1] == "0.0381" and "10,200" in total
    assert "knowledge/qa: $0.0300 (78.7%)" in text

    code, text = run_cli(*base, "--format", "csv", "--team", "support")
    assert code == 0
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["feature"] for r in parsed] == ["summarizer", "summarizer", "classifier"]
    assert parsed[0]["cost_usd"] == "0.008" and parsed[0]["cache_write_tokens"] == "800"


def test_cli_empty_month_and_bad_flags(tmp_path: Path) -> None:
    code, text = run_cli("usage", "--month", "2020-01", "--state-dir", str(tmp_path))
    assert code == 0 and "No usage recorded (2020-01)" in text
    assert run_cli("usage", "--month", "november", "--state-dir", str(tmp_path))[0] == 2
    assert run_cli("usage", "--store", "aws")[0] == 2  # no --table, no $AIF_USAGE_TABLE


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AIF_USAGE_TABLE", raising=False)
    with mock_aws():
        client = make_client()
        create_tables(client, usage_table=TABLE)
        yield client


def test_dynamodb_report_matches_local(ddb: Any) -> None:
    seed(DynamoLedger(TABLE, ddb))
    assert month_partitions(ddb, TABLE, "2026-11") == [
        ("knowledge", "qa"),
        ("support", "classifier"),
        ("support", "summarizer"),
    ]
    assert month_partitions(ddb, TABLE, "2026-11", team="support") == [
        ("support", "classifier"),
        ("support", "summarizer"),
    ]
    assert len(aws_usage(ddb, TABLE, "2026-10")) == 1
    code, text = run_cli(
        "usage", "--month", "2026-11", "--store", "aws", "--table", TABLE, "--format", "json"
    )
    assert code == 0, text
    check_report(json.loads(text))


def test_dynamodb_pagination(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Partitions and records beyond one page: every Scan and Query is forced to pages of 4 items."""
    ledger = DynamoLedger(TABLE, ddb)
    for i in range(30):
        ledger.record(UsageRecord(f"r{i}", NOV, "t", f"f{i % 3}", "k", "chat", 200, "m", cost_usd=0.01))
    calls = {"scan": 0, "query": 0}
    for name in calls:
        real = getattr(ddb, name)

        def paged(real: Any = real, name: str = name, **kwargs: Any) -> Any:
            calls[name] += 1
            return real(Limit=4, **kwargs)

        monkeypatch.setattr(ddb, name, paged)
    assert len(month_partitions(ddb, TABLE, "2026-11")) == 3
    assert len(aws_usage(ddb, TABLE, "2026-11")) == 30
    assert calls["scan"] > 2 and calls["query"] > 3
