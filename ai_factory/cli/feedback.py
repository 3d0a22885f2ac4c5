"""``ai-factory feedback``: what people thought of a month's answers, per team and feature.

Counts, mean score and the lowest-scored requests with their comments, from the feedback that
``POST /v1/feedback`` stored beside the usage ledger (local SQLite or, with ``--store aws``, the usage
table: one Query per feature-month after the partition Scan described in ``ai_factory.cli.usage_report``).
Comments are end-user text: treat the output as you would the requests themselves.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError
from ai_factory.cli.usage import add_store_arguments, parse_month, usage_table
from aif_gateway.records import FeedbackRecord

DEFAULT_LOWEST = 10
COMMENT_PREVIEW_CHARS = 120


def add_parser(subparsers: Any) -> None:
    """Register ``feedback`` on the top-level parser."""
    feedback = subparsers.add_parser("feedback", help="summarize human feedback per team and feature")
    feedback.add_argument("--month", help="YYYY-MM of the rated requests (default: the current month, UTC)")
    feedback.add_argument("--team", help="only this team")
    feedback.add_argument("--feature", help="only this feature")
    feedback.add_argument(
        "--lowest",
        type=int,
        default=DEFAULT_LOWEST,
        help=f"lowest-scored requests to list ({DEFAULT_LOWEST})",
    )
    feedback.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    add_store_arguments(feedback)
    feedback.set_defaults(run=cmd_feedback)


@dataclass
class FeatureFeedback:
    team: str
    feature: str
    count: int = 0
    score_sum: float = 0.0
    negative: int = 0  # scores below 0.5

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.count if self.count else None


def summarize(records: Iterable[FeedbackRecord], lowest: int) -> dict[str, Any]:
    """Per-feature counts and mean scores, the total, and the ``lowest`` worst-rated requests."""
    records = list(records)
    by_feature: dict[tuple[str, str], FeatureFeedback] = {}
    for record in records:
        entry = by_feature.setdefault(
            (record.team, record.feature), FeatureFeedback(record.team, record.feature)
        )
        entry.count += 1
        entry.score_sum += record.score
        entry.negative += record.score < 0.5
    features = sorted(by_feature.values(), key=lambda f: (f.mean_score or 0.0, f.team, f.feature))
    worst = sorted(records, key=lambda r: (r.score, r.comment is None, r.submitted_at))[: max(0, lowest)]
    total = sum(r.score for r in records)
    return {
        "features": [
            {
                "team": f.team,
                "feature": f.feature,
                "count": f.count,
                "mean_score": round(f.mean_score, 4) if f.mean_score is not None else None,
                "negative": f.negative,
            }
            for f in features
        ],
        "total": {"count": len(records), "mean_score": round(total / len(records), 4) if records else None},
        "lowest": [
            {
                "request_id": r.request_id,
                "team": r.team,
                "feature": r.feature,
                "model": r.model_served,
                "score": r.score,
                "tags": list(r.tags),
                "comment": r.comment,
                "submitted_at": r.submitted_at.isoformat(timespec="seconds"),
            }
            for r in worst
        ],
    }


def aws_feedback(
    client: Any, table: str, month: str, team: str | None, feature: str | None
) -> list[FeedbackRecord]:
    from ai_factory.cli.usage_report import month_partitions, query_partition
    from aif_gateway.dynamo_store import feedback_from_item

    records: list[FeedbackRecord] = []
    for item_team, item_feature in month_partitions(client, table, month, team):
        if feature is not None and item_feature != feature:
            continue
        pk = f"FEEDBACK#{item_team}#{item_feature}#{month}"
        records.extend(feedback_from_item(item) for item in query_partition(client, table, pk))
    return records


def cmd_feedback(args: argparse.Namespace, out: TextIO) -> int:
    month = parse_month(args.month)
    if args.store == "local":
        from ai_factory.local.sqlite_store import SqliteLedger, default_db_path

        ledger = SqliteLedger(default_db_path(args.state_dir))
        records = ledger.list_feedback(month=month, team=args.team, feature=args.feature)
    else:
        from ai_factory.cli.usage_report import dynamodb_client

        table = usage_table(args)
        try:
            records = aws_feedback(dynamodb_client(args.region), table, month, args.team, args.feature)
        except Exception as exc:
            raise CommandError(f"reading feedback from {table} failed: {type(exc).__name__}: {exc}") from exc
    summary = {"month": month, "team": args.team, "feature": args.feature, **summarize(records, args.lowest)}
    if args.format == "json":
        out.write(json.dumps(summary, indent=2) + "\n")
        return 0
    out.write(render_table(summary))
    return 0


def render_table(summary: dict[str, Any]) -> str:
    scope = summary["month"] + "".join(
        f", {name} {summary[name]}" for name in ("team", "feature") if summary[name]
    )
    if not summary["features"]:
        return f"No feedback ({scope}).\n"
    lines = [f"Feedback on requests of {scope}, lowest mean score first:"]
    width = max(len(f"{f['team']}/{f['feature']}") for f in summary["features"])
    lines.append(f"  {'FEATURE'.ljust(width)}  {'COUNT':>7}  {'MEAN':>5}  {'< 0.5':>6}")
    for f in summary["features"]:
        name = f"{f['team']}/{f['feature']}"
        lines.append(f"  {name.ljust(width)}  {f['count']:>7,}  {f['mean_score']:>5.2f}  {f['negative']:>6,}")
    total = summary["total"]
    lines.append(f"  {'TOTAL'.ljust(width)}  {total['count']:>7,}  {total['mean_score']:>5.2f}")
    if summary["lowest"]:
        lines.append("")
        lines.append("Lowest-scored requests:")
        for low in summary["lowest"]:
            comment = (low["comment"] or "").replace("\n", " ")
            if len(comment) > COMMENT_PREVIEW_CHARS:
                comment = comment[: COMMENT_PREVIEW_CHARS - 1] + "…"
            tags = f" [{', '.join(low['tags'])}]" if low["tags"] else ""
            lines.append(
                f"  {low['score']:.2f}  {low['team']}/{low['feature']}  {low['request_id']}{tags}"
                + (f"  {comment!r}" if comment else "")
            )
    return "\n".join(lines) + "\n"
