"""``ai-factory usage --reconcile``: the ledger's Bedrock cost per feature against AWS's own bill.

Each ``AiFeature``'s Bedrock calls go through its application inference profiles, tagged ``Team``,
``Feature`` and ``Owner`` (``ai_factory.constructs.inference_profiles``), so Cost Explorer can split the
Bedrock bill by the same (team, feature) the gateway's ledger uses. This module reads both sides for a
month and lines them up:

* **the bill**: Cost Explorer ``GetCostAndUsage`` for the month, ``UnblendedCost``, filtered to the
  services whose name contains "Bedrock" and grouped by the ``Team`` and ``Feature`` tags (two group
  keys: feature names are unique per team only). Anthropic's and other third-party models are billed
  through AWS Marketplace under their own service names ("Claude ... (Amazon Bedrock Edition)"), so the
  service names are looked up first (``GetDimensionValues``) rather than assumed to be "Amazon
  Bedrock". Cost without both tags (direct model calls, the guardrail, other applications) is one
  "untagged" amount;
* **the ledger**: the month's usage records answered by a Bedrock model of the catalog, model cost only
  (the guardrail's share, ``extra.guardrail_cost_usd``, is billed to the gateway's guardrail, not to the
  feature's profile, so it is shown apart).

Cost Explorer lags: usage appears within about 24 hours and the month stays *estimated* until the bill
is finalised early in the next month; tags count only once activated as cost-allocation tags in the
Billing console, and only for usage after activation. Each Cost Explorer request costs $0.01; one
reconciliation makes 2 or more (one per page).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from aif_gateway.records import UsageRecord

BILL_METRIC = "UnblendedCost"
TAG_KEYS = ("Team", "Feature")
SERVICE_SEARCH = "Bedrock"
CE_REGION = "us-east-1"  # Cost Explorer's API has one endpoint, in us-east-1


@dataclass
class BillCosts:
    """What Cost Explorer says the month's Bedrock usage cost, per (team, feature) tag pair."""

    by_feature: dict[tuple[str, str], float] = field(default_factory=dict)
    untagged: float = 0.0  # Bedrock cost without both tags
    estimated: bool = False  # the month is not final yet
    services: tuple[str, ...] = ()


@dataclass
class ReconcileLine:
    """One feature's cost on both sides. ``None``: the feature is absent from that side."""

    team: str
    feature: str
    ledger_usd: float | None
    bill_usd: float | None

    @property
    def difference_usd(self) -> float:
        """Ledger minus bill: positive when the gateway metered more than AWS billed."""
        return (self.ledger_usd or 0.0) - (self.bill_usd or 0.0)

    @property
    def difference_pct(self) -> float | None:
        """The difference as a percentage of the bill (``None`` when nothing was billed)."""
        return 100 * self.difference_usd / self.bill_usd if self.bill_usd else None

    @property
    def side(self) -> str:
        if self.ledger_usd is None:
            return "bill only"
        if self.bill_usd is None:
            return "ledger only"
        return "both"


@dataclass
class Reconciliation:
    month: str
    team: str | None
    lines: list[ReconcileLine]
    bill: BillCosts
    ledger_guardrail_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "team": self.team,
            "estimated": self.bill.estimated,
            "services": list(self.bill.services),
            "untagged_bill_usd": round(self.bill.untagged, 6),
            "ledger_guardrail_usd": round(self.ledger_guardrail_usd, 6),
            "features": [_row(line) for line in self.lines],
        }


def _row(line: ReconcileLine) -> dict[str, Any]:
    data = asdict(line)
    for name in ("ledger_usd", "bill_usd"):
        data[name] = None if data[name] is None else round(data[name], 6)
    data["difference_usd"] = round(line.difference_usd, 6)
    pct = line.difference_pct
    data["difference_pct"] = None if pct is None else round(pct, 2)
    data["side"] = line.side
    return data


# --- the bill --------------------------------------------------------------------------------------


def month_period(month: str) -> dict[str, str]:
    """Cost Explorer's ``TimePeriod`` for ``YYYY-MM`` (the end date is exclusive)."""
    year, number = (int(part) for part in month.split("-"))
    start = date(year, number, 1)
    end = date(year + 1, 1, 1) if number == 12 else date(year, number + 1, 1)
    return {"Start": start.isoformat(), "End": end.isoformat()}


def bedrock_services(ce: Any, period: Mapping[str, str]) -> tuple[str, ...]:
    """The month's Cost Explorer service names that contain "Bedrock" (Amazon Bedrock itself and the
    Marketplace-billed models' "... (Amazon Bedrock Edition)"), through every page."""
    kwargs: dict[str, Any] = {
        "TimePeriod": dict(period),
        "Dimension": "SERVICE",
        "Context": "COST_AND_USAGE",
        "SearchString": SERVICE_SEARCH,
    }
    names: set[str] = set()
    while True:
        resp = ce.get_dimension_values(**kwargs)
        names.update(
            v["Value"]
            for v in resp.get("DimensionValues", [])
            if SERVICE_SEARCH.lower() in v["Value"].lower()
        )
        token = resp.get("NextPageToken")
        if not token:
            return tuple(sorted(names))
        kwargs["NextPageToken"] = token


def bill_costs(ce: Any, month: str, team: str | None = None) -> BillCosts:
    """The month's Bedrock cost per (Team, Feature) tag pair from Cost Explorer, through every page.

    With ``team``, only that team's tagged cost is read (the untagged amount is then not known: 0).
    """
    period = month_period(month)
    bill = BillCosts(services=bedrock_services(ce, period))
    if not bill.services:
        return bill
    service_filter: dict[str, Any] = {"Dimensions": {"Key": "SERVICE", "Values": list(bill.services)}}
    if team is not None:
        service_filter = {"And": [service_filter, {"Tags": {"Key": "Team", "Values": [team]}}]}
    kwargs: dict[str, Any] = {
        "TimePeriod": period,
        "Granularity": "MONTHLY",
        "Metrics": [BILL_METRIC],
        "Filter": service_filter,
        "GroupBy": [{"Type": "TAG", "Key": key} for key in TAG_KEYS],
    }
    while True:
        resp = ce.get_cost_and_usage(**kwargs)
        for result in resp.get("ResultsByTime", []):
            bill.estimated = bill.estimated or bool(result.get("Estimated"))
            for group in result.get("Groups", []):
                values = [_tag_value(key) for key in group.get("Keys", [])]
                amount = float(group["Metrics"][BILL_METRIC]["Amount"])
                if len(values) == 2 and all(values):
                    pair = (values[0], values[1])
                    bill.by_feature[pair] = bill.by_feature.get(pair, 0.0) + amount
                else:
                    bill.untagged += amount
        token = resp.get("NextPageToken")
        if not token:
            return bill
        kwargs["NextPageToken"] = token


def _tag_value(key: str) -> str:
    """A tag group key is ``"<TagKey>$<value>"``; ``"<TagKey>$"`` marks cost without the tag."""
    return key.split("$", 1)[1] if "$" in key else ""


def ce_client() -> Any:
    import boto3

    return boto3.client("ce", region_name=CE_REGION)


# --- the ledger and the comparison -----------------------------------------------------------------


def ledger_costs(
    records: Iterable[UsageRecord], bedrock_models: Iterable[str]
) -> tuple[dict[tuple[str, str], float], float]:
    """Model cost per (team, feature) of the requests a Bedrock model answered, and the guardrail cost
    of those requests (billed to the gateway's guardrail, not to the feature's profiles)."""
    models = set(bedrock_models)
    costs: dict[tuple[str, str], float] = {}
    guardrail = 0.0
    for record in records:
        if record.model_served not in models:
            continue
        guard = float(record.extra.get("guardrail_cost_usd") or 0.0)
        pair = (record.team, record.feature)
        costs[pair] = costs.get(pair, 0.0) + record.cost_usd - guard
        guardrail += guard
    return costs, guardrail


def reconcile(
    month: str,
    team: str | None,
    ledger: Mapping[tuple[str, str], float],
    bill: BillCosts,
    ledger_guardrail_usd: float = 0.0,
) -> Reconciliation:
    """Both sides per feature: the largest absolute difference first."""
    pairs = set(ledger) | set(bill.by_feature)
    lines = [ReconcileLine(t, f, ledger.get((t, f)), bill.by_feature.get((t, f))) for t, f in pairs]
    lines.sort(key=lambda line: (-abs(line.difference_usd), line.team, line.feature))
    return Reconciliation(month, team, lines, bill, ledger_guardrail_usd)


# --- rendering -------------------------------------------------------------------------------------

_HEADERS = ("TEAM", "FEATURE", "LEDGER USD", "BILL USD", "DIFF USD", "DIFF %", "NOTE")


def _cells(line: ReconcileLine) -> list[str]:
    pct = line.difference_pct
    return [
        line.team,
        line.feature,
        "-" if line.ledger_usd is None else f"{line.ledger_usd:,.4f}",
        "-" if line.bill_usd is None else f"{line.bill_usd:,.4f}",
        f"{line.difference_usd:+,.4f}",
        "n/a" if pct is None else f"{pct:+.1f}%",
        "" if line.side == "both" else line.side,
    ]


def render_table(result: Reconciliation) -> str:
    scope = result.month + (f", team {result.team}" if result.team else "")
    state = "estimated, not final" if result.bill.estimated else "final"
    head = [f"Bedrock cost by feature, ledger vs AWS bill ({scope}; bill {state}):"]
    if not result.bill.services:
        head.append("Cost Explorer shows no Bedrock service for the month (no usage yet, or not yet billed).")
    if not result.lines:
        head.append("No feature has Bedrock cost on either side.")
    else:
        rows = [list(_HEADERS), *(_cells(line) for line in result.lines)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
        for row in rows:
            parts = [
                cell.ljust(w) if i in (0, 1, 6) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ]
            head.append("  ".join(parts).rstrip())
    head.append("")
    head.append("DIFF = ledger - bill; DIFF % of the bill.")
    if result.team is None:
        head.append(
            f"Bedrock cost on the bill without Team and Feature tags: ${result.bill.untagged:,.4f} "
            "(direct model calls, the gateway's guardrail, other applications)."
        )
    head.append(
        f"Guardrail cost in the ledger (billed to the gateway's guardrail, left out above): "
        f"${result.ledger_guardrail_usd:,.4f}."
    )
    return "\n".join(head) + "\n"


def render_json(result: Reconciliation) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def render_csv(result: Reconciliation) -> str:
    columns = ("team", "feature", "ledger_usd", "bill_usd", "difference_usd", "difference_pct", "side")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for line in result.lines:
        row = _row(line)
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return buffer.getvalue()
