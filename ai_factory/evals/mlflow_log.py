"""Eval records in MLflow: one run per eval in the experiment ``ai-factory/evals``.

The tags are the contract with the prompt registry's promotion gate (``PromptRegistry.promote``):
``aif.prompt_name``, ``aif.prompt_version`` and ``aif.eval_passed`` (plus ``aif.suite`` and
``aif.target`` for people). ``aif.eval_passed`` is written last, after the artifacts, so a run that
failed half-way never reads as a pass. MLflow is imported lazily (about a second): ``--no-mlflow``
costs nothing.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ai_factory.evals.runner import EvalResult

TAG_SUITE = "aif.suite"
TAG_TARGET = "aif.target"
TAG_SUITE_HASH = "aif.suite_hash"
TAG_MODEL = "aif.model"


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def eval_metrics(result: EvalResult) -> dict[str, float]:
    """The run's metrics: the gate's figures, per-assertion-type pass rate and mean score, latency, cost."""
    verdict = result.verdict
    passed_cases = sum(1 for c in verdict.cases if c.passed)
    metrics: dict[str, float] = {
        "pass_rate": verdict.pass_rate,
        "cases_passed": passed_cases,
        "cases_total": len(verdict.cases),
        "hard_failures": sum(len(c.hard_failures) for c in verdict.cases),
        "runs_total": len(result.runs),
        "runs_passed": sum(1 for r in result.runs if r.passed),
        "runs_errored": sum(1 for r in result.runs if r.output.error is not None),
        "total_cost_usd": sum(r.output.cost_usd for r in result.runs),
        "input_tokens": sum(r.output.input_tokens for r in result.runs),
        "output_tokens": sum(r.output.output_tokens for r in result.runs),
        "wall_s": result.wall_s,
    }
    latencies = [r.output.latency_ms for r in result.runs if r.output.error is None]
    if latencies:
        metrics["latency_p50_ms"] = _percentile(latencies, 50)
        metrics["latency_p95_ms"] = _percentile(latencies, 95)
    passes: dict[str, list[bool]] = defaultdict(list)
    scores: dict[str, list[float]] = defaultdict(list)
    for run in result.runs:
        for res in run.results:
            passes[res.type].append(res.passed)
            if res.score is not None:
                scores[res.type].append(res.score)
    for kind, outcomes in passes.items():
        metrics[f"assert.{kind}.pass_rate"] = sum(outcomes) / len(outcomes)
        if scores[kind]:
            metrics[f"assert.{kind}.mean_score"] = sum(scores[kind]) / len(scores[kind])
    return metrics


def eval_params(result: EvalResult, model: str | None) -> dict[str, str]:
    suite = result.suite
    return {
        "suite": suite.name,
        "suite_hash": suite.content_hash,
        "suite_path": str(suite.path),
        "prompt_name": suite.prompt.name if suite.prompt else "",
        "prompt_version": result.prompt_version,
        "model": model or suite.model or "",
        "target": result.target,
        "repeats": str(suite.gate.repeats),
        "min_pass_rate": str(suite.gate.min_pass_rate),
        "min_case_pass_fraction": str(suite.gate.min_case_pass_fraction),
        "concurrency": str(result.concurrency),
    }


def artifact_location(tracking_uri: str | None) -> str | None:
    """For a SQLite store, artifacts go next to the database (``mlartifacts/``), not into ``./mlruns``
    of whatever folder the eval ran in. Other stores keep their server's default."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.parent / "mlartifacts").resolve().as_uri()


def log_eval(
    result: EvalResult,
    *,
    tracking_uri: str | None = None,
    model: str | None = None,
    git_commit: str | None = None,
    client: Any = None,
) -> str:
    """Record ``result`` as a finished MLflow run and return its run ID."""
    from ai_factory.prompts import registry as reg

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if client is None:
        from mlflow import MlflowClient

        uri = tracking_uri or reg.default_tracking_uri()
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(reg.EVAL_EXPERIMENT)
    if experiment is None:
        experiment_id = client.create_experiment(
            reg.EVAL_EXPERIMENT,
            artifact_location=artifact_location(getattr(client, "tracking_uri", None) or tracking_uri),
            tags={"aif.kind": "evals"},
        )
    else:
        experiment_id = experiment.experiment_id
    suite = result.suite
    tags = {
        TAG_SUITE: suite.name,
        TAG_TARGET: result.target,
        TAG_SUITE_HASH: suite.content_hash,
        TAG_MODEL: model or suite.model or "",
        reg.TAG_GIT_COMMIT: git_commit or reg.current_git_commit(),
        "mlflow.runName": f"eval {suite.name}"
        + (f" {suite.prompt.name} v{result.prompt_version}" if suite.prompt else "")
        + f" ({result.target})",
        "mlflow.user": reg.current_user(),
    }
    if suite.prompt is not None:
        tags[reg.TAG_PROMPT_NAME] = suite.prompt.name
        tags[reg.TAG_PROMPT_VERSION] = result.prompt_version
    run = client.create_run(experiment_id, tags=tags)
    run_id = str(run.info.run_id)
    try:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in sorted(eval_metrics(result).items())],
            params=[Param(k, v) for k, v in sorted(eval_params(result, model).items())],
        )
        for path in result.outputs.values():
            if path.exists():
                client.log_artifact(run_id, str(path))
        # Last: the promotion gate reads this tag, so it appears only once the record is complete.
        client.set_tag(run_id, reg.TAG_EVAL_PASSED, str(result.verdict.passed).lower())
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id
