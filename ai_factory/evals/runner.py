"""Runs a suite against a target: a thread pool, a crash-safe journal, the verdict and the reports.

Every finished ``CaseRun`` is appended to ``<out>/runs.jsonl`` at once (flushed and fsynced), after a
header line naming the suite hash, target and prompt version. ``resume=True`` reads the journal back and
runs only the (case, repeat) pairs missing from it, so an interrupted eval (Ctrl-C, a crash, a CI
timeout) loses no work and pays for no case twice; a journal of another suite, target or prompt
version is refused. The other outputs (``cases.csv``, ``junit.xml``, ``report.html``,
``verdict.json``) are written from the journal's runs when every run is done.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ai_factory.evals.model import AssertionResult, Case, CaseOutput, CaseRun, Suite, SuiteVerdict
from ai_factory.evals.targets import Target

JOURNAL = "runs.jsonl"
JOURNAL_SCHEMA = 1

Scorer = Callable[[Suite, Case, CaseOutput], list[AssertionResult]]


class ResumeError(Exception):
    """``--resume`` found a journal it must not continue (another suite, target or prompt version)."""


@dataclass
class EvalResult:
    """What one eval produced: the verdict, every run (resumed ones included) and where it all is."""

    suite: Suite
    verdict: SuiteVerdict
    runs: list[CaseRun]
    out_dir: Path
    target: str
    prompt_version: str
    concurrency: int
    executed: int  # runs made by this invocation
    resumed: int  # runs taken from the journal
    wall_s: float
    outputs: dict[str, Path] = field(default_factory=dict)


# --- the journal ----------------------------------------------------------------------------------


def run_to_dict(run: CaseRun) -> dict[str, Any]:
    """A ``CaseRun`` as one journal line (without the ``kind`` marker)."""
    return {
        "case_id": run.case_id,
        "repeat": run.repeat,
        "passed": run.passed,
        "output": asdict(run.output),
        "results": [asdict(r) for r in run.results],
    }


def run_from_dict(data: dict[str, Any]) -> CaseRun:
    """The inverse of ``run_to_dict``."""
    return CaseRun(
        case_id=str(data["case_id"]),
        repeat=int(data["repeat"]),
        output=CaseOutput(**data["output"]),
        results=[AssertionResult(**r) for r in data.get("results", [])],
    )


def read_journal(path: Path) -> tuple[dict[str, Any] | None, list[CaseRun]]:
    """The header and runs of a journal. A torn last line (a crash mid-write) is ignored."""
    if not path.exists():
        return None, []
    header: dict[str, Any] | None = None
    runs: list[CaseRun] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # only the last line can be torn: everything before it was fsynced whole
            if data.get("kind") == "header":
                header = data
            elif data.get("kind") == "run":
                runs.append(run_from_dict(data))
    return header, runs


class Journal:
    """Append-only ``runs.jsonl``: each line is flushed and fsynced before the next run is counted."""

    def __init__(self, path: Path, header: dict[str, Any], *, append: bool) -> None:
        self.path = path
        if append:
            self._drop_torn_tail()
        self._handle = path.open("a" if append else "w", encoding="utf-8")
        self._lock = threading.Lock()
        if not append:
            self._write({"kind": "header", **header})

    def _drop_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def _write(self, data: dict[str, Any]) -> None:
        line = json.dumps(data, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._handle.write(line)
            self._handle.flush()
        # Outside the lock: threads finishing together share the disk's flushes (group commit), and a
        # run counts as done only once its own line is durable.
        os.fsync(self._handle.fileno())

    def append(self, run: CaseRun) -> None:
        self._write({"kind": "run", **run_to_dict(run)})

    def close(self) -> None:
        self._handle.close()


# --- progress -------------------------------------------------------------------------------------


class Progress:
    """``[#####.....] 12/40 runs, 2 failed`` redrawn in place on a terminal."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO | None, done: int = 0) -> None:
        self.total, self.done, self.failed = total, done, 0
        self.stream = stream
        self._last = 0.0

    def update(self, run: CaseRun) -> None:
        self.done += 1
        self.failed += 0 if run.passed else 1
        now = time.monotonic()
        if self.stream is not None and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            filled = self.WIDTH * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} runs, {self.failed} failed")
            self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


# --- running --------------------------------------------------------------------------------------


def default_scorer(
    judge: Any = None,
    embedder: Any = None,
    input_text: Callable[[Suite, Case], str | None] | None = None,
) -> Scorer:
    """Scores every assertion of a case with ``assertions.evaluate`` (llm-judge uses ``judge`` and sees
    ``input_text(suite, case)`` as the case's input; embedding similarity uses ``embedder``)."""
    from ai_factory.evals.assertions import evaluate

    def score(suite: Suite, case: Case, output: CaseOutput) -> list[AssertionResult]:
        text = input_text(suite, case) if input_text is not None else None
        return [
            evaluate(a, output, case, judge=judge, embedder=embedder, input_text=text)
            for a in case.assertions
        ]

    return score


def default_verdict(suite: Suite, runs: list[CaseRun]) -> SuiteVerdict:
    from ai_factory.evals.gate import verdict

    return verdict(suite, runs)


def write_outputs(
    out_dir: Path, suite: Suite, runs: list[CaseRun], verdict: SuiteVerdict, meta: dict[str, Any]
) -> dict[str, Path]:
    """cases.csv, junit.xml, report.html and verdict.json (the reports module does the formatting)."""
    from ai_factory.evals import reports

    paths = {
        "cases.csv": out_dir / "cases.csv",
        "junit.xml": out_dir / "junit.xml",
        "report.html": out_dir / "report.html",
        "verdict.json": out_dir / "verdict.json",
    }
    reports.write_cases_csv(paths["cases.csv"], suite, verdict, runs)
    reports.write_junit_xml(paths["junit.xml"], suite, verdict, runs)
    reports.write_report_html(paths["report.html"], suite, verdict, runs, meta)
    reports.write_verdict_json(paths["verdict.json"], suite, verdict, runs, meta)
    return paths


def _sorted(runs: Iterable[CaseRun], suite: Suite) -> list[CaseRun]:
    order = {case.id: i for i, case in enumerate(suite.cases)}
    return sorted(runs, key=lambda r: (order.get(r.case_id, len(order)), r.repeat))


def execute(
    suite: Suite,
    target: Target,
    *,
    out_dir: str | os.PathLike[str],
    concurrency: int = 8,
    resume: bool = False,
    prompt_version: str = "unresolved",
    score: Scorer | None = None,
    verdict_fn: Callable[[Suite, list[CaseRun]], SuiteVerdict] | None = None,
    progress: bool | None = None,
    stderr: TextIO | None = None,
    write_reports: bool = True,
) -> EvalResult:
    """Run every (case, repeat) of ``suite`` not already journalled, then judge and report.

    A target or scorer that raises (or Ctrl-C) stops the run: queued work is cancelled, runs already
    in flight are waited for and journalled, and the exception propagates. ``--resume`` continues.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    score = score or default_scorer()
    stderr = stderr or sys.stderr
    path = out / JOURNAL
    header = {
        "schema": JOURNAL_SCHEMA,
        "suite": suite.name,
        "suite_hash": suite.content_hash,
        "suite_path": str(suite.path),
        "target": target.name,
        "prompt_version": prompt_version,
    }
    done: list[CaseRun] = []
    if resume:
        old_header, done = read_journal(path)
        if old_header is not None:
            for key in ("suite_hash", "target", "prompt_version"):
                if old_header.get(key) != header[key]:
                    raise ResumeError(
                        f"cannot resume {path}: it was written for {key} {old_header.get(key)!r}, this run "
                        f"has {header[key]!r} (use another --out, or run without --resume to start over)"
                    )
        elif done:
            raise ResumeError(f"cannot resume {path}: it has no header line")
    repeats = suite.gate.repeats
    seen = {(r.case_id, r.repeat) for r in done}
    wanted = {(c.id, n) for c in suite.cases for n in range(repeats)}
    done = [r for r in done if (r.case_id, r.repeat) in wanted]
    todo = [(case, n) for n in range(repeats) for case in suite.cases if (case.id, n) not in seen]
    journal = Journal(path, header, append=resume and path.exists() and bool(read_journal(path)[0]))
    show = progress if progress is not None else stderr.isatty()
    bar = Progress(len(wanted), stderr if show else None, done=len(done))
    new_runs: list[CaseRun] = []

    # Each worker takes the next (case, repeat), runs it, scores it and journals it itself: no hand-off
    # per run between threads. The first failure stops every worker after its current run, which is
    # still journalled (it was paid for); nothing queued is started.
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []
    queue = iter(todo)

    def worker() -> None:
        while not stop.is_set():
            with lock:
                item = next(queue, None)
            if item is None:
                return
            case, repeat = item
            try:
                output = target.run(suite, case)
                run = CaseRun(case.id, repeat, output, score(suite, case, output))
                journal.append(run)
            except BaseException as exc:  # a crashing target or scorer, Ctrl-C raised in a test
                with lock:
                    failures.append(exc)
                stop.set()
                return
            with lock:
                new_runs.append(run)
                bar.update(run)

    threads = [
        threading.Thread(target=worker, name=f"aif-eval-{n}", daemon=True)
        for n in range(min(concurrency, len(todo)))
    ]
    try:
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()  # interruptible: Ctrl-C lands here
        except BaseException:
            stop.set()  # let the runs in flight finish and be journalled, then re-raise
            for thread in threads:
                thread.join()
            raise
        if failures:
            raise failures[0]
    finally:
        journal.close()
        bar.finish()
    runs = _sorted([*done, *new_runs], suite)
    verdict = (verdict_fn or default_verdict)(suite, runs)
    result = EvalResult(
        suite=suite,
        verdict=verdict,
        runs=runs,
        out_dir=out,
        target=target.name,
        prompt_version=prompt_version,
        concurrency=concurrency,
        executed=len(new_runs),
        resumed=len(done),
        wall_s=time.perf_counter() - started,
    )
    result.outputs[JOURNAL] = path
    if write_reports:
        result.outputs.update(write_outputs(out, suite, runs, verdict, result_meta(result)))
    return result


def result_meta(result: EvalResult) -> dict[str, Any]:
    """What the reports say about the run besides the cases."""
    return {
        "suite": result.suite.name,
        "suite_hash": result.suite.content_hash,
        "suite_path": str(result.suite.path),
        "target": result.target,
        "prompt": result.suite.prompt.name if result.suite.prompt else None,
        "prompt_version": result.prompt_version,
        "model": result.suite.model,
        "concurrency": result.concurrency,
        "runs_executed": result.executed,
        "runs_resumed": result.resumed,
        "wall_s": round(result.wall_s, 3),
    }


def run(
    suite: Suite,
    target: Target,
    concurrency: int = 8,
    out_dir: str | os.PathLike[str] = "eval-out",
    resume: bool = False,
    **kwargs: Any,
) -> SuiteVerdict:
    """``execute(...).verdict``: the spec's signature."""
    return execute(suite, target, out_dir=out_dir, concurrency=concurrency, resume=resume, **kwargs).verdict
