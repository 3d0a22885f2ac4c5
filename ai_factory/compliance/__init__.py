"""Compliance evidence from a synthesized cloud assembly: ``ai-factory report``.

``assembly`` reads ``cdk.out``; ``model`` turns it into a :class:`~ai_factory.compliance.model.Report`;
``evidence`` holds the obligation -> artifact map; ``diff`` compares two reports; ``markdown`` and
``html`` render them. Nothing here imports aws_cdk: the report runs on any machine with the assembly.
"""

from ai_factory.compliance.assembly import AssemblyError, CloudAssembly
from ai_factory.compliance.diff import ReportDiff, diff_reports
from ai_factory.compliance.model import Report, build_report

__all__ = ["AssemblyError", "CloudAssembly", "Report", "ReportDiff", "build_report", "diff_reports"]
