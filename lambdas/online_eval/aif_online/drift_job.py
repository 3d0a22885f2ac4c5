"""The daily drift job: for each sampled feature, compares the last day's samples with the baseline
window (the days before it, up to the table's retention) and publishes the drift metrics.

Event: ``{"features": [{"team", "feature", "table", "retention_days"}, ...]}`` (the schedule's constant
input). With ``AIF_MLFLOW_TRACKING_URI`` set, the job also deletes each feature's online-sample MLflow
traces older than its retention (``mlflow_trace.expire_traces``), so a trace lives no longer than its
sample; a failure there is logged and leaves the drift metrics alone.
Prompts are embedded through the gateway's ``/v1/embeddings`` route when ``AIF_GATEWAY_URL`` and
``AIF_JUDGE_SECRET`` are set (``AIF_EMBED_MODEL``, default ``embed``), else with ``hashed_embedding``.
A window with fewer than ``MIN_WINDOW`` samples publishes nothing: too few to judge. Otherwise one EMF
record per feature carries input drift (``InputDrift``, ``InputDriftPValue``) and every output-drift signal
(``OutputLengthRatio``, ``LanguageShareChange``, ``RefusalRateChange``, ``ToolCallRateChange``,
``GuardrailRateChange``), the metrics the feature's drift alarms watch.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aif_gateway import contract as c
from aif_online.drift import OutputStats, hashed_embedding, input_drift, output_drift
from aif_online.handler import items_from_dynamo
from aif_online.scoring import language, refused

__all__ = ["MIN_WINDOW", "drift_record", "run"]

MIN_WINDOW = 30
CURRENT_WINDOW_S = 86_400
MAX_PER_WINDOW = 500  # a random-free cap: the most recent samples, so the job's cost stays bounded

Embed = Callable[[Sequence[str]], list[list[float]]]


def _stats(items: Sequence[Mapping[str, Any]]) -> OutputStats:
    return OutputStats.of(
        [len(str(i.get("output", ""))) for i in items],
        [refused(str(i.get("output", ""))) for i in items],
        [int(i.get("tool_calls", 0)) for i in items],
        [bool(i.get("guardrail_intervened", False)) for i in items],
        [language(str(i.get("output", ""))) for i in items],
    )


def drift_record(
    team: str, feature: str, items: Sequence[Mapping[str, Any]], now: float, embed: Embed, namespace: str
) -> dict[str, Any] | None:
    """The EMF record of one feature's drift, or None when a window is too small to judge."""
    ordered = sorted(items, key=lambda i: float(i.get("sampled_at", 0)))
    current = [i for i in ordered if float(i.get("sampled_at", 0)) >= now - CURRENT_WINDOW_S][
        -MAX_PER_WINDOW:
    ]
    baseline = [i for i in ordered if float(i.get("sampled_at", 0)) < now - CURRENT_WINDOW_S][
        -MAX_PER_WINDOW:
    ]
    if len(current) < MIN_WINDOW or len(baseline) < MIN_WINDOW:
        return None
    drift_in = input_drift(
        embed([str(i["input"]) for i in baseline]), embed([str(i["input"]) for i in current])
    )
    drift_out = output_drift(_stats(baseline), _stats(current))
    metrics = {
        c.INPUT_DRIFT: round(drift_in.statistic, 6),
        c.INPUT_DRIFT_P_VALUE: round(drift_in.p_value, 4),
        c.OUTPUT_LENGTH_RATIO: round(drift_out.length_ratio, 4),
        c.LANGUAGE_SHARE_CHANGE: round(drift_out.main_language_share_change, 4),
        c.REFUSAL_RATE_CHANGE: round(drift_out.refusal_rate_change, 4),
        c.TOOL_CALL_RATE_CHANGE: round(drift_out.tool_call_rate_change, 4),
        c.GUARDRAIL_RATE_CHANGE: round(drift_out.guardrail_rate_change, 4),
    }
    # A baseline of empty answers (tool calls only) has no length ratio. Infinity is not JSON: the line
    # would be rejected whole and the day's other drift metrics lost with it.
    metrics = {m: v for m, v in metrics.items() if math.isfinite(v)}
    return {
        "_aws": {
            "Timestamp": int(now * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(c.FEATURE_DIMENSIONS)],
                    "Metrics": [{"Name": m.name, "Unit": m.unit} for m in metrics],
                }
            ],
        },
        c.TEAM: team,
        c.FEATURE: feature,
        **{m.name: v for m, v in metrics.items()},
        "baseline_size": len(baseline),
        "current_size": len(current),
        "main_language": drift_out.main_language,
    }


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[Mapping[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items_from_dynamo(items)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _embedder() -> Embed:
    url, secret = os.environ.get(c.GATEWAY_URL_ENV), os.environ.get("AIF_JUDGE_SECRET")
    if not (url and secret):
        return lambda texts: [hashed_embedding(t) for t in texts]
    import boto3

    from ai_factory.evals.assertions import GatewayEmbedder

    key = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"])[
        "api_key"
    ]
    embedder = GatewayEmbedder(url, key, model=os.environ.get("AIF_EMBED_MODEL", "embed"))
    return lambda texts: embedder.embed(list(texts))


def run(
    event: Mapping[str, Any],
    context: Any = None,
    *,
    client: Any = None,
    embed: Embed | None = None,
    mlflow: Any = None,
) -> dict[str, int]:
    """Lambda entry point: one EMF record per feature with enough samples in both windows."""
    if client is None:
        import boto3

        client = boto3.client("dynamodb")
    embed = embed or _embedder()
    namespace = os.environ.get(c.METRICS_NAMESPACE_ENV, c.METRICS_NAMESPACE)
    published = 0
    traces = _trace_client() if mlflow is None else mlflow
    for entry in event.get("features", []):
        record = drift_record(
            entry["team"], entry["feature"], _scan(client, entry["table"]), time.time(), embed, namespace
        )
        if record is not None:
            print(json.dumps(record))
            published += 1
        if traces is not None and entry.get("retention_days"):
            _expire(traces, entry)
    return {"published": published}


def _trace_client() -> Any:
    uri = os.environ.get(c.MLFLOW_TRACKING_URI_ENV)
    if not uri:
        return None
    from aif_online.mlflow_rest import MlflowRest

    return MlflowRest(uri, endpoint=os.environ.get(c.MLFLOW_ENDPOINT_ENV) or None)


def _expire(traces: Any, entry: Mapping[str, Any]) -> None:
    from aif_online.handler import DEFAULT_EXPERIMENT
    from aif_online.mlflow_trace import expire_traces

    team, feature = entry["team"], entry["feature"]
    experiment = os.environ.get(c.MLFLOW_EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
    try:
        deleted = expire_traces(traces, experiment, team, feature, int(entry["retention_days"]), time.time())
        message, level = f"expired {deleted} MLflow trace(s) past {entry['retention_days']} days", "INFO"
    except Exception as exc:  # the traces wait for tomorrow's run; the drift metrics are out already
        message, level = f"MLflow traces not expired: {exc}", "WARNING"
    print(json.dumps({"level": level, "message": message, c.TEAM: team, c.FEATURE: feature}))
