"""Evaluate one catalog model directly against the factory's standard suites, and record the evidence.

``ai-factory models evaluate MODEL`` calls ``evaluate_model``: each suite runs with its own generic
prompt against a route made for this one model (no fallback, no feature prompt in between), each run is
recorded in MLflow (experiment ``ai-factory/evals``, tagged with the model), and the results become the
entry's ``evidence`` (``ai_factory.catalog.evidence``) that approval requires.

Targets: ``local`` evaluates offline models (provider ``echo``) in this process; ``bedrock`` calls
Bedrock Converse with the caller's AWS credentials (the docs show how to produce evidence in an account).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from ai_factory.catalog.evidence import STANDARD_SUITES, SuiteEvidence
from ai_factory.catalog.model_catalog import CatalogRoute, ModelCatalog

from .runner import EvalResult, default_scorer, execute
from .safety import bind_to_model, shipped_suite_path
from .suite import load_suite

__all__ = ["EvaluationError", "ModelEvaluation", "evaluate_model", "evidence_of"]

EVAL_ROUTE_PREFIX = "evaluate."


class EvaluationError(ValueError):
    """The model cannot be evaluated as asked (unknown model, wrong target for its provider, ...)."""


@dataclass
class ModelEvaluation:
    """What ``evaluate_model`` did: the results and run ids, by suite."""

    model: str
    results: dict[str, EvalResult]
    run_ids: dict[str, str | None]
    evidence: dict[str, SuiteEvidence]


def evidence_of(
    result: EvalResult, run_id: str | None, suite_ref: str, today: date | None = None
) -> SuiteEvidence:
    """A suite's evidence record from its eval result: pass rate, median latency, cost per case run."""
    runs = result.runs
    latencies = [r.output.latency_ms for r in runs if r.output.error is None]
    return SuiteEvidence(
        suite=suite_ref,
        suite_version=result.suite.version,
        passed=bool(result.verdict.passed),
        pass_rate=float(result.verdict.pass_rate),
        cases=len(result.verdict.cases),
        latency_ms_p50=float(statistics.median(latencies)) if latencies else 0.0,
        cost_per_case_usd=sum(r.output.cost_usd for r in runs) / len(runs) if runs else 0.0,
        run_id=run_id,
        target=result.target,
        evaluated_on=today or date.today(),
    )


def _target(
    catalog: ModelCatalog,
    name: str,
    target: str,
    *,
    catalog_path: str | Path | None,
    region: str | None,
    client: Any,
    script: Any,
) -> tuple[Any, str]:
    """The target to run against and the route alias that reaches exactly ``name``."""
    model = catalog.models.get(name)
    if model is None:
        raise EvaluationError(
            f"model {name!r} is not in the catalog ({catalog.source}); known: {sorted(catalog.models)}"
        )
    if model.modality != "chat":
        raise EvaluationError(
            f"model {name!r} is an {model.modality} model: the standard suites are chat suites"
        )
    if model.status == "blocked":
        raise EvaluationError(f"model {name!r} is blocked: it is not evaluated for approval")
    alias = EVAL_ROUTE_PREFIX + name
    route = CatalogRoute(alias=alias, targets=(name,), modality="chat")
    config = ModelCatalog({**catalog.models}, {alias: route}, catalog.source).gateway_config(region)
    if target == "local":
        if model.provider != "echo":
            raise EvaluationError(
                f"model {name!r} is served by {model.provider}: evaluate it with --target bedrock in an "
                "account "
                "(--target local runs only the offline models)"
            )
        from .targets import LocalTarget, offline_config

        offline = offline_config(str(catalog_path) if catalog_path else None)
        offline = replace(offline, routes={**offline.routes, alias: config.routes[alias]})
        return LocalTarget(config=offline, script=script), alias
    if target == "bedrock":
        if model.provider != "bedrock":
            raise EvaluationError(f"model {name!r} is not a Bedrock model: use --target local")
        from .targets import BedrockTarget

        return BedrockTarget(config=config, region=region, client=client), alias
    raise EvaluationError(f"unknown target {target!r} (local or bedrock)")


def evaluate_model(
    name: str,
    *,
    suites: tuple[str, ...] | None = None,
    catalog_path: str | Path | None = None,
    target: str = "local",
    out_dir: str | Path = ".ai-factory/model-evals",
    tracking_uri: str | None = None,
    record: bool = True,
    region: str | None = None,
    client: Any = None,
    script: Any = None,
    today: date | None = None,
) -> ModelEvaluation:
    """Run ``suites`` (default: the standard ones) against catalog model ``name``; log each run in MLflow
    when ``record``. The catalog file is not changed here (``write_evidence`` does that). ``client``: a
    bedrock-runtime client (tests pass a stubbed one); ``script``: the offline model's script (tests make
    it misbehave)."""
    catalog = ModelCatalog.load(catalog_path)
    refs = tuple(suites or STANDARD_SUITES["chat"])
    loaded = {ref: load_suite(shipped_suite_path(ref)) for ref in refs}  # all checked before any call
    runner, alias = _target(
        catalog, name, target, catalog_path=catalog_path, region=region, client=client, script=script
    )
    results: dict[str, EvalResult] = {}
    run_ids: dict[str, str | None] = {}
    try:
        for ref, suite in loaded.items():
            bound = bind_to_model(suite, alias)
            folder = Path(out_dir) / name / ref.replace("/", "-")
            results[ref] = execute(bound, runner, out_dir=folder, score=default_scorer(), progress=False)
    finally:
        runner.close()
    for ref, result in results.items():
        run_ids[ref] = None
        if record:
            from .mlflow_log import log_eval

            run_ids[ref] = log_eval(
                replace(result, suite=replace(result.suite, name=ref)), tracking_uri=tracking_uri, model=name
            )
    evidence = {ref: evidence_of(results[ref], run_ids[ref], ref, today) for ref in refs}
    return ModelEvaluation(name, results, run_ids, evidence)
