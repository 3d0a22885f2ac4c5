"""The gate: repeats, per-case pass fraction, minimum pass rate and hard failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ai_factory.evals.gate import verdict
from ai_factory.evals.model import Assertion, AssertionResult, Case, CaseOutput, CaseRun, Gate, Suite


def suite(case_ids: list[str], **gate: float) -> Suite:
    cases = tuple(Case(id=i, vars={}, assertions=(Assertion("contains", "x"),)) for i in case_ids)
    return Suite(name="s", path=Path("s.yaml"), content_hash="sha256:0", cases=cases, gate=Gate(**gate))  # type: ignore[arg-type]


def run(
    case_id: str, repeat: int, *, ok: bool = True, hard: bool = False, error: str | None = None
) -> CaseRun:
    results = [
        AssertionResult("contains", True, None, "output contains 'x'"),
        AssertionResult(
            "not-contains",
            ok,
            None,
            "output does not contain 'card'" if ok else "output contains 'card' (at character 3)",
            hard_fail=hard,
        ),
    ]
    if error:
        results = [AssertionResult("not-contains", False, None, f"the call failed: {error}", hard_fail=hard)]
    return CaseRun(
        case_id=case_id,
        repeat=repeat,
        output=CaseOutput(text="x", latency_ms=1, error=error),
        results=results,
    )


def test_all_pass() -> None:
    result = verdict(suite(["a", "b"]), [run("a", 0), run("b", 0)])
    assert result.passed and not result.hard_failed and result.pass_rate == 1.0 and result.reasons == []
    assert [(c.case_id, c.runs, c.passed_runs, c.passed) for c in result.cases] == [
        ("a", 1, 1, True),
        ("b", 1, 1, True),
    ]


@pytest.mark.parametrize(
    ("fraction", "passes_needed"),
    [(1.0, 3), (0.67, 3), (0.66, 2), (0.5, 2), (0.34, 2), (0.33, 1), (0.0, 0)],
)
def test_case_pass_fraction_over_repeats(fraction: float, passes_needed: int) -> None:
    s = suite(["a"], repeats=3, min_case_pass_fraction=fraction, min_pass_rate=1.0)
    for passes in range(4):
        runs = [run("a", r, ok=r < passes) for r in range(3)]
        result = verdict(s, runs)
        assert result.cases[0].passed_runs == passes
        assert result.cases[0].passed is (passes >= passes_needed), (fraction, passes)
        assert result.passed is (passes >= passes_needed)


def test_missing_runs_count_as_failures() -> None:
    s = suite(["a"], repeats=3, min_case_pass_fraction=0.66)
    result = verdict(s, [run("a", 0)])
    assert not result.passed and result.cases[0].runs == 1 and not result.cases[0].passed
    assert result.reasons[0] == "pass rate 0.00 (0 of 1 cases) is below the minimum 1"
    assert result.reasons[1] == "case 'a' passed 1 of 3 runs (needs 0.66): 2 run(s) missing"


def test_duplicate_and_stray_runs_are_ignored() -> None:
    s = suite(["a"], repeats=2, min_case_pass_fraction=1.0)
    runs = [run("a", 0), run("a", 0, ok=False), run("a", 1), run("zzz", 0, ok=False), run("a", 5, ok=False)]
    result = verdict(s, runs)
    assert result.passed and result.cases[0].runs == 2 and result.cases[0].passed_runs == 2


@pytest.mark.parametrize(
    ("passing", "total", "min_rate", "passes"),
    [(9, 10, 0.9, True), (8, 10, 0.9, False), (2, 3, 0.66, True), (1, 3, 0.5, False), (0, 2, 0.0, True)],
)
def test_min_pass_rate(passing: int, total: int, min_rate: float, passes: bool) -> None:
    ids = [f"c{i}" for i in range(total)]
    result = verdict(
        suite(ids, min_pass_rate=min_rate), [run(i, 0, ok=n < passing) for n, i in enumerate(ids)]
    )
    assert result.pass_rate == pytest.approx(passing / total)
    assert result.passed is passes
    if not passes:
        assert any(
            f"({passing} of {total} cases) is below the minimum {min_rate:g}" in r for r in result.reasons
        )
        failing = [r for r in result.reasons if r.startswith("case ")]
        assert len(failing) == total - passing
        assert "not-contains: output contains 'card'" in failing[0]


def test_hard_failure_fails_the_suite_even_when_the_rates_pass() -> None:
    s = suite(["a", "b"], repeats=3, min_case_pass_fraction=0.66, min_pass_rate=0.5)
    runs = [run("a", 0), run("a", 1), run("a", 2, ok=False, hard=True)] + [run("b", r) for r in range(3)]
    result = verdict(s, runs)
    assert result.pass_rate == 1.0 and result.cases[0].passed  # 2 of 3 is enough for the case...
    assert result.hard_failed and not result.passed  # ...but a hard failure fails the suite
    assert result.cases[0].hard_failures == ["run 3: not-contains: output contains 'card' (at character 3)"]
    assert (
        result.reasons[0]
        == "hard failure in case 'a' run 3: not-contains: output contains 'card' (at character 3)"
    )


def test_passing_soft_failure_is_not_hard() -> None:
    s = suite(["a"], repeats=2, min_case_pass_fraction=0.5)
    result = verdict(s, [run("a", 0), run("a", 1, ok=False, hard=False)])
    assert result.passed and not result.hard_failed and result.cases[0].hard_failures == []


def test_a_failed_call_fails_closed_on_hard_assertions() -> None:
    s = suite(["a"], repeats=1)
    result = verdict(s, [run("a", 0, error="HTTP 503: all targets failed", hard=True)])
    assert not result.passed and result.hard_failed
    assert any("the call failed: HTTP 503" in r for r in result.reasons)


def test_no_runs_at_all_fails() -> None:
    result = verdict(suite(["a", "b"]), [])
    assert not result.passed and result.pass_rate == 0.0
    assert all(c.runs == 0 for c in result.cases)


def test_empty_suite_cannot_pass() -> None:
    result = verdict(suite([], min_pass_rate=0.0), [])
    assert not result.passed and "no cases" in result.reasons[0]
