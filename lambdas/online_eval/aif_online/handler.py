"""Lambda entry points of online evaluation.

``sample``: a CloudWatch Logs subscription on the Bedrock model invocation log group delivers batches of
log records, and the gateways' sample queues deliver the exchanges the gateways sent themselves
(targets outside Bedrock's log: ``aif_gateway.online_samples``); each record attributed to a feature
with sampling on (``AIF_ONLINE_SAMPLING``, JSON
``{"team/feature": {"rate", "retention_days", "table", "gateway"}}``), made by that feature's gateway
(``gateway``, its ``edge_namespace``: the log group is shared by every gateway in the account and region)
and whose request id falls in the sample is written to the feature's sample table (encrypted with the
feature's key, expiring through its TTL).

``score``: the sample table's stream delivers new items; each is scored (``scoring``; the judge through
the gateway when ``AIF_GATEWAY_URL`` and ``AIF_JUDGE_SECRET`` are set) and published as one EMF record
of the ``Online*`` metrics with the feature's dimensions. The free-traffic assertions and the judge
rubric come from ``online_suites.json`` beside this file (written at synth time). With
``AIF_MLFLOW_TRACKING_URI`` set, each scored sample is also recorded as an MLflow trace in the eval runs'
experiment (``mlflow_trace``); a trace that fails is logged and counted (``OnlineTraceFailures``), and the
sample's scores are published all the same.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aif_gateway import contract as c
from aif_online.sampling import (
    Exchange,
    SamplingSettings,
    belongs_to,
    exchange_from_log,
    exchange_from_message,
    is_sampled,
    sample_item,
)
from aif_online.scoring import ExchangeScores, ScoringStep, free_traffic_assertions, score_exchange

SAMPLING_ENV = "AIF_ONLINE_SAMPLING"
SUITES_FILE = "online_suites.json"
_dynamodb: Any = None


def sampling_settings(raw: str | None = None) -> dict[str, SamplingSettings]:
    """``team/feature`` -> settings, from ``AIF_ONLINE_SAMPLING``.

    :raises ValueError: a feature's settings are invalid (the message names the feature and the field).
    """
    data = json.loads(raw if raw is not None else os.environ.get(SAMPLING_ENV, "{}"))
    settings = {}
    for key, v in data.items():
        gateway = v.get("gateway")
        if not isinstance(gateway, str) or not gateway:
            raise ValueError(
                f"{SAMPLING_ENV}: {key}: gateway: the edge_namespace of the feature's gateway is required, "
                f"got {gateway!r} (without it any gateway's traffic would be sampled)"
            )
        settings[key] = SamplingSettings(float(v["rate"]), int(v["retention_days"]), str(v["table"]), gateway)
    return settings


def decode_subscription(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invocation-log records of a CloudWatch Logs subscription event (gzip + base64 JSON)."""
    payload = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    records = []
    for log_event in payload.get("logEvents", []):
        try:
            record = json.loads(log_event["message"])
        except (ValueError, KeyError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def select(
    records: list[dict[str, Any]], settings: Mapping[str, SamplingSettings]
) -> list[tuple[Exchange, SamplingSettings]]:
    """The sampled exchanges among ``records`` with their feature's settings: only records of the
    feature's own gateway (another gateway's feature of the same name is another feature)."""
    chosen = []
    for record in records:
        exchange = exchange_from_log(record)
        if exchange is None:
            continue
        feature = settings.get(f"{exchange.team}/{exchange.feature}")
        if (
            feature is not None
            and belongs_to(exchange, feature)
            and is_sampled(exchange.request_id, feature.rate)
        ):
            chosen.append((exchange, feature))
    return chosen


def sample(event: Mapping[str, Any], context: Any = None, *, client: Any = None) -> dict[str, Any]:
    """Writes the sampled exchanges of a batch to their features' tables: a subscription batch of the
    invocation log (returns ``{"sampled": n}``; a failure fails the batch, which Lambda retries and then
    sends to the dead-letter queue), or an SQS batch of a gateway's sample queue (returns the SQS partial
    batch response: a message that failed is received again, then moved to the queue's dead-letter
    queue)."""
    global _dynamodb
    if client is None:
        if _dynamodb is None:
            import boto3

            _dynamodb = boto3.client("dynamodb")
        client = _dynamodb
    settings = sampling_settings()
    now = int(time.time())
    if "Records" in event:
        return _sample_messages(event["Records"], settings, client, now)
    chosen = select(decode_subscription(event), settings)
    for exchange, feature in chosen:
        _put_sample(client, exchange, feature, now)
    return {"sampled": len(chosen)}


def _put_sample(client: Any, exchange: Exchange, feature: SamplingSettings, now: int) -> None:
    item = sample_item(exchange, feature.retention_days, now)
    client.put_item(TableName=feature.table, Item=_to_dynamo(item))


def _sample_messages(
    records: list[Mapping[str, Any]], settings: Mapping[str, SamplingSettings], client: Any, now: int
) -> dict[str, Any]:
    """The exchanges a gateway sent (one SQS message each). A message that is not a sample is reported
    as failed, so after the queue's receive limit it waits in the dead-letter queue for a person (it is
    logged by message id and the reason only: no text); one of a feature not sampled here (its sampling
    removed, another stage's) or outside its rate is dropped."""
    failures = []
    sampled = 0
    for record in records:
        message_id = record.get("messageId", "")
        try:
            exchange = exchange_from_message(json.loads(record["body"]))
        except (ValueError, KeyError, TypeError) as exc:
            _log("ERROR", "not a sample message", messageId=message_id, reason=str(exc)[:300])
            failures.append({"itemIdentifier": message_id})
            continue
        feature = settings.get(f"{exchange.team}/{exchange.feature}")
        if (
            feature is None
            or not belongs_to(exchange, feature)
            or not is_sampled(exchange.request_id, feature.rate)
        ):
            continue
        try:
            _put_sample(client, exchange, feature, now)
            sampled += 1
        except Exception as exc:  # retried by SQS: the message stays until a write succeeds
            _log(
                "ERROR",
                "writing a sample failed",
                messageId=message_id,
                table=feature.table,
                reason=type(exc).__name__,
            )
            failures.append({"itemIdentifier": message_id})
    _log("INFO", "gateway samples", received=len(records), sampled=sampled, failed=len(failures))
    return {"batchItemFailures": failures}


def _to_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, bool):
            out[key] = {"BOOL": value}
        elif isinstance(value, int | float):
            out[key] = {"N": str(value)}
        else:
            out[key] = {"S": str(value)}
    return out


def _from_dynamo(image: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, typed in image.items():
        (kind, value), *_ = typed.items()
        out[key] = value if kind != "N" else (int(value) if value.lstrip("-").isdigit() else float(value))
    return out


def exchange_from_image(image: Mapping[str, Any]) -> Exchange:
    """The exchange stored in a stream record's ``NewImage``."""
    data = _from_dynamo(image)
    fields = Exchange.__dataclass_fields__
    return Exchange(**{k: v for k, v in data.items() if k in fields and k != "extra"})


def items_from_dynamo(items: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain dicts of DynamoDB items (strings, numbers, booleans)."""
    return [_from_dynamo(item) for item in items]


def load_suites(path: str | None = None) -> dict[str, Any]:
    """``team/feature`` -> ``{"assertions": [...], "rubric": str | None}`` from the asset."""
    file = path or str(Path(__file__).with_name(SUITES_FILE))
    return dict(json.loads(Path(file).read_text(encoding="utf-8"))["features"])


def emf(
    exchange: Exchange,
    scores: ExchangeScores,
    judge: float | None,
    namespace: str,
    *,
    judge_tokens: int | None = None,
    trace_failed: bool | None = None,
) -> dict[str, Any]:
    """One CloudWatch Embedded Metric Format record for a scored exchange."""
    metrics: dict[c.Metric, float] = {
        c.ONLINE_SAMPLES_SCORED: 1,
        c.ONLINE_PII_LEAKS: scores.pii_leaks,
        c.ONLINE_OUTPUT_CHARS: scores.output_chars,
        c.ONLINE_REFUSALS: int(scores.refused),
        c.ONLINE_TOOL_CALL_ANSWERS: int(scores.tool_calls > 0),
        c.ONLINE_GUARDRAIL_INTERVENTIONS: int(scores.guardrail_intervened),
    }
    if scores.assertion_pass_rate is not None:
        metrics[c.ONLINE_ASSERTION_PASS_RATE] = round(scores.assertion_pass_rate, 5)
    if judge is not None:
        metrics[c.ONLINE_JUDGE_SCORE] = round(judge, 5)
    if judge_tokens:
        metrics[c.ONLINE_JUDGE_TOKENS] = judge_tokens
    if trace_failed is not None:  # only when tracing is on: 0 or 1 per sample
        metrics[c.ONLINE_TRACE_FAILURES] = int(trace_failed)
    return {
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
        c.TEAM: exchange.team,
        c.FEATURE: exchange.feature,
        **{m.name: v for m, v in metrics.items()},
        "request_id": exchange.request_id,
        "language": scores.language,
        "failures": list(scores.failures),
    }


TRACE_RESERVE_MS = 60_000
"""Time a sample's trace may take at most (five calls of at most 10 s) plus a margin: with less left in
the invocation, the rest of the batch is not traced."""


def _remaining_ms(context: Any) -> int:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return int(remaining()) if callable(remaining) else TRACE_RESERVE_MS * 10


def _warn(message: str, request_id: str) -> None:
    _log("WARNING", message, request_id=request_id)


def _log(level: str, message: str, **fields: Any) -> None:
    """One JSON log line (the functions log as plain JSON, not through Powertools)."""
    print(json.dumps({"level": level, "message": message, **fields}))


def score(
    event: Mapping[str, Any],
    context: Any = None,
    *,
    judge: Any = None,
    suites: Mapping[str, Any] | None = None,
    tracer: Any = None,
) -> dict[str, int]:
    """Stream handler: scores each inserted sample, records its trace (``tracer``, a
    ``mlflow_trace.TraceRecorder``) and prints its EMF record."""
    suites = suites if suites is not None else load_suites()
    namespace = os.environ.get(c.METRICS_NAMESPACE_ENV, c.METRICS_NAMESPACE)
    scored = 0
    # Tracing must never cost the batch (a timed-out batch is retried, then dead-lettered, scores and
    # all): after a call got no answer, or near the function's timeout, the rest of the batch is not
    # traced (each such sample counts as a trace failure).
    skip_traces: str | None = None
    for record in event.get("Records", []):
        if record.get("eventName") != "INSERT":
            continue
        exchange = exchange_from_image(record["dynamodb"]["NewImage"])
        suite = suites.get(f"{exchange.team}/{exchange.feature}", {})
        steps: list[ScoringStep] = []
        scores = score_exchange(exchange, free_traffic_assertions(suite.get("assertions", [])), steps)
        judged: float | None = None
        rubric = suite.get("rubric")
        tokens: int | None = None
        call = None
        if judge is not None and rubric and exchange.output:
            from aif_online.mlflow_trace import JudgeCall

            started = time.time_ns()
            try:
                judged, reason = judge.score(rubric, exchange.input, exchange.output)
                tokens = getattr(judge, "tokens", None)
                call = JudgeCall(
                    str(getattr(judge, "model", "")), started, time.time_ns(), judged, reason, tokens
                )
            except Exception as exc:  # a judge outage must not lose the deterministic scores
                _warn(f"judge failed: {exc}", exchange.request_id)
                call = JudgeCall(
                    str(getattr(judge, "model", "")), started, time.time_ns(), error=type(exc).__name__
                )
        trace_failed: bool | None = None
        if tracer is not None:
            if skip_traces is None and _remaining_ms(context) < TRACE_RESERVE_MS:
                skip_traces = f"less than {TRACE_RESERVE_MS // 1000} s of the invocation left"
            if skip_traces is not None:
                _warn(f"MLflow trace skipped: {skip_traces}", exchange.request_id)
                trace_failed = True
            else:
                try:
                    tracer.record(exchange, scores, steps, call)
                    trace_failed = False
                except Exception as exc:  # the trace is a copy for people; the scores go out regardless
                    _warn(f"MLflow trace not recorded: {exc}", exchange.request_id)
                    trace_failed = True
                    if getattr(exc, "status", None) == 0:  # no answer at all: do not wait on it again
                        skip_traces = "the tracking server did not answer earlier in this batch"
        print(
            json.dumps(
                emf(exchange, scores, judged, namespace, judge_tokens=tokens, trace_failed=trace_failed)
            )
        )
        scored += 1
    return {"scored": scored}


JUDGE_SECRET_ENV = "AIF_JUDGE_SECRET"
JUDGE_MODEL_ENV = "AIF_JUDGE_MODEL"
_judge: Any = None


def judge_from_env() -> Any:
    """The gateway judge configured by the environment (cached per container), or None without one."""
    global _judge
    url, secret = os.environ.get(c.GATEWAY_URL_ENV), os.environ.get(JUDGE_SECRET_ENV)
    if not (url and secret):
        return None
    if _judge is None:
        import boto3

        from aif_online.judge import OnlineJudge

        value = boto3.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]
        _judge = OnlineJudge(
            url, json.loads(value)["api_key"], model=os.environ.get(JUDGE_MODEL_ENV, "chat-smart")
        )
    return _judge


_tracer: Any = None


def tracer_from_env(suites: Mapping[str, Any] | None = None) -> Any:
    """The MLflow trace recorder the environment configures (cached per container), or None without
    ``AIF_MLFLOW_TRACKING_URI``."""
    global _tracer
    uri = os.environ.get(c.MLFLOW_TRACKING_URI_ENV)
    if not uri:
        return None
    if _tracer is None:
        from aif_online.mlflow_rest import MlflowRest
        from aif_online.mlflow_trace import TraceRecorder

        features = suites if suites is not None else load_suites()
        _tracer = TraceRecorder(
            MlflowRest(uri, endpoint=os.environ.get(c.MLFLOW_ENDPOINT_ENV) or None),
            os.environ.get(c.MLFLOW_EXPERIMENT_ENV) or DEFAULT_EXPERIMENT,
            {key: dict(value) for key, value in features.items()},
        )
    return _tracer


DEFAULT_EXPERIMENT = "ai-factory/evals"
"""The eval runs' experiment (``ai_factory.prompts.registry.EVAL_EXPERIMENT``; the construct sets
``AIF_MLFLOW_EXPERIMENT`` from it)."""


def lambda_score(event: Mapping[str, Any], context: Any = None) -> dict[str, int]:
    """Lambda entry point of the scorer: ``score`` with the judge and the trace recorder from the
    environment."""
    return score(event, context, judge=judge_from_env(), tracer=tracer_from_env())
