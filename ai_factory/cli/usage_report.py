"""Which features are responsible for the model bill: tokens and cost per team, feature and model.

The report is built from the usage ledger's audit records (one per request that reached a model):

* local mode: ``SqliteLedger.list_usage`` (the ``ai-factory serve`` database);
* AWS: the gateway's DynamoDB usage table. The month's team/feature partitions are found with one
  Scan of the table filtered to the month's audit records (``LEDGER#{team}#{feature}#{month}``, keys
  only), then each partition is read with a Query.

Cost of the AWS path, so nobody is surprised: a filtered Scan still *reads* (and bills) every item in
the table, whatever the filter keeps — about 0.5 read units per 4 KB on-demand, eventually consistent;
with the ledger's ~0.6 KB items, 10 million stored records are ~1.5 M read units (~$0.20 at
$0.125 per million) and take minutes. The Queries then read only the month's records of the chosen
features (1 million records ~ 75 k read units). Run it daily or monthly, not in a loop.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from aif_gateway.dynamo_store import usage_from_item
from aif_gateway.records import UsageRecord

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
NO_MODEL = "(no model)"  # requests whose every model failed: recorded with their attempts, no tokens


@dataclass
class UsageLine:
    """Totals of one (team, feature, model) — or of a coarser group when some of them are ``""``."""

    team: str
    feature: str
    model: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, record: UsageRecord) -> None:
        self.requests += 1
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.cache_read_tokens += record.cache_read_tokens
        self.cache_write_tokens += record.cache_write_tokens
        self.cost_usd += record.cost_usd


@dataclass
class UsageReport:
    """Lines per (team, feature, model) and per (team, feature), most expensive first, and the total."""

    month: str | None
    team: str | None
    lines: list[UsageLine] = field(default_factory=list)
    features: list[UsageLine] = field(default_factory=list)
    total: UsageLine = field(default_factory=lambda: UsageLine("", "", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "team": self.team,
            "lines": [_rounded(line) for line in self.lines],
            "features": [_rounded(line) for line in self.features],
            "total": _rounded(self.total),
        }


def _rounded(line: UsageLine) -> dict[str, Any]:
    data = asdict(line)
    data["cost_usd"] = round(line.cost_usd, 6)
    return data


def summarize_usage(
    records: Iterable[UsageRecord], month: str | None = None, team: str | None = None
) -> UsageReport:
    """Aggregate usage records (already filtered to ``month``/``team`` by the caller)."""
    by_model: dict[tuple[str, str, str], UsageLine] = {}
    by_feature: dict[tuple[str, str], UsageLine] = {}
    report = UsageReport(month, team)
    for record in records:
        model = record.model_served or NO_MODEL
        key = (record.team, record.feature, model)
        by_model.setdefault(key, UsageLine(*key)).add(record)
        by_feature.setdefault((record.team, record.feature), UsageLine(record.team, record.feature, "")).add(
            record
        )
        report.total.add(record)

    def order(line: UsageLine) -> tuple[float, str, str, str]:
        return (-line.cost_usd, line.team, line.feature, line.model)

    report.lines = sorted(by_model.values(), key=order)
    report.features = sorted(by_feature.values(), key=order)
    return report


# --- sources ----------------------------------------------------------------------------------------


def month_partitions(client: Any, table: str, month: str, team: str | None = None) -> list[tuple[str, str]]:
    """(team, feature) pairs with audit records in ``month``: one paginated, filtered Scan (see the module
    docstring for what it costs; a Scan reads the same pages whatever its filter keeps)."""
    prefix = f"LEDGER#{team}#" if team else "LEDGER#"
    suffix = f"#{month}"
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "begins_with(pk, :prefix) AND contains(pk, :month)",
        "ExpressionAttributeValues": {":prefix": {"S": prefix}, ":month": {"S": suffix}},
        "ProjectionExpression": "pk",
    }
    pairs: set[tuple[str, str]] = set()
    while True:
        resp = client.scan(**kwargs)
        for item in resp.get("Items", []):
            pk = item["pk"]["S"]
            if pk.endswith(suffix):  # names hold no "#", so the month is the key's last part
                _, item_team, item_feature, _ = pk.split("#", 3)
                pairs.add((item_team, item_feature))
        if "LastEvaluatedKey" not in resp:
            return sorted(pairs)
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def query_partition(client: Any, table: str, pk: str) -> Iterator[dict[str, Any]]:
    """Every item of one partition (paginated Query)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
    }
    while True:
        resp = client.query(**kwargs)
        yield from resp.get("Items", [])
        if "LastEvaluatedKey" not in resp:
            return
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def aws_usage(client: Any, table: str, month: str, team: str | None = None) -> list[UsageRecord]:
    """The month's usage records from the DynamoDB usage table (optionally one team's)."""
    records: list[UsageRecord] = []
    for item_team, feature in month_partitions(client, table, month, team):
        pk = f"LEDGER#{item_team}#{feature}#{month}"
        records.extend(usage_from_item(item) for item in query_partition(client, table, pk))
    return records


def dynamodb_client(region: str | None = None) -> Any:
    """A DynamoDB client for the CLI (the SDK's credentials; region from ``--region`` or the SDK's)."""
    import boto3

    return boto3.client("dynamodb", region_name=region) if region else boto3.client("dynamodb")


# --- rendering --------------------------------------------------------------------------------------

_COLUMNS = ("team", "feature", "model", "requests", *TOKEN_FIELDS, "cost_usd")
_HEADERS = (
    "TEAM",
    "FEATURE",
    "MODEL",
    "REQUESTS",
    "INPUT",
    "OUTPUT",
    "CACHE READ",
    "CACHE WRITE",
    "COST USD",
)


def render_json(report: UsageReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def render_csv(report: UsageReport) -> str:
    """One row per (team, feature, model), most expensive first; spreadsheets sum the rest."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for line in report.lines:
        row = _rounded(line)
        writer.writerow([row[c] for c in _COLUMNS])
    return buffer.getvalue()


def render_table(report: UsageReport) -> str:
    """Per model, then per feature, then the total: aligned columns for a terminal."""
    scope = f"{report.month or 'all months'}" + (f", team {report.team}" if report.team else "")
    if not report.lines:
        return f"No usage recorded ({scope}).\n"

    def cells(line: UsageLine) -> list[str]:
        return [
            line.team,
            line.feature,
            line.model,
            f"{line.requests:,}",
            *(f"{getattr(line, name):,}" for name in TOKEN_FIELDS),
            f"{line.cost_usd:,.4f}",
        ]

    rows = [list(_HEADERS), *(cells(line) for line in report.lines)]
    rows.append(["TOTAL", "", "", *cells(report.total)[3:]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]

    def fmt(row: list[str]) -> str:
        # Text columns left-aligned, numbers right-aligned.
        parts = [
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [f"Model usage and cost ({scope}), most expensive first:", fmt(rows[0])]
    lines.extend(fmt(row) for row in rows[1:-1])
    lines.append(fmt(rows[-1]))
    lines.append("")
    lines.append("By feature:")
    total = report.total.cost_usd or 1.0
    for line in report.features:
        share = 100 * line.cost_usd / total if report.total.cost_usd else 0.0
        lines.append(
            f"  {line.team}/{line.feature}: ${line.cost_usd:,.4f} ({share:.1f}%), "
            f"{line.requests:,} request{'s' if line.requests != 1 else ''}"
        )
    return "\n".join(lines) + "\n"
