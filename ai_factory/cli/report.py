"""``ai-factory report``: the security and compliance report of a synthesized factory.

Reads a cloud assembly (``cdk.out``) and writes ``compliance-report.md`` and/or
``compliance-report.html`` into ``--out``; with ``--diff OTHER_CDK_OUT`` also ``compliance-diff.*``:
what changed in access and data flows from OTHER (the base, e.g. main) to ``--cdk-out`` (this change).
See docs/compliance.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError

REPORT_NAME = "compliance-report"
DIFF_NAME = "compliance-diff"


def add_parser(subparsers: Any) -> None:
    """Register ``report`` on the top-level parser."""
    report = subparsers.add_parser(
        "report", help="security and compliance report (Markdown + HTML) from a synthesized cdk.out"
    )
    report.add_argument("--cdk-out", default="cdk.out", help="cloud assembly folder (default: cdk.out)")
    report.add_argument("--out", default=".", help="folder to write the report files into (default: .)")
    report.add_argument(
        "--diff",
        metavar="OTHER_CDK_OUT",
        help="also report what changed from this (base) assembly to --cdk-out",
    )
    report.add_argument("--format", choices=("md", "html", "both"), default="both", help="default: both")
    report.add_argument(
        "--fail-on-findings",
        action="store_true",
        help="exit 1 when the assembly has a public (anonymous) endpoint or an unacknowledged IAM wildcard",
    )
    report.set_defaults(run=cmd_report)


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.compliance.assembly import AssemblyError, CloudAssembly
    from ai_factory.compliance.diff import diff_reports
    from ai_factory.compliance.document import Document, diff_document, report_document
    from ai_factory.compliance.html import render_html
    from ai_factory.compliance.markdown import render_markdown
    from ai_factory.compliance.model import NO_ACK, build_report

    def load(flag: str, path: str) -> Any:
        if not Path(path).is_dir():
            raise UsageError(f"{flag}: {path} is not a folder (run `make synth` first)")
        try:
            return build_report(CloudAssembly.load(path))
        except AssemblyError as exc:
            raise UsageError(f"{flag}: {exc}") from exc

    report = load("--cdk-out", args.cdk_out)
    base = load("--diff", args.diff) if args.diff else None
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"--out: cannot create {out_dir}: {exc.strerror or exc}") from exc

    def write(name: str, doc: Document) -> None:
        renders = {"md": render_markdown, "html": render_html}
        for ext in ("md", "html") if args.format == "both" else (args.format,):
            path = out_dir / f"{name}.{ext}"
            try:
                path.write_text(renders[ext](doc), encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
            print(f"wrote {path}", file=out)

    write(REPORT_NAME, report_document(report))
    if base is not None:
        diff = diff_reports(base, report)
        write(DIFF_NAME, diff_document(diff))
        changed = sum(len(s.added) + len(s.removed) + len(s.changed) for s in diff.sections)
        print(f"{changed} access or data-flow changes from {args.diff} to {args.cdk_out}", file=out)
    unacked = [s for s in report.wildcards if any(r == NO_ACK for _, r in s.acknowledgements)]
    print(
        f"{len(report.features)} features, {len(report.public_endpoints)} public endpoints "
        f"({len(report.unreviewed_public_endpoints)} without a recorded reason), "
        f"{len(report.wildcards)} IAM wildcards ({len(unacked)} unacknowledged)",
        file=out,
    )
    if args.fail_on_findings and (report.unreviewed_public_endpoints or unacked):
        return 1
    return 0
