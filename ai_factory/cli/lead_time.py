"""``ai-factory lead-time``: how long each feature took from its first appearance to production.

Features and their prompts come from a synthesized cloud assembly (``--assembly``, the ``AiFeature``
metadata). First appearance: the CI ledger (``--first-seen``; ``--record`` adds the assembly's new
features with the current time, which is what CI runs after each synth) and, with ``--registry-table``,
the platform feature registry's first deploy (the earlier of the two counts). Production: the prompt
registry's deployment records (``--tracking-uri``). ``--publish`` puts ``LeadTimeDays`` per feature into
CloudWatch for the platform dashboard (``ai_factory.prompts.lead_time`` holds the computation).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError
from aif_gateway import contract


def add_parser(subparsers: Any) -> None:
    """Register ``lead-time`` on the top-level parser."""
    cmd = subparsers.add_parser(
        "lead-time", help="days from a feature's first appearance to its first prompt in production"
    )
    cmd.add_argument("--assembly", default="cdk.out", help="synthesized cloud assembly (default: cdk.out)")
    cmd.add_argument(
        "--first-seen", help="JSON ledger of first synths, 'team/feature': ISO time (CI artifact)"
    )
    cmd.add_argument("--record", action="store_true", help="add the assembly's new features to --first-seen")
    cmd.add_argument("--registry-table", help="the platform's feature registry (DynamoDB) for first deploys")
    cmd.add_argument("--region", help="AWS region of the registry table and CloudWatch")
    cmd.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI of the prompt registry (default: $MLFLOW_TRACKING_URI or sqlite in "
        "$AI_FACTORY_HOME)",
    )
    cmd.add_argument("--team", help="only this team")
    cmd.add_argument("--as-of", help="ISO time open lead times are measured to (default: now)")
    cmd.add_argument(
        "--publish", action="store_true", help=f"put {contract.LEAD_TIME_DAYS.name} in CloudWatch"
    )
    cmd.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    cmd.set_defaults(run=cmd_lead_time)


def assembly_features(folder: Path) -> dict[tuple[str, str], list[str]]:
    """``{(team, feature): [prompt names]}`` of every ``AiFeature`` in the assembly."""
    from ai_factory.cli.lineage import assembly_metadata

    if not folder.is_dir():
        raise UsageError(f"--assembly: {folder} is not a synthesized cloud assembly (run cdk synth first)")
    features: dict[tuple[str, str], list[str]] = {}
    for _, kind, data in assembly_metadata(folder):
        if kind != contract.PROMPTS_METADATA_TYPE or not isinstance(data, list):
            continue
        for item in data:
            if not isinstance(item, Mapping):
                continue
            names = features.setdefault((str(item.get("team")), str(item.get("feature"))), [])
            if item.get("name") and item["name"] not in names:
                names.append(str(item["name"]))
    return features


def registry_first_deploys(table: str, region: str | None) -> dict[tuple[str, str], datetime]:
    """``first_deployed_at`` of every feature in the platform's registry."""
    import boto3
    from feature_key_provisioner.team_accounts import FeatureRegistry

    from ai_factory.prompts.lead_time import parse_time

    registry = FeatureRegistry(boto3.client("dynamodb", region_name=region), table)
    out = {}
    for entry in registry.entries():
        if entry.get("first_deployed_at"):
            key = (str(entry["team"]), str(entry["feature"]))
            out[key] = parse_time(str(entry["first_deployed_at"]), f"registry {entry['feature_id']}")
    return out


def cmd_lead_time(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.prompts.lead_time import FirstSeenLedger, lead_times, parse_time, summarize

    now = datetime.now(UTC)
    try:
        as_of = parse_time(args.as_of, "--as-of") if args.as_of else now
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.record and not args.first_seen:
        raise UsageError("--record needs --first-seen (the ledger file to add to)")
    if not args.first_seen and not args.registry_table:
        raise UsageError(
            "give --first-seen and/or --registry-table: where features' first appearance is kept"
        )
    features = assembly_features(Path(args.assembly))
    if args.team:
        features = {k: v for k, v in features.items() if k[0] == args.team}

    first_seen: dict[tuple[str, str], datetime] = {}
    if args.first_seen:
        try:
            ledger = FirstSeenLedger(Path(args.first_seen))
        except ValueError as exc:
            raise UsageError(f"--first-seen: {exc}") from None
        if args.record:
            ledger.record(features, now)
            ledger.save()
        for feature_id, when in ledger.entries.items():
            team, _, name = feature_id.partition("/")
            first_seen[(team, name)] = when
    if args.registry_table:
        for key, when in registry_first_deploys(args.registry_table, args.region).items():
            first_seen[key] = min(when, first_seen.get(key, when))

    from ai_factory.prompts.registry import PromptNotFound, PromptRegistry

    registry = PromptRegistry(args.tracking_uri)

    def deployments(name: str) -> Sequence[Any]:
        try:
            return registry.deployments(name, alias="production")
        except PromptNotFound:
            return []

    results = lead_times(features, first_seen, deployments, as_of)
    summaries = summarize(results)
    if args.publish:
        publish(results, args.region)
    if args.format == "json":
        out.write(
            json.dumps(
                {"features": [r.to_dict() for r in results], "teams": [s.to_dict() for s in summaries]},
                indent=2,
            )
            + "\n"
        )
        return 0
    out.write(render(results, summaries))
    return 0


def render(results: Sequence[Any], summaries: Sequence[Any]) -> str:
    if not results:
        return "No features with a recorded first appearance.\n"
    lines = [f"{'FEATURE':<36} {'FIRST SEEN':<20} {'PRODUCTION':<20} {'DAYS':>7}"]
    for r in results:
        production = r.production_at.strftime("%Y-%m-%d %H:%M") if r.production_at else "not yet"
        days = f"{r.days:.1f}" + ("" if r.in_production else "+")
        name = f"{r.team}/{r.feature}"
        seen = r.first_seen.strftime("%Y-%m-%d %H:%M")
        lines.append(f"{name:<36} {seen:<20} {production:<20} {days:>7}")
    lines.append("")
    lines.append(f"{'TEAM':<20} {'FEATURES':>8} {'IN PROD':>8} {'MEDIAN':>8} {'WORST':>8}  WORST FEATURE")
    for s in summaries:
        median = "-" if s.median_days is None else f"{s.median_days:.1f}"
        worst = "-" if s.worst_days is None else f"{s.worst_days:.1f}"
        label = "all teams" if s.team == "*" else s.team
        counts = f"{s.features:>8} {s.in_production:>8}"
        lines.append(f"{label:<20} {counts} {median:>8} {worst:>8}  {s.worst_feature or '-'}")
    lines.append("Days with '+': not in production yet (age so far; not in the median or worst).")
    return "\n".join(lines) + "\n"


def publish(results: Sequence[Any], region: str | None) -> None:
    """``LeadTimeDays`` (Team, Feature) for each feature in production, for the platform dashboard."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    metric = contract.LEAD_TIME_DAYS
    data = [
        {
            "MetricName": metric.name,
            "Dimensions": [
                {"Name": contract.TEAM, "Value": r.team},
                {"Name": contract.FEATURE, "Value": r.feature},
            ],
            "Value": round(r.days, 3),
            "Unit": metric.unit,
        }
        for r in results
        if r.in_production
    ]
    client = boto3.client("cloudwatch", region_name=region)
    try:
        for start in range(0, len(data), 1000):
            client.put_metric_data(Namespace=metric.namespace, MetricData=data[start : start + 1000])
    except (BotoCoreError, ClientError) as exc:
        raise CommandError(f"--publish: CloudWatch refused the lead-time metrics: {exc}") from exc
