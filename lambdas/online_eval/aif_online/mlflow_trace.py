"""A scored sample as an MLflow trace, in the experiment of the eval runs.

One trace per sampled request (its id derived from the gateway's request id, so a retried stream batch
writes the same trace again instead of a second one):

* the **root span** is the request as Bedrock logged it: OpenTelemetry GenAI attributes
  (``gen_ai.operation.name``, ``gen_ai.system``, request/response model, token usage, finish reasons),
  the factory's ``aif.team`` / ``aif.feature`` / ``aif.request_id``, and the question and answer as
  ``gen_ai.input.messages`` / ``gen_ai.output.messages`` **only when ``text_policy`` allows it**;
* a **child span per scoring step** (free-traffic assertions, PII leakage, output statistics) and one
  for the **judge call** (its model, tokens, score), with their real timings;
* the **scores** as MLflow feedback assessments (the trace table's assessment columns in MLflow 3's UI)
  and as trace tags ``aif.score.*`` (searchable: ``tags.`aif.score.pii_leaks` = '1'``).

Text policy: sampling already requires a clearance that allows keeping copies of traffic (``restricted``
features cannot sample at all); the scorer checks it again here, explicitly and failing closed, because
the trace leaves the feature's own encrypted table for the MLflow server and its readers: an unknown or
missing clearance, a clearance outside ``TEXT_CLEARANCES`` or the feature's ``trace_text=False`` keep
every text off the trace (question, answer, judge input and reason, assertion failure messages),
leaving counts, verdicts and model names. ``expire_traces`` (run daily by the drift job) deletes a
feature's traces past its ``retention_days``, so no trace outlives its sample.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aif_gateway.trace_export import otlp_value
from aif_online.mlflow_rest import MlflowRest
from aif_online.sampling import Exchange
from aif_online.scoring import ExchangeScores, ScoringStep

__all__ = [
    "TEXT_CLEARANCES",
    "JudgeCall",
    "TraceRecorder",
    "build_assessments",
    "build_spans",
    "expire_traces",
    "text_policy",
]

TEXT_CLEARANCES = ("public", "internal", "confidential")
"""Clearances whose sampled text may be kept on a trace (the ones that may sample at all)."""
GEN_AI_SYSTEM = "aws.bedrock"  # the invocation log is Bedrock's: every sampled exchange went to Bedrock
SCOPE = "aif_online"
SOURCE_ID = "aif_online.scoring"


@dataclass(frozen=True)
class JudgeCall:
    """The judge's call for one sample: timing (epoch ns), outcome, tokens; ``error`` when it failed."""

    model: str
    start_ns: int
    end_ns: int
    score: float | None = None
    reason: str = ""
    tokens: int | None = None
    error: str | None = None


def text_policy(clearance: Any, trace_text: Any) -> tuple[bool, str]:
    """``(allowed, why not)``: whether the exchange's text may go on its trace (fails closed)."""
    if clearance not in TEXT_CLEARANCES:
        return False, f"clearance {clearance!r} does not allow keeping text outside the request path"
    if trace_text is not True:
        return False, "the feature's online_sampling.trace_text is off"
    return True, ""


def trace_id_of(request_id: str) -> str:
    """The 32-hex OTLP trace id of a request (MLflow's trace id is ``tr-`` plus it)."""
    return hashlib.sha256(f"aif-online:{request_id}".encode()).hexdigest()[:32]


def _span_id(trace_id: str, name: str) -> str:
    return hashlib.sha256(f"{trace_id}/{name}".encode()).hexdigest()[:16]


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": otlp_value(v)} for k, v in values.items() if v is not None]


def _request_start_ns(exchange: Exchange, fallback_ns: int) -> int:
    try:
        stamp = datetime.fromisoformat(exchange.timestamp.replace("Z", "+00:00"))
    except ValueError:
        return fallback_ns
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1e9)


def _messages(role: str, text: str, finish_reason: str | None = None) -> str:
    message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return json.dumps([message], ensure_ascii=False)


def score_tags(scores: ExchangeScores, judge: JudgeCall | None) -> dict[str, str]:
    """The scores as trace tags (``aif.score.*``), strings as MLflow tags are."""
    tags = {
        "aif.score.pii_leaks": str(scores.pii_leaks),
        "aif.score.refused": str(scores.refused).lower(),
        "aif.score.output_chars": str(scores.output_chars),
        "aif.language": scores.language,
    }
    if scores.assertion_pass_rate is not None:
        tags["aif.score.assertion_pass_rate"] = f"{scores.assertion_pass_rate:.4g}"
    if judge is not None and judge.score is not None:
        tags["aif.score.judge"] = f"{judge.score:.4g}"
    return tags


def build_spans(
    exchange: Exchange,
    scores: ExchangeScores,
    steps: Sequence[ScoringStep],
    judge: JudgeCall | None,
    *,
    clearance: Any,
    trace_text: Any,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """The OTLP/JSON ``ExportTraceServiceRequest`` of one scored exchange (see the module docstring)."""
    allowed, why_not = text_policy(clearance, trace_text)
    now = now_ns if now_ns is not None else time.time_ns()
    trace_id = trace_id_of(exchange.request_id)
    root_id = _span_id(trace_id, "request")
    start = _request_start_ns(exchange, now - exchange.latency_ms * 1_000_000)
    tags = {
        "mlflow.traceName": f"online {exchange.team}/{exchange.feature}",
        "aif.source": "online-sample",
        "aif.team": exchange.team,
        "aif.feature": exchange.feature,
        "aif.request_id": exchange.request_id,
        "aif.model": exchange.model,
        "aif.clearance": str(clearance),
        "aif.text": "recorded" if allowed else "withheld",
        **score_tags(scores, judge),
    }
    root: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": GEN_AI_SYSTEM,
        "gen_ai.provider.name": GEN_AI_SYSTEM,
        "gen_ai.request.model": exchange.model,
        "gen_ai.response.model": exchange.model,
        "gen_ai.usage.input_tokens": exchange.input_tokens or None,
        "gen_ai.usage.output_tokens": exchange.output_tokens or None,
        "gen_ai.response.finish_reasons": [exchange.stop_reason] if exchange.stop_reason else None,
        "aif.team": exchange.team,
        "aif.feature": exchange.feature,
        "aif.request_id": exchange.request_id,
        "aif.latency_ms": exchange.latency_ms or None,
        "aif.tool_calls": exchange.tool_calls,
        "aif.guardrail_intervened": exchange.guardrail_intervened,
        **{f"mlflow.traceTag.{k}": v for k, v in tags.items()},
    }
    if allowed:
        root["gen_ai.input.messages"] = _messages("user", exchange.input)
        root["gen_ai.output.messages"] = _messages("assistant", exchange.output, exchange.stop_reason)
    else:
        withheld = json.dumps({"request_id": exchange.request_id, "text_withheld": why_not})
        root["mlflow.spanInputs"] = withheld
        root["mlflow.spanOutputs"] = withheld
    spans = [
        {
            "traceId": trace_id,
            "spanId": root_id,
            "name": f"chat {exchange.model}",
            "kind": 3,  # CLIENT: the gateway's call to Bedrock
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + exchange.latency_ms * 1_000_000),
            "attributes": _attributes(root),
            "status": {"code": 1},
        }
    ]
    for step in steps:
        outputs = {**step.outputs, **(step.detail if allowed else {})}
        spans.append(
            _child(trace_id, root_id, step.name, step.start_ns, step.end_ns, {
                "mlflow.spanType": json.dumps("EVALUATOR"),
                "mlflow.spanInputs": json.dumps({"request_id": exchange.request_id}),
                "mlflow.spanOutputs": json.dumps(outputs, ensure_ascii=False),
            })
        )  # fmt: skip
    if judge is not None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": judge.model,
            "aif.judge.tokens": judge.tokens,
            "mlflow.spanOutputs": json.dumps(
                {"score": judge.score, **({"reason": judge.reason} if allowed and judge.reason else {})},
                ensure_ascii=False,
            ),
        }
        if not allowed:
            attributes["mlflow.spanInputs"] = json.dumps({"text_withheld": why_not})
        if judge.error:
            attributes["error.type"] = judge.error
        spans.append(
            _child(trace_id, root_id, "judge", judge.start_ns, judge.end_ns, attributes, error=judge.error)
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes({"service.name": "ai-factory-online-scorer"})},
                "scopeSpans": [{"scope": {"name": SCOPE}, "spans": spans}],
            }
        ]
    }


def _child(
    trace_id: str,
    parent: str,
    name: str,
    start: int,
    end: int,
    attributes: dict[str, Any],
    *,
    error: str | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"code": 2, "message": error} if error else {"code": 1}
    return {
        "traceId": trace_id,
        "spanId": _span_id(trace_id, name),
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(max(end, start)),
        "attributes": _attributes(attributes),
        "status": status,
    }


def build_assessments(
    exchange: Exchange, scores: ExchangeScores, judge: JudgeCall | None, *, allowed: bool
) -> list[dict[str, Any]]:
    """The scores as MLflow feedback (``Assessment`` proto JSON), one per score."""
    trace_id = "tr-" + trace_id_of(exchange.request_id)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    code = {"source_type": "CODE", "source_id": SOURCE_ID}

    def feedback(name: str, value: Any, source: dict[str, str], rationale: str = "") -> dict[str, Any]:
        entry: dict[str, Any] = {
            "assessment_name": name,
            "trace_id": trace_id,
            "source": source,
            "create_time": stamp,
            "last_update_time": stamp,
            "feedback": {"value": value},
            "metadata": {"aif.request_id": exchange.request_id},
        }
        if rationale:
            entry["rationale"] = rationale
        return entry

    out = []
    if scores.assertion_pass_rate is not None:
        failed = list(scores.failures) if allowed else [f.split(":", 1)[0] for f in scores.failures]
        out.append(
            feedback(
                "assertion_pass_rate",
                round(scores.assertion_pass_rate, 5),
                code,
                "; ".join(failed) or f"all {scores.assertions_run} free-traffic assertions passed",
            )
        )
    out.append(
        feedback("pii_leaks", scores.pii_leaks, code, "personal data in the answer not in the question")
    )
    out.append(feedback("refused", scores.refused, code))
    if judge is not None and judge.score is not None:
        out.append(
            feedback(
                "judge_score",
                round(judge.score, 5),
                {"source_type": "LLM_JUDGE", "source_id": judge.model},
                judge.reason if allowed else "",
            )
        )
    return out


class TraceRecorder:
    """Records scored samples as traces in ``experiment`` on the server ``client`` talks to.

    ``features``: ``team/feature`` -> ``{"clearance", "trace_text"}`` (from the asset's suites file).
    ``record`` raises on the first failed call; the scorer catches, logs and counts it.
    """

    def __init__(self, client: MlflowRest, experiment: str, features: dict[str, dict[str, Any]]) -> None:
        self.client, self.experiment, self.features = client, experiment, features

    def record(
        self,
        exchange: Exchange,
        scores: ExchangeScores,
        steps: Sequence[ScoringStep],
        judge: JudgeCall | None = None,
    ) -> str:
        """Send the trace and its assessments; returns the MLflow trace id."""
        feature = self.features.get(f"{exchange.team}/{exchange.feature}", {})
        clearance, trace_text = feature.get("clearance"), feature.get("trace_text")
        allowed, _ = text_policy(clearance, trace_text)
        experiment_id = self.client.experiment_id(self.experiment, {"aif.kind": "evals"})
        assert experiment_id is not None  # created when missing
        spans = build_spans(exchange, scores, steps, judge, clearance=clearance, trace_text=trace_text)
        self.client.log_spans(experiment_id, spans)
        for assessment in build_assessments(exchange, scores, judge, allowed=allowed):
            self.client.create_assessment(assessment)
        return "tr-" + trace_id_of(exchange.request_id)


def expire_traces(
    client: MlflowRest, experiment: str, team: str, feature: str, retention_days: int, now_s: float
) -> int:
    """Delete the feature's online-sample traces whose request is older than ``retention_days``, so a
    trace lives no longer than its sample (the drift job calls this daily); returns how many."""
    experiment_id = client.experiment_id(experiment, create=False)
    if experiment_id is None:
        return 0
    cutoff_ms = int((now_s - retention_days * 86_400) * 1000)
    ids = client.search_trace_ids(
        experiment_id,
        f"trace.timestamp_ms < {cutoff_ms} AND tags.`aif.source` = 'online-sample' "
        f"AND tags.`aif.team` = '{team}' AND tags.`aif.feature` = '{feature}'",
    )
    return client.delete_traces(experiment_id, ids) if ids else 0
