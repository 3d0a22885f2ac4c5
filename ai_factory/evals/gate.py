"""The gate: turn a suite's case runs into a pass/fail verdict with reasons people can act on.

- A run passes when its call succeeded and every assertion passed (``CaseRun.passed``).
- A case passes when ``passed_runs / repeats >= min_case_pass_fraction``; runs that never happened
  (an interrupted eval) count as failed, so a partial run cannot pass by omission.
- The pass rate is passed cases / cases. The suite passes when the pass rate reaches
  ``min_pass_rate`` AND no ``hard_fail`` assertion failed in any run. A hard-fail assertion that could
  not be checked because the call failed counts as failed: the gate fails closed on safety checks.

Fractions are compared exactly (with a 1e-9 tolerance for float noise only): with ``repeats: 3``,
``min_case_pass_fraction: 0.67`` needs 3 of 3 runs, ``0.66`` needs 2 of 3.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import CaseRun, CaseVerdict, Suite, SuiteVerdict

__all__ = ["verdict"]

_EPSILON = 1e-9
MAX_CASE_REASONS = 3  # failing assertions quoted per failed case in the reasons


def _first_runs(runs: Iterable[CaseRun]) -> dict[tuple[str, int], CaseRun]:
    # A resumed eval could record a (case, repeat) twice; the first record is the one that counted.
    unique: dict[tuple[str, int], CaseRun] = {}
    for run in runs:
        unique.setdefault((run.case_id, run.repeat), run)
    return unique


def _run_failures(run: CaseRun) -> list[str]:
    if run.output.error is not None:
        return [f"the call failed: {run.output.error}"]
    return [f"{r.type}: {r.reason}" for r in run.results if not r.passed]


def verdict(suite: Suite, runs: list[CaseRun]) -> SuiteVerdict:
    """The suite's verdict from its case runs (runs of unknown cases or repeats are ignored)."""
    gate = suite.gate
    unique = _first_runs(runs)
    by_case: dict[str, list[CaseRun]] = {case.id: [] for case in suite.cases}
    for (case_id, repeat), run in sorted(unique.items()):
        if case_id in by_case and 0 <= repeat < gate.repeats:
            by_case[case_id].append(run)

    cases: list[CaseVerdict] = []
    reasons: list[str] = []
    hard_reasons: list[str] = []
    for case in suite.cases:
        case_runs = by_case[case.id]
        passed_runs = sum(1 for run in case_runs if run.passed)
        passed = passed_runs / gate.repeats + _EPSILON >= gate.min_case_pass_fraction
        hard = [
            f"run {run.repeat + 1}: {r.type}: {r.reason}"
            for run in case_runs
            for r in run.results
            if r.hard_fail and not r.passed
        ]
        cases.append(
            CaseVerdict(
                case_id=case.id,
                runs=len(case_runs),
                passed_runs=passed_runs,
                passed=passed,
                hard_failures=hard,
            )
        )
        hard_reasons.extend(f"hard failure in case {case.id!r} {detail}" for detail in hard)
        if not passed:
            missing = gate.repeats - len(case_runs)
            why: list[str] = []
            for run in case_runs:
                why.extend(_run_failures(run))
            unique_why = list(dict.fromkeys(why))[:MAX_CASE_REASONS]
            detail = "; ".join(unique_why)
            if missing:
                detail = f"{missing} run(s) missing" + (f"; {detail}" if detail else "")
            reasons.append(
                f"case {case.id!r} passed {passed_runs} of {gate.repeats} runs "
                f"(needs {gate.min_case_pass_fraction:g}): {detail}"
            )

    total = len(cases)
    passed_cases = sum(1 for c in cases if c.passed)
    pass_rate = passed_cases / total if total else 0.0
    rate_ok = total > 0 and pass_rate + _EPSILON >= gate.min_pass_rate
    hard_failed = bool(hard_reasons)
    gate_reasons: list[str] = []
    if total == 0:
        gate_reasons.append("the suite has no cases")
    elif not rate_ok:
        gate_reasons.append(
            f"pass rate {pass_rate:.2f} ({passed_cases} of {total} cases) "
            f"is below the minimum {gate.min_pass_rate:g}"
        )
    passed = rate_ok and not hard_failed
    return SuiteVerdict(
        suite=suite.name,
        cases=cases,
        pass_rate=pass_rate,
        passed=passed,
        hard_failed=hard_failed,
        # Hard failures first: they fail the suite whatever the pass rate.
        reasons=[] if passed else hard_reasons + gate_reasons + reasons,
    )
