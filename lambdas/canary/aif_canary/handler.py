"""Lambda entry point. EventBridge Scheduler invokes it once per feature with
``{"team": ..., "feature": ..., "secret_id": <the feature's API-key secret ARN>}``.

Environment: ``AIF_GATEWAY_URL`` (the gateway's ``/v1`` base URL), ``AIF_METRICS_NAMESPACE`` (default
``AIFactory``), ``AIF_CANARY_SUITES`` (default: ``canary_suites.json`` next to this file, written at
synth time). Metrics, per (Team, Feature): ``CanaryPassRate`` (share of cases that passed, 0..1),
``EvalPassRate`` (share of assertions that held, 0..1), ``CanaryCases``, ``CanaryErrors`` (cases the
gateway did not answer) and ``CanaryLatencyMs``.

A suite that ran (even with every case failing) returns normally: the metrics carry the verdict and
the scheduler does not retry. A broken invocation (unknown feature, unreadable secret) raises, so the
scheduler retries it and finally parks the event in its dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from aif_gateway import contract as c

from .runner import GatewayClient, SuiteResult, run_suite

SUITES_FILE = "canary_suites.json"
DEFAULT_NAMESPACE = c.METRICS_NAMESPACE
SECRET_CACHE_S = 300.0  # a rotated key is picked up within five minutes
SAFETY_MS = 35_000  # stop starting cases when less than this is left of the Lambda's time

log = logging.getLogger("aif_canary")
log.setLevel(logging.INFO)

_suites: dict[str, Any] | None = None
_secrets: dict[str, tuple[str, float]] = {}
_secrets_client: Any = None


def load_suites(path: str | None = None) -> dict[str, Any]:
    global _suites
    if path is not None or _suites is None:
        file = path or os.environ.get("AIF_CANARY_SUITES") or str(Path(__file__).with_name(SUITES_FILE))
        data = json.loads(Path(file).read_text(encoding="utf-8"))
        if path is not None:
            return dict(data["features"])
        _suites = dict(data["features"])
    return _suites


def api_key(secret_id: str) -> str:
    """The feature's key from its secret (JSON ``{"api_key", "key_id"}``), cached for a few minutes."""
    global _secrets_client
    cached = _secrets.get(secret_id)
    if cached is not None and time.monotonic() - cached[1] < SECRET_CACHE_S:
        return cached[0]
    if _secrets_client is None:
        import boto3

        _secrets_client = boto3.client("secretsmanager")
    value = json.loads(_secrets_client.get_secret_value(SecretId=secret_id)["SecretString"])["api_key"]
    _secrets[secret_id] = (value, time.monotonic())
    return str(value)


def emf(team: str, feature: str, result: SuiteResult, namespace: str) -> dict[str, Any]:
    """One CloudWatch Embedded Metric Format record (printed to stdout, turned into metrics by Lambda)."""
    latencies = [c.latency_ms for c in result.cases if c.latency_ms is not None]
    metrics: dict[c.Metric, float] = {
        c.CANARY_PASS_RATE: round(result.pass_rate, 5),
        c.EVAL_PASS_RATE: round(result.assertion_pass_rate, 5),
        c.CANARY_CASES: len(result.cases),
        c.CANARY_ERRORS: result.errors,
    }
    if latencies:
        metrics[c.CANARY_LATENCY_MS] = round(sum(latencies) / len(latencies), 1)
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
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
        "Suite": result.name,
    }
    record.update({m.name: value for m, value in metrics.items()})
    return record


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    team, feature = str(event.get("team", "")), str(event.get("feature", ""))
    suite = load_suites().get(f"{team}/{feature}")
    if suite is None:
        raise ValueError(f"no canary suite for {team}/{feature!r} in this deployment")
    base_url = os.environ[c.GATEWAY_URL_ENV]
    client = GatewayClient(base_url, api_key(str(event["secret_id"])))

    def out_of_time() -> bool:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return remaining is not None and remaining() < SAFETY_MS

    result = run_suite(suite, client, out_of_time)
    namespace = os.environ.get(c.METRICS_NAMESPACE_ENV) or DEFAULT_NAMESPACE
    print(json.dumps(emf(team, feature, result, namespace), separators=(",", ":")), flush=True)
    summary = {"team": team, "feature": feature, **result.to_dict()}
    failed = [c for c in result.cases if not c.passed]
    if failed:
        log.warning(
            "canary %s/%s: %d of %d cases failed: %s",
            team,
            feature,
            len(failed),
            len(result.cases),
            json.dumps([c.__dict__ for c in failed])[:4000],
        )
    return summary
