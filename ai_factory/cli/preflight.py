"""``ai-factory preflight``: is this account and region ready for the factory's first deploy?

    ai-factory preflight [--region R] [--profile P] [--qualifier Q] [--catalog PATH] [--json]
                         [--gateway-reserved-concurrency N|none]

Read-only (``ai_factory.preflight`` lists every check and the API it calls), with the caller's
credentials. Exit codes: 0 nothing blocks a deploy (warnings may remain), 1 something blocks it (a
``FAIL`` line) or the checks could not run, 2 invalid usage.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError
from aif_gateway.contract import DEFAULT_GATEWAY_RESERVED_CONCURRENCY

_MARK = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "unknown": "??"}


def add_parser(subparsers: Any) -> None:
    """Register ``preflight`` on the top-level parser."""
    preflight = subparsers.add_parser(
        "preflight", help="read-only checks of an AWS account before the first deploy (docs/deploy.md)"
    )
    preflight.add_argument("--region", help="region to check (default: the AWS SDK's)")
    preflight.add_argument("--profile", help="AWS profile (default: the AWS SDK's credential chain)")
    preflight.add_argument(
        "--qualifier", default="hnb659fds", help="CDK bootstrap qualifier (default: hnb659fds)"
    )
    preflight.add_argument(
        "--toolkit-stack-name", default="CDKToolkit", help="CDK bootstrap stack (default: CDKToolkit)"
    )
    preflight.add_argument("--catalog", help="model catalog YAML (default: the built-in catalog)")
    preflight.add_argument("--json", action="store_true", help="print the report as JSON")
    preflight.add_argument(
        "--gateway-reserved-concurrency",
        type=_reserved,
        default=DEFAULT_GATEWAY_RESERVED_CONCURRENCY,
        help="the LlmGateway reserved_concurrency the app deploys with ('none': unreserved; default "
        f"{DEFAULT_GATEWAY_RESERVED_CONCURRENCY})",
    )
    preflight.set_defaults(run=cmd_preflight)


def _reserved(value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or 'none', got {value!r}")
    return number


def cmd_preflight(args: argparse.Namespace, out: TextIO, session: Any = None) -> int:
    """Run the checks; ``session`` (a boto3 Session) is for tests."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from ai_factory.cli.models import load_catalog
    from ai_factory.preflight import PreflightError, run_preflight

    catalog = load_catalog(args.catalog)
    try:
        session = session or boto3.Session(profile_name=args.profile, region_name=args.region)
    except BotoCoreError as exc:  # unknown profile
        raise UsageError(f"--profile: {exc}") from exc
    try:
        report = run_preflight(
            session,
            catalog,
            qualifier=args.qualifier,
            toolkit_stack=args.toolkit_stack_name,
            gateway_reserved_concurrency=getattr(
                args, "gateway_reserved_concurrency", DEFAULT_GATEWAY_RESERVED_CONCURRENCY
            ),
        )
    except PreflightError as exc:
        raise CommandError(str(exc)) from exc
    except BotoCoreError as exc:  # no credentials, endpoint unreachable
        raise CommandError(f"cannot reach AWS: {exc}") from exc
    if args.json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        _print(report, out)
    return 1 if report.blocking else 0


def _print(report: Any, out: TextIO) -> None:
    print(f"Preflight for account {report.account}, region {report.region} (read-only)", file=out)
    width = max((len(f.subject) for f in report.findings), default=10)
    for finding in report.findings:
        mark = _MARK[finding.status.value]
        print(f"  {mark:<4}  {finding.subject:<{width}}  {finding.message}", file=out)
        if finding.fix and finding.status.value != "ok":
            print(f"        {'':<{width}}  fix: {finding.fix}", file=out)
    counts = report.to_dict()["counts"]
    verdict = (
        "NOT READY: fix the FAIL lines before `cdk deploy`"
        if report.blocking
        else "ready to deploy" + (" (see the warnings)" if counts["warn"] or counts["unknown"] else "")
    )
    summary = f"{counts['fail']} blocking, {counts['warn']} warning(s), {counts['unknown']} not checkable"
    print(f"{summary}: {verdict}", file=out)
