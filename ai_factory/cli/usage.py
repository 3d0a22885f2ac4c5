"""``ai-factory usage``: tokens and cost per team, feature and model for a month, from the usage ledger.

The answer to "which features are responsible for the model bill". Reads the local SQLite ledger
(``ai-factory serve``) or, with ``--store aws``, the deployed gateway's DynamoDB usage table (see
``ai_factory.cli.usage_report`` for what that read costs). ``--reconcile`` compares the ledger's Bedrock
cost per feature with AWS's bill in Cost Explorer (``ai_factory.cli.usage_reconcile``).
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError
from aif_gateway.contract import USAGE_TABLE_ENV
from aif_gateway.records import month_of, utc_now

MONTH_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--store local|aws``, ``--state-dir``, ``--table`` and ``--region`` (shared with ``feedback``)."""
    group = parser.add_argument_group("usage ledger")
    group.add_argument(
        "--store",
        choices=("local", "aws"),
        default="local",
        help="local: the SQLite ledger ai-factory serve uses (default); aws: the deployed usage table",
    )
    group.add_argument("--state-dir", help="local state folder (default: $AI_FACTORY_HOME or ~/.ai-factory)")
    group.add_argument("--table", help=f"DynamoDB usage table for --store aws (default: ${USAGE_TABLE_ENV})")
    group.add_argument("--region", help="AWS region of the usage table (default: the AWS SDK's)")


def add_parser(subparsers: Any) -> None:
    """Register ``usage`` on the top-level parser."""
    usage = subparsers.add_parser(
        "usage", help="tokens and cost per team, feature and model for a month (the model bill)"
    )
    usage.add_argument("--month", help="YYYY-MM (default: the current month, UTC)")
    usage.add_argument("--team", help="only this team")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    usage.add_argument(
        "--reconcile",
        action="store_true",
        help="compare the ledger's Bedrock cost per feature with Cost Explorer's cost by the Team and "
        "Feature tags (AWS credentials with ce:GetCostAndUsage; $0.01 per Cost Explorer request)",
    )
    add_store_arguments(usage)
    usage.set_defaults(run=cmd_usage)


def parse_month(value: str | None) -> str:
    """``--month`` checked, defaulting to the current UTC month."""
    if value is None:
        return month_of(utc_now())
    if not MONTH_PATTERN.match(value):
        raise UsageError(f"--month must be YYYY-MM (e.g. 2026-11), got {value!r}")
    return value


def usage_table(args: argparse.Namespace) -> str:
    table = args.table or os.environ.get(USAGE_TABLE_ENV)
    if not table:
        raise UsageError(f"--table is required with --store aws (or set {USAGE_TABLE_ENV})")
    return table


def cmd_usage(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.cli.usage_report import (
        aws_usage,
        dynamodb_client,
        render_csv,
        render_json,
        render_table,
        summarize_usage,
    )

    month = parse_month(args.month)
    if args.store == "local":
        from ai_factory.local.sqlite_store import SqliteLedger, default_db_path

        records = SqliteLedger(default_db_path(args.state_dir)).list_usage(month=month, team=args.team)
    else:
        table = usage_table(args)
        try:
            records = aws_usage(dynamodb_client(args.region), table, month, args.team)
        except Exception as exc:  # botocore: no credentials, no table, access denied
            raise CommandError(f"reading usage from {table} failed: {type(exc).__name__}: {exc}") from exc
    if args.reconcile:
        return _reconcile(args, month, records, out)
    report = summarize_usage(records, month, args.team)
    render = {"table": render_table, "csv": render_csv, "json": render_json}[args.format]
    out.write(render(report))
    if args.format == "json":
        out.write("\n")
    return 0


def _reconcile(args: argparse.Namespace, month: str, records: list[Any], out: TextIO) -> int:
    """``--reconcile``: the ledger's Bedrock cost per feature next to Cost Explorer's."""
    from ai_factory.catalog.model_catalog import ModelCatalog
    from ai_factory.cli import usage_reconcile

    catalog = ModelCatalog.load()
    bedrock_models = [m.name for m in catalog.models.values() if m.provider == "bedrock"]
    ledger, guardrail = usage_reconcile.ledger_costs(records, bedrock_models)
    try:
        bill = usage_reconcile.bill_costs(usage_reconcile.ce_client(), month, args.team)
    except Exception as exc:  # botocore: no credentials, access denied, Cost Explorer not enabled
        raise CommandError(f"reading Cost Explorer failed: {type(exc).__name__}: {exc}") from exc
    result = usage_reconcile.reconcile(month, args.team, ledger, bill, guardrail)
    render = {
        "table": usage_reconcile.render_table,
        "csv": usage_reconcile.render_csv,
        "json": usage_reconcile.render_json,
    }[args.format]
    out.write(render(result))
    return 0
