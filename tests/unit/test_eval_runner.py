"""The runner: thread pool, the fsynced journal, --resume after an interruption, outputs and verdicts."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ai_factory.evals.model import Assertion, Case, CaseOutput, Gate, Suite
from ai_factory.evals.runner import JOURNAL, ResumeError, execute, read_journal, run

OUTPUTS = ("runs.jsonl", "cases.csv", "junit.xml", "report.html", "verdict.json")


def make_suite(n_cases: int = 5, repeats: int = 2, content_hash: str = "sha256:a", **gate: Any) -> Suite:
    cases = tuple(
        Case(f"case-{i}", {"thing": f"t{i}"}, (Assertion("contains", value=f"t{i}"),)) for i in range(n_cases)
    )
    return Suite(
        name="demo",
        path=Path("features/x/evals/demo.yaml"),
        content_hash=content_hash,
        cases=cases,
        gate=Gate(repeats=repeats, **gate),
        model="echo",
        messages=({"role": "user", "content": "Say {{thing}}"},),
    )


class FakeTarget:
    """Answers instantly with the case's var; optionally fails (raises) on the Nth call."""

    name = "fake"

    def __init__(self, raise_on_call: int | None = None, exc: BaseException | None = None, delay: float = 0):
        self.raise_on_call = raise_on_call
        self.exc = exc or RuntimeError("target crashed")
        self.delay = delay
        self.calls: list[str] = []
        self.succeeded: list[str] = []
        self._lock = threading.Lock()

    def run(self, suite: Suite, case: Case) -> CaseOutput:
        with self._lock:
            self.calls.append(case.id)
            n = len(self.calls)
        if self.delay:
            time.sleep(self.delay)
        if self.raise_on_call is not None and n == self.raise_on_call:
            raise self.exc
        text = "wrong" if case.vars.get("fail") else f"echo: Say {case.vars['thing']}"
        with self._lock:
            self.succeeded.append(case.id)
        return CaseOutput(text=text, latency_ms=1.5, cost_usd=0.001)


def journal_keys(out: Path) -> list[tuple[str, int]]:
    _, runs = read_journal(out / JOURNAL)
    return [(r.case_id, r.repeat) for r in runs]


def test_runs_every_case_and_repeat_and_writes_every_output(tmp_path: Path) -> None:
    suite = make_suite(n_cases=4, repeats=3)
    target = FakeTarget()
    result = execute(suite, target, out_dir=tmp_path, concurrency=4, prompt_version="7")
    assert result.verdict.passed and result.verdict.pass_rate == 1.0
    assert (result.executed, result.resumed) == (12, 0)
    assert Counter(target.calls) == {f"case-{i}": 3 for i in range(4)}
    assert sorted(journal_keys(tmp_path)) == sorted((f"case-{i}", r) for i in range(4) for r in range(3))
    header = json.loads((tmp_path / JOURNAL).read_text().splitlines()[0])
    assert header["kind"] == "header" and header["suite_hash"] == "sha256:a"
    assert (header["target"], header["prompt_version"]) == ("fake", "7")
    for name in OUTPUTS:
        assert (tmp_path / name).is_file(), name
        assert result.outputs[name] == tmp_path / name
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert json.dumps(verdict).count("case-3") >= 1
    assert [r.case_id for r in result.runs][:3] == ["case-0"] * 3  # suite order, then repeat


def test_failing_case_fails_the_gate_and_spec_signature_returns_the_verdict(tmp_path: Path) -> None:
    base = make_suite(n_cases=2, repeats=1, min_pass_rate=1.0)
    bad = Case("case-bad", {"thing": "zz", "fail": True}, (Assertion("contains", value="zz"),))
    suite = Suite(**{**base.__dict__, "cases": (*base.cases, bad)})
    verdict = run(suite, FakeTarget(), concurrency=2, out_dir=tmp_path)
    assert not verdict.passed
    assert verdict.pass_rate == pytest.approx(2 / 3)
    assert [c.case_id for c in verdict.cases if not c.passed] == ["case-bad"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_interrupted_run_loses_nothing_and_resume_runs_each_pair_once(
    tmp_path: Path, concurrency: int
) -> None:
    suite = make_suite(n_cases=6, repeats=2)
    crashing = FakeTarget(raise_on_call=5, delay=0.01)
    with pytest.raises(RuntimeError, match="target crashed"):
        execute(suite, crashing, out_dir=tmp_path, concurrency=concurrency)
    done = journal_keys(tmp_path)
    # Every run that completed (in flight ones included) is journalled; the crashed one is not.
    assert len(done) == len(crashing.succeeded) >= 4
    assert len(set(done)) == len(done)

    resumed = FakeTarget()
    result = execute(suite, resumed, out_dir=tmp_path, concurrency=concurrency, resume=True)
    keys = journal_keys(tmp_path)
    assert len(keys) == len(set(keys)) == 12  # nothing twice, nothing missing
    assert len(resumed.calls) == 12 - len(done)
    assert (result.executed, result.resumed) == (12 - len(done), len(done))
    assert result.verdict.passed and len(result.runs) == 12


def test_resume_of_a_finished_run_calls_nothing(tmp_path: Path) -> None:
    suite = make_suite(n_cases=2, repeats=2)
    execute(suite, FakeTarget(), out_dir=tmp_path)
    again = FakeTarget()
    result = execute(suite, again, out_dir=tmp_path, resume=True)
    assert again.calls == [] and result.resumed == 4 and result.verdict.passed


def test_ctrl_c_stops_the_run_and_keeps_finished_runs(tmp_path: Path) -> None:
    suite = make_suite(n_cases=4, repeats=1)
    target = FakeTarget(raise_on_call=3, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        execute(suite, target, out_dir=tmp_path, concurrency=1)
    # The two before it, and at most the one already handed to the worker (it was paid for).
    assert sorted(k[0] for k in journal_keys(tmp_path)) == sorted(target.succeeded)
    assert 2 <= len(target.succeeded) <= 3 and "case-2" not in target.succeeded


def test_resume_refuses_a_changed_suite_or_another_target(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        execute(make_suite(n_cases=2), FakeTarget(raise_on_call=2), out_dir=tmp_path, concurrency=1)
    with pytest.raises(ResumeError, match="suite_hash"):
        execute(make_suite(n_cases=2, content_hash="sha256:b"), FakeTarget(), out_dir=tmp_path, resume=True)
    with pytest.raises(ResumeError, match="prompt_version"):
        execute(make_suite(n_cases=2), FakeTarget(), out_dir=tmp_path, resume=True, prompt_version="9")
    assert len(journal_keys(tmp_path)) == 1  # the refused resumes wrote nothing


def test_resume_drops_a_torn_last_line(tmp_path: Path) -> None:
    suite = make_suite(n_cases=3, repeats=1)
    with pytest.raises(RuntimeError):
        execute(suite, FakeTarget(raise_on_call=3), out_dir=tmp_path, concurrency=1)
    with (tmp_path / JOURNAL).open("a") as handle:
        handle.write('{"kind": "run", "case_id": "case-2", "rep')  # a crash mid-write
    target = FakeTarget()
    execute(suite, target, out_dir=tmp_path, resume=True)
    assert target.calls == ["case-2"]
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(lines) == 4


def test_without_resume_a_previous_journal_is_replaced(tmp_path: Path) -> None:
    suite = make_suite(n_cases=2, repeats=1)
    execute(suite, FakeTarget(), out_dir=tmp_path)
    target = FakeTarget()
    execute(suite, target, out_dir=tmp_path)
    assert len(target.calls) == 2 and len(journal_keys(tmp_path)) == 2


def test_progress_bar_goes_to_stderr_when_asked(tmp_path: Path) -> None:
    stream = io.StringIO()
    execute(make_suite(n_cases=3, repeats=1), FakeTarget(), out_dir=tmp_path, progress=True, stderr=stream)
    assert "3/3 runs, 0 failed" in stream.getvalue()
    quiet = io.StringIO()
    execute(make_suite(n_cases=3, repeats=1), FakeTarget(), out_dir=tmp_path / "q", stderr=quiet)
    assert quiet.getvalue() == ""  # not a TTY and not asked


def test_concurrency_runs_cases_in_parallel(tmp_path: Path) -> None:
    # Every run waits until all 8 are running at once: run one after another, the first would time out.
    together = threading.Barrier(8, timeout=10)

    class WaitsForTheOthers(FakeTarget):
        def run(self, suite: Suite, case: Case) -> CaseOutput:
            together.wait()
            return super().run(suite, case)

    target = WaitsForTheOthers()
    result = execute(make_suite(n_cases=8, repeats=1), target, out_dir=tmp_path, concurrency=8)
    assert result.verdict.passed and len(target.succeeded) == 8


def test_concurrency_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        execute(make_suite(), FakeTarget(), out_dir=tmp_path, concurrency=0)
