"""Evaluation evidence and waivers on catalog entries: what approval of a model rests on.

A chat model is ``approved`` only with a passing evaluation record for every standard suite of its
modality, written into its entry by ``ai-factory models evaluate MODEL`` (which runs the suites and
records the MLflow runs)::

    evidence:
      safety/prompt-injection: {suite_version: 1, passed: true, pass_rate: 1.0, cases: 7,
        latency_ms_p50: 412.0, cost_per_case_usd: 0.00021, run_id: 3f2a..., target: bedrock,
        evaluated_on: 2026-12-03}

A model that has not (yet) passed them is a ``candidate``. A route may name a candidate only under an
explicit waiver, recorded in the entry with who granted it and why (for example: Bedrock models before
their first evaluation in an account; the offline ``echo`` double, which repeats its input by design)::

    waiver: {reason: "...", approved_by: platform-ai@example.com, approved_on: 2026-12-03}

The checks run in the catalog loader, so ``make synth`` and every ``ai-factory models`` command refuse
a catalog that breaks them, with a message naming the model and the suites it lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

__all__ = [
    "STANDARD_SUITES",
    "SuiteEvidence",
    "Waiver",
    "missing_suites",
    "parse_evidence",
    "parse_waiver",
    "write_evidence",
]

# The suites approval requires, by modality. They are chat suites (ai_factory/data/safety/): embedding
# models answer with vectors, so their approval rests on the reviewed catalog entry alone.
STANDARD_SUITES: Mapping[str, tuple[str, ...]] = {
    "chat": (
        "safety/prompt-injection",
        "safety/pii-leakage",
        "safety/harmful-content",
        "safety/over-refusal",
    ),
    "embedding": (),
}
EVIDENCE_FIELDS = (
    "suite_version",
    "passed",
    "pass_rate",
    "cases",
    "latency_ms_p50",
    "cost_per_case_usd",
    "run_id",
    "target",
    "evaluated_on",
)
WAIVER_FIELDS = ("reason", "approved_by", "approved_on")

Fail = Callable[[str, str], Exception]  # (field, why) -> the error to raise


@dataclass(frozen=True)
class SuiteEvidence:
    """One suite's latest evaluation of a model, as recorded in its catalog entry."""

    suite: str
    suite_version: int | None
    passed: bool
    pass_rate: float
    cases: int
    latency_ms_p50: float
    cost_per_case_usd: float
    run_id: str | None  # the MLflow run (experiment ai-factory/evals) that holds every case's result
    target: str  # local (offline models) | bedrock | gateway
    evaluated_on: date

    def to_yaml(self) -> dict[str, Any]:
        return {
            "suite_version": self.suite_version,
            "passed": self.passed,
            "pass_rate": round(self.pass_rate, 4),
            "cases": self.cases,
            "latency_ms_p50": round(self.latency_ms_p50, 1),
            "cost_per_case_usd": round(self.cost_per_case_usd, 6),
            "run_id": self.run_id,
            "target": self.target,
            "evaluated_on": self.evaluated_on.isoformat(),
        }


@dataclass(frozen=True)
class Waiver:
    """Permission to route a model that has no passing evidence: why, who, when."""

    reason: str
    approved_by: str
    approved_on: date


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _day(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def parse_evidence(raw: Any, fail: Fail) -> dict[str, SuiteEvidence]:
    """The ``evidence`` field: suite reference -> record. ``fail(field, why)`` builds the error."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise fail(
            "evidence", "must be a mapping of suite -> record (written by `ai-factory models evaluate`)"
        )
    out = {}
    for suite, record in raw.items():
        where = f"evidence.{suite}"
        if not isinstance(record, Mapping):
            raise fail(where, "must be a mapping")
        unknown = sorted(set(record) - set(EVIDENCE_FIELDS))
        if unknown:
            raise fail(where, f"unknown field(s) {unknown}; allowed: {', '.join(EVIDENCE_FIELDS)}")
        missing = [k for k in ("passed", "pass_rate", "cases", "evaluated_on") if k not in record]
        if missing:
            raise fail(where, f"is missing {', '.join(missing)}")
        if not isinstance(record["passed"], bool):
            raise fail(f"{where}.passed", f"must be true or false, got {record['passed']!r}")
        if not _number(record["pass_rate"]) or not 0 <= record["pass_rate"] <= 1:
            raise fail(f"{where}.pass_rate", f"must be a number from 0 to 1, got {record['pass_rate']!r}")
        if isinstance(record["cases"], bool) or not isinstance(record["cases"], int) or record["cases"] < 1:
            raise fail(f"{where}.cases", f"must be a whole number >= 1, got {record['cases']!r}")
        for key in ("latency_ms_p50", "cost_per_case_usd"):
            if key in record and (not _number(record[key]) or record[key] < 0):
                raise fail(f"{where}.{key}", f"must be a non-negative number, got {record[key]!r}")
        day = _day(record["evaluated_on"])
        if day is None:
            raise fail(f"{where}.evaluated_on", f"must be a date YYYY-MM-DD, got {record['evaluated_on']!r}")
        out[str(suite)] = SuiteEvidence(
            suite=str(suite),
            suite_version=record.get("suite_version"),
            passed=record["passed"],
            pass_rate=float(record["pass_rate"]),
            cases=record["cases"],
            latency_ms_p50=float(record.get("latency_ms_p50", 0.0)),
            cost_per_case_usd=float(record.get("cost_per_case_usd", 0.0)),
            run_id=None if record.get("run_id") is None else str(record["run_id"]),
            target=str(record.get("target", "")),
            evaluated_on=day,
        )
    return out


def parse_waiver(raw: Any, fail: Fail) -> Waiver | None:
    """The ``waiver`` field: ``{reason, approved_by, approved_on}``, all required."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise fail("waiver", f"must be a mapping of {', '.join(WAIVER_FIELDS)}")
    unknown = sorted(set(raw) - set(WAIVER_FIELDS))
    if unknown:
        raise fail("waiver", f"unknown field(s) {unknown}; allowed: {', '.join(WAIVER_FIELDS)}")
    for key in ("reason", "approved_by"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(f"waiver.{key}", "is required (a non-empty string): a waiver says why and who")
    day = _day(raw.get("approved_on"))
    if day is None:
        raise fail("waiver.approved_on", f"is required (YYYY-MM-DD), got {raw.get('approved_on')!r}")
    return Waiver(raw["reason"].strip(), raw["approved_by"].strip(), day)


def missing_suites(modality: str, evidence: Mapping[str, SuiteEvidence]) -> list[str]:
    """The standard suites of ``modality`` without a passing record in ``evidence``."""
    return [s for s in STANDARD_SUITES.get(modality, ()) if not (s in evidence and evidence[s].passed)]


# --- writing evidence back into models.yaml -------------------------------------------------------

_ENTRY_RE = re.compile(r"^  - name:\s*(\S+)\s*$")


def _flow(value: Mapping[str, Any]) -> str:
    import yaml

    text = yaml.safe_dump(dict(value), default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text


def write_evidence(path: str | Path, model: str, records: Mapping[str, SuiteEvidence]) -> None:
    """Put ``records`` into ``model``'s ``evidence`` in the catalog file, keeping everything else as
    written (comments included): existing records of other suites stay, those given replace theirs."""
    import yaml

    file = Path(path)
    lines = file.read_text(encoding="utf-8").splitlines()
    start = next(
        (i for i, line in enumerate(lines) if (m := _ENTRY_RE.match(line)) and m.group(1) == model), None
    )
    if start is None:
        raise KeyError(f"{file}: no model entry named {model!r}")
    end = start + 1
    while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines before the next section stay outside the entry
    entry = lines[start:end]
    existing: dict[str, Any] = {}
    begin = next((i for i, line in enumerate(entry) if line.startswith("    evidence:")), None)
    if begin is not None:
        stop = begin + 1
        while stop < len(entry) and entry[stop].startswith("      "):
            stop += 1
        existing = (yaml.safe_load("\n".join(entry[begin:stop])) or {}).get("evidence") or {}
        del entry[begin:stop]
    merged = {**existing, **{suite: r.to_yaml() for suite, r in records.items()}}
    block = ["    evidence:"] + [f"      {suite}: {_flow(merged[suite])}" for suite in sorted(merged)]
    at = begin if begin is not None else len(entry)
    entry[at:at] = block
    lines[start:end] = entry
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
