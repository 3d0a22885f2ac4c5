"""``ai-factory usage --reconcile``: the ledger's Bedrock cost per feature against Cost Explorer.

Cost Explorer is answered by a botocore Stubber, which checks every request and response against the
real API model: the service lookup, the grouped cost query and their NextPageToken pagination.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ai_factory.cli import usage_reconcile
from ai_factory.cli.main import main
from ai_factory.cli.usage_reconcile import bill_costs, ledger_costs, month_period, reconcile
from ai_factory.local.sqlite_store import SqliteLedger
from aif_gateway.records import UsageRecord

NOV = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
PERIOD = {"Start": "2026-11-01", "End": "2026-12-01"}
SERVICES = [
    "Amazon Bedrock",
    "Claude Haiku 4.5 (Amazon Bedrock Edition)",
    "Claude Sonnet 4.5 (Amazon Bedrock Edition)",
]
GROUP_BY = [{"Type": "TAG", "Key": "Team"}, {"Type": "TAG", "Key": "Feature"}]


def dimension_page(values: list[str], token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {
        "DimensionValues": [{"Value": v, "Attributes": {}} for v in values],
        "ReturnSize": len(values),
        "TotalSize": len(values),
    }
    if token:
        page["NextPageToken"] = token
    return page


def group(team: str, feature: str, amount: str) -> dict[str, Any]:
    return {
        "Keys": [f"Team${team}", f"Feature${feature}"],
        "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}},
    }


def cost_page(
    groups: list[dict[str, Any]], token: str | None = None, estimated: bool = True
) -> dict[str, Any]:
    page: dict[str, Any] = {
        "GroupDefinitions": GROUP_BY,
        "ResultsByTime": [{"TimePeriod": PERIOD, "Total": {}, "Groups": groups, "Estimated": estimated}],
        "DimensionValueAttributes": [],
    }
    if token:
        page["NextPageToken"] = token
    return page


def cost_request(token: str | None = None, team: str | None = None) -> dict[str, Any]:
    service = {"Dimensions": {"Key": "SERVICE", "Values": SERVICES}}
    request: dict[str, Any] = {
        "TimePeriod": PERIOD,
        "Granularity": "MONTHLY",
        "Metrics": ["UnblendedCost"],
        "Filter": service
        if team is None
        else {"And": [service, {"Tags": {"Key": "Team", "Values": [team]}}]},
        "GroupBy": GROUP_BY,
    }
    if token:
        request["NextPageToken"] = token
    return request


def dimension_request(token: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TimePeriod": PERIOD,
        "Dimension": "SERVICE",
        "Context": "COST_AND_USAGE",
        "SearchString": "Bedrock",
    }
    if token:
        request["NextPageToken"] = token
    return request


@pytest.fixture
def ce() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("ce", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def stub_bill(stubber: Stubber, team: str | None = None) -> None:
    """Two pages of service names, then two pages of cost groups (the real API's pagination)."""
    stubber.add_response("get_dimension_values", dimension_page(SERVICES[:2], "d2"), dimension_request())
    # Only names that contain "Bedrock" go into the filter, whatever else the search returns.
    stubber.add_response(
        "get_dimension_values", dimension_page([SERVICES[2], "AWS Cost Explorer"]), dimension_request("d2")
    )
    stubber.add_response(
        "get_cost_and_usage",
        cost_page([group("support", "summarizer", "0.0080"), group("knowledge", "qa", "0.0250")], "c2"),
        cost_request(team=team),
    )
    stubber.add_response(
        "get_cost_and_usage",
        cost_page(
            [
                group("support", "summarizer", "0.0005"),  # the same feature on a later page adds up
                group("support", "drafter", "0.0100"),  # on the bill only
                {
                    "Keys": ["Team$", "Feature$"],
                    "Metrics": {"UnblendedCost": {"Amount": "0.4", "Unit": "USD"}},
                },
            ]
        ),
        cost_request("c2", team=team),
    )


def test_month_period_spans_the_month_with_an_exclusive_end() -> None:
    assert month_period("2026-11") == PERIOD
    assert month_period("2026-12") == {"Start": "2026-12-01", "End": "2027-01-01"}


def test_bill_costs_read_every_page_grouped_by_team_and_feature(ce: tuple[Any, Stubber]) -> None:
    client, stubber = ce
    stub_bill(stubber)
    bill = bill_costs(client, "2026-11")
    assert bill.services == tuple(SERVICES)
    assert bill.by_feature == pytest.approx(
        {("support", "summarizer"): 0.0085, ("knowledge", "qa"): 0.025, ("support", "drafter"): 0.01}
    )
    assert bill.untagged == pytest.approx(0.4) and bill.estimated


def test_no_bedrock_service_in_the_month_asks_for_no_costs(ce: tuple[Any, Stubber]) -> None:
    client, stubber = ce
    stubber.add_response("get_dimension_values", dimension_page([]), dimension_request())
    bill = bill_costs(client, "2026-11")
    assert bill.services == () and bill.by_feature == {}


def records() -> list[UsageRecord]:
    def rec(
        i: int, team: str, feature: str, model: str | None, cost: float, guard: float = 0.0
    ) -> UsageRecord:
        extra = {"guardrail_cost_usd": str(guard)} if guard else {}
        return UsageRecord(
            f"r{i}", NOV, team, feature, "k", "chat", 200, model_served=model, cost_usd=cost, extra=extra
        )

    return [
        rec(1, "support", "summarizer", "claude-haiku-4-5", 0.006, guard=0.001),  # model cost 0.005
        rec(2, "support", "summarizer", "nova-lite", 0.002),
        rec(3, "knowledge", "qa", "claude-sonnet-4-5", 0.03),
        rec(4, "knowledge", "qa", "gpt-4o", 0.5),  # OpenAI: not on the Bedrock bill
        rec(5, "support", "classifier", "nova-lite", 0.001),  # ledger only
        rec(6, "knowledge", "qa", None, 0.0),  # every model failed
    ]


BEDROCK = ["claude-haiku-4-5", "claude-sonnet-4-5", "nova-lite", "titan-embed-v2"]


def test_ledger_side_counts_bedrock_model_cost_only() -> None:
    costs, guardrail = ledger_costs(records(), BEDROCK)
    assert costs == pytest.approx(
        {("support", "summarizer"): 0.007, ("knowledge", "qa"): 0.03, ("support", "classifier"): 0.001}
    )
    assert guardrail == pytest.approx(0.001)


def test_reconciliation_gives_the_difference_per_feature_and_one_sided_features(
    ce: tuple[Any, Stubber],
) -> None:
    client, stubber = ce
    stub_bill(stubber)
    ledger, guardrail = ledger_costs(records(), BEDROCK)
    result = reconcile("2026-11", None, ledger, bill_costs(client, "2026-11"), guardrail)
    rows = {(r["team"], r["feature"]): r for r in result.to_dict()["features"]}
    assert rows[("knowledge", "qa")] == {
        "team": "knowledge",
        "feature": "qa",
        "ledger_usd": 0.03,
        "bill_usd": 0.025,
        "difference_usd": 0.005,
        "difference_pct": 20.0,
        "side": "both",
    }
    assert rows[("support", "summarizer")]["difference_pct"] == pytest.approx(-17.65, abs=0.01)
    assert rows[("support", "drafter")]["side"] == "bill only"
    assert rows[("support", "drafter")]["ledger_usd"] is None
    assert rows[("support", "classifier")]["side"] == "ledger only"
    assert rows[("support", "classifier")]["difference_pct"] is None
    # Largest absolute difference first.
    assert (result.lines[0].team, result.lines[0].feature) == ("support", "drafter")


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    ledger = SqliteLedger(tmp_path / "local.db")
    for record in records():
        ledger.record(record)
    return tmp_path


def test_cli_reconcile_table_json_and_csv(
    ce: tuple[Any, Stubber], seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stubber = ce
    monkeypatch.setattr(usage_reconcile, "ce_client", lambda: client)
    base = ("usage", "--reconcile", "--month", "2026-11", "--state-dir", str(seeded))

    stub_bill(stubber)
    code, text = run_cli(*base)
    assert code == 0, text
    lines = text.splitlines()
    assert "bill estimated, not final" in lines[0]
    assert lines[1].split()[:4] == ["TEAM", "FEATURE", "LEDGER", "USD"]
    qa = next(line for line in lines if line.startswith("knowledge"))
    assert qa.split() == ["knowledge", "qa", "0.0300", "0.0250", "+0.0050", "+20.0%"]
    drafter = next(line for line in lines if "drafter" in line)
    assert drafter.split()[2:] == ["-", "0.0100", "-0.0100", "-100.0%", "bill", "only"]
    assert "without Team and Feature tags: $0.4000" in text
    assert "Guardrail cost in the ledger" in text and "$0.0010" in text

    stub_bill(stubber)
    code, text = run_cli(*base, "--format", "json")
    assert code == 0
    data = json.loads(text)
    assert data["estimated"] is True and data["untagged_bill_usd"] == 0.4
    assert {(f["team"], f["feature"]) for f in data["features"]} == {
        ("support", "summarizer"),
        ("support", "drafter"),
        ("support", "classifier"),
        ("knowledge", "qa"),
    }

    stub_bill(stubber, team="support")
    code, text = run_cli(*base, "--format", "csv", "--team", "support")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["feature"] for r in rows} >= {"summarizer", "classifier"}
    assert next(r for r in rows if r["feature"] == "classifier")["bill_usd"] == ""


def test_cli_reconcile_reports_cost_explorer_errors_precisely(
    ce: tuple[Any, Stubber], seeded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, stubber = ce
    monkeypatch.setattr(usage_reconcile, "ce_client", lambda: client)
    stubber.add_client_error(
        "get_dimension_values", "AccessDeniedException", "not authorized to perform ce:GetDimensionValues"
    )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["usage", "--reconcile", "--month", "2026-11", "--state-dir", str(seeded)], out=out)
    assert code == 1
    assert "reading Cost Explorer failed: ClientError" in err.getvalue() + out.getvalue()
    assert "ce:GetDimensionValues" in err.getvalue() + out.getvalue()
