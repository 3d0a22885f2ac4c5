"""Eval reports: the per-case CSV, JUnit XML for CI, a standalone HTML page and the verdict JSON.

Every writer takes the same arguments: the output path, the suite, its verdict and its runs (plus
optional ``metadata`` such as the target, model and prompt version, shown as given). Model output is
untrusted text: the HTML escapes it, the XML drops characters XML 1.0 cannot carry, and the CSV
defuses cells a spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .model import CaseRun, CaseVerdict, Suite, SuiteVerdict

__all__ = [
    "CSV_COLUMNS",
    "verdict_document",
    "write_cases_csv",
    "write_junit_xml",
    "write_report_html",
    "write_verdict_json",
]

CSV_COLUMNS = (
    "case_id",
    "passed",
    "passed_runs",
    "runs",
    "repeats",
    "hard_failures",
    "mean_latency_ms",
    "total_cost_usd",
    "failed_assertions",
    "first_output",
)
OUTPUT_PREVIEW_CHARS = 500
# XML 1.0 allows tab, newline, carriage return and most of the rest of Unicode; nothing else.
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _runs_by_case(runs: list[CaseRun]) -> dict[str, list[CaseRun]]:
    grouped: dict[str, list[CaseRun]] = {}
    for run in sorted(runs, key=lambda r: (r.case_id, r.repeat)):
        grouped.setdefault(run.case_id, []).append(run)
    return grouped


def _failed_reasons(case_runs: list[CaseRun]) -> list[str]:
    """Each distinct failing assertion of a case, once, prefixed with the runs it failed in."""
    seen: dict[str, list[int]] = {}
    for run in case_runs:
        if run.output.error is not None:
            seen.setdefault(f"the call failed: {run.output.error}", []).append(run.repeat + 1)
            continue
        for result in run.results:
            if not result.passed:
                flag = " [hard fail]" if result.hard_fail else ""
                seen.setdefault(f"{result.type}{flag}: {result.reason}", []).append(run.repeat + 1)
    return [f"run {', '.join(map(str, repeats))}: {reason}" for reason, repeats in seen.items()]


def _mean_latency(case_runs: list[CaseRun]) -> float:
    return sum(r.output.latency_ms for r in case_runs) / len(case_runs) if case_runs else 0.0


def _total_cost(runs: list[CaseRun]) -> float:
    return sum(r.output.cost_usd for r in runs)


def _prepare(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


# --- CSV ----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to Excel and friends: model output must not run.
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_cases_csv(
    path: str | os.PathLike[str], suite: Suite, verdict: SuiteVerdict, runs: list[CaseRun]
) -> Path:
    """One row per case (``CSV_COLUMNS``), in the suite's order."""
    out = _prepare(path)
    grouped = _runs_by_case(runs)
    # errors="replace": model output can hold lone surrogates, which UTF-8 cannot encode.
    with out.open("w", newline="", encoding="utf-8", errors="replace") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for case in verdict.cases:
            case_runs = grouped.get(case.case_id, [])
            first = case_runs[0].output.text[:OUTPUT_PREVIEW_CHARS] if case_runs else ""
            writer.writerow(
                [
                    case.case_id,
                    "true" if case.passed else "false",
                    case.passed_runs,
                    case.runs,
                    suite.gate.repeats,
                    len(case.hard_failures),
                    f"{_mean_latency(case_runs):.1f}",
                    f"{_total_cost(case_runs):.6f}",
                    _cell(" | ".join(_failed_reasons(case_runs))),
                    _cell(first),
                ]
            )
    return out


# --- JUnit XML ----------------------------------------------------------------------------------------


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def _case_failed(case: CaseVerdict) -> bool:
    # A case that passed on fraction but had a hard failure still fails the suite: show it as failed.
    return not case.passed or bool(case.hard_failures)


def write_junit_xml(
    path: str | os.PathLike[str], suite: Suite, verdict: SuiteVerdict, runs: list[CaseRun]
) -> Path:
    """A JUnit ``<testsuites>`` with one ``<testsuite>`` and one ``<testcase>`` per case.

    A failed case (or one with a hard failure) carries ``<failure message=...>`` listing its failing
    assertions' reasons; the gate's verdict and reasons are in the suite's properties and system-out.
    """
    out = _prepare(path)
    grouped = _runs_by_case(runs)
    failures = sum(1 for c in verdict.cases if _case_failed(c))
    total_time = sum(r.output.latency_ms for r in runs) / 1000
    root = ET.Element("testsuites", name="ai-factory-evals")
    node = ET.SubElement(
        root,
        "testsuite",
        name=_xml_text(suite.name),
        tests=str(len(verdict.cases)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total_time:.3f}",
    )
    properties = ET.SubElement(node, "properties")
    for name, value in (
        ("suite_hash", suite.content_hash),
        ("gate_passed", str(verdict.passed).lower()),
        ("hard_failed", str(verdict.hard_failed).lower()),
        ("pass_rate", f"{verdict.pass_rate:.4f}"),
        ("min_pass_rate", f"{suite.gate.min_pass_rate:g}"),
        ("repeats", str(suite.gate.repeats)),
        ("min_case_pass_fraction", f"{suite.gate.min_case_pass_fraction:g}"),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml_text(value))
    for case in verdict.cases:
        case_runs = grouped.get(case.case_id, [])
        testcase = ET.SubElement(
            node,
            "testcase",
            classname=_xml_text(suite.name),
            name=_xml_text(case.case_id),
            time=f"{sum(r.output.latency_ms for r in case_runs) / 1000:.3f}",
        )
        if _case_failed(case):
            reasons = _failed_reasons(case_runs)
            if len(case_runs) < suite.gate.repeats:
                reasons.append(f"{suite.gate.repeats - len(case_runs)} run(s) missing")
            summary = f"passed {case.passed_runs} of {suite.gate.repeats} runs"
            if case.hard_failures:
                summary += f"; {len(case.hard_failures)} hard failure(s)"
            failure = ET.SubElement(
                testcase,
                "failure",
                message=_xml_text(f"{summary}: " + "; ".join(reasons)),
                type="hard_fail" if case.hard_failures else "assertion",
            )
            failure.text = _xml_text("\n".join(reasons))
        if case_runs:
            ET.SubElement(testcase, "system-out").text = _xml_text(
                "\n\n".join(f"--- run {r.repeat + 1} ---\n{r.output.text}" for r in case_runs)
            )
    verdict_text = "gate passed" if verdict.passed else "gate failed:\n" + "\n".join(verdict.reasons)
    ET.SubElement(node, "system-out").text = _xml_text(verdict_text)
    ET.indent(root)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out


# --- verdict JSON -------------------------------------------------------------------------------------


def verdict_document(
    suite: Suite, verdict: SuiteVerdict, runs: list[CaseRun], metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The verdict as a JSON-ready dict: the verdict's fields plus the suite's identity and totals."""
    latencies = sorted(r.output.latency_ms for r in runs)
    return {
        **dataclasses.asdict(verdict),
        "suite_path": str(suite.path),
        "suite_hash": suite.content_hash,
        "gate": dataclasses.asdict(suite.gate),
        "cases_total": len(verdict.cases),
        "cases_passed": sum(1 for c in verdict.cases if c.passed),
        "hard_failures": sum(len(c.hard_failures) for c in verdict.cases),
        "runs_total": len(runs),
        "total_cost_usd": round(_total_cost(runs), 8),
        "mean_latency_ms": round(sum(latencies) / len(latencies), 3) if latencies else 0.0,
        "metadata": dict(metadata or {}),
    }


def write_verdict_json(
    path: str | os.PathLike[str],
    suite: Suite,
    verdict: SuiteVerdict,
    runs: list[CaseRun],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """``verdict_document`` as indented JSON."""
    out = _prepare(path)
    document = verdict_document(suite, verdict, runs, metadata)
    out.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return out


# --- HTML ---------------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328;max-width:80rem}
h1{margin-bottom:.2rem} .muted{color:#59636e}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.pass{background:#1a7f37} .fail{background:#cf222e} .hard{background:#8250df}
table{border-collapse:collapse;width:100%;margin:1rem 0} th,td{border:1px solid #d1d9e0;padding:.35rem .5rem;
text-align:left;vertical-align:top} th{background:#f6f8fa}
td.ok{color:#1a7f37;font-weight:600} td.ko{color:#cf222e;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.5rem;margin:.3rem 0}
details{margin:.2rem 0} summary{cursor:pointer}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(passed: bool, text: str | None = None, *, hard: bool = False) -> str:
    cls = "hard" if hard else ("pass" if passed else "fail")
    return f'<span class="badge {cls}">{_e(text or ("PASS" if passed else "FAIL"))}</span>'


def _run_html(run: CaseRun) -> str:
    out = run.output
    facts = f"{out.latency_ms:.0f} ms, ${out.cost_usd:.6f}, {out.input_tokens}+{out.output_tokens} tokens"
    if out.model_served:
        facts += f", model {out.model_served}"
    if out.request_id:
        facts += f", request {out.request_id}"
    rows = "".join(
        f"<tr><td>{_e(r.type)}{' (hard fail)' if r.hard_fail else ''}</td>"
        f'<td class="{"ok" if r.passed else "ko"}">{"pass" if r.passed else "fail"}</td>'
        f"<td>{'' if r.score is None else f'{r.score:.3f}'}</td><td>{_e(r.reason)}</td></tr>"
        for r in run.results
    )
    error = f'<p class="ko">the call failed: {_e(out.error)}</p>' if out.error else ""
    return (
        f"<details{'' if run.passed else ' open'}><summary>run {run.repeat + 1} "
        f"{_badge(run.passed)} <span class='muted'>{_e(facts)}</span></summary>{error}"
        f"<pre>{_e(out.text)}</pre>"
        "<table><tr><th>assertion</th><th>result</th><th>score</th><th>reason</th></tr>"
        f"{rows}</table></details>"
    )


def write_report_html(
    path: str | os.PathLike[str],
    suite: Suite,
    verdict: SuiteVerdict,
    runs: list[CaseRun],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """A standalone page (inline CSS, no scripts or external assets): the summary, then every case
    with each run's output and assertion results. All content is HTML-escaped."""
    out = _prepare(path)
    grouped = _runs_by_case(runs)
    gate = suite.gate
    status = _badge(verdict.passed, "GATE PASSED" if verdict.passed else "GATE FAILED")
    if verdict.hard_failed:
        status += " " + _badge(False, "HARD FAILURE", hard=True)
    facts = [
        ("suite file", str(suite.path)),
        ("suite hash", suite.content_hash),
        (
            "pass rate",
            f"{verdict.pass_rate:.2%} ({sum(c.passed for c in verdict.cases)} of {len(verdict.cases)} cases)",
        ),
        (
            "gate",
            f"min pass rate {gate.min_pass_rate:g}, repeats {gate.repeats}, "
            f"min case pass fraction {gate.min_case_pass_fraction:g}",
        ),
        ("total cost", f"${_total_cost(runs):.6f}"),
    ]
    if suite.prompt is not None:
        ref = suite.prompt.name + (
            f" v{suite.prompt.version}"
            if suite.prompt.version
            else f"@{suite.prompt.alias}"
            if suite.prompt.alias
            else ""
        )
        facts.insert(0, ("prompt", ref))
    if suite.model:
        facts.insert(0, ("model", suite.model))
    facts.extend((str(k), str(v)) for k, v in (metadata or {}).items())
    summary_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    reasons = (
        "<h2>Why the gate failed</h2><ul>" + "".join(f"<li>{_e(r)}</li>" for r in verdict.reasons) + "</ul>"
        if verdict.reasons
        else ""
    )
    case_rows = []
    for case in verdict.cases:
        case_runs = grouped.get(case.case_id, [])
        hard = _badge(False, f"{len(case.hard_failures)} hard", hard=True) if case.hard_failures else ""
        case_rows.append(
            f'<tr id="case-{_e(case.case_id)}"><td>{_e(case.case_id)}</td>'
            f"<td>{_badge(case.passed)} {hard}</td>"
            f"<td>{case.passed_runs} / {gate.repeats}</td><td>{_mean_latency(case_runs):.0f} ms</td>"
            f"<td>{''.join(_run_html(r) for r in case_runs) or '<em>no runs</em>'}</td></tr>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Eval: {_e(suite.name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Eval: {_e(suite.name)}</h1><p class='muted'>{_e(suite.description)}</p><p>{status}</p>"
        f"<table>{summary_rows}</table>{reasons}<h2>Cases</h2>"
        "<table><tr><th>case</th><th>verdict</th><th>runs passed</th><th>mean latency</th><th>runs</th></tr>"
        f"{''.join(case_rows)}</table></body></html>\n"
    )
    out.write_text(page, encoding="utf-8", errors="replace")
    return out
