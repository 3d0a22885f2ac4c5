"""Online samples as MLflow traces, without a server: the text policy, the trace's shape, SigV4 signing
as the sagemaker-mlflow plugin does it, and a failed trace never costing the sample's scores.
(tests/e2e/test_online_traces_mlflow.py runs the scorer against a real local MLflow server.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.credentials import Credentials

from aif_online import handler
from aif_online.mlflow_rest import MlflowRest, MlflowRestError, endpoint_of
from aif_online.mlflow_trace import JudgeCall, TraceRecorder, build_assessments, build_spans, text_policy
from aif_online.sampling import Exchange, exchange_from_log
from aif_online.scoring import ScoringStep, free_traffic_assertions, score_exchange

ARN = "arn:aws:sagemaker:eu-central-1:111122223333:mlflow-tracking-server/ai-factory"
QUESTION = "Where is parcel 4711? Write to me at jane.doe@example.com"
ANSWER = "Parcel 4711 left the depot; the courier is max.mustermann@example.org"


def exchange(**changes: Any) -> Exchange:
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "team": "support",
        "feature": "summarizer",
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "timestamp": "2026-12-03T10:00:00Z",
        "input": QUESTION,
        "output": ANSWER,
        "stop_reason": "end_turn",
        "input_tokens": 31,
        "output_tokens": 17,
        "latency_ms": 840,
    }
    return Exchange(**(fields | changes))


def scored(ex: Exchange) -> tuple[Any, list[ScoringStep]]:
    steps: list[ScoringStep] = []
    assertions = free_traffic_assertions([{"type": "not-contains", "value": "courier"}])
    return score_exchange(ex, assertions, steps), steps


@pytest.mark.parametrize(
    ("clearance", "trace_text", "allowed"),
    [
        ("public", True, True),
        ("internal", True, True),
        ("confidential", True, True),
        ("restricted", True, False),  # cannot sample at all; checked again here
        (None, True, False),  # unknown: fail closed
        ("secret", True, False),
        ("internal", False, False),
        ("internal", None, False),
        ("internal", "true", False),
    ],
)
def test_text_policy_fails_closed(clearance: Any, trace_text: Any, allowed: bool) -> None:
    ok, why = text_policy(clearance, trace_text)
    assert ok is allowed
    assert bool(why) is not allowed


def test_exchange_carries_usage_and_latency_from_the_invocation_log() -> None:
    record = {
        "timestamp": "2026-12-03T10:00:00Z",
        "modelId": "m",
        "input": {"inputBodyJson": {"messages": [{"role": "user", "content": [{"text": "q"}]}]}},
        "output": {
            "outputBodyJson": {
                "output": {"message": {"content": [{"text": "a"}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 12, "outputTokens": 5, "totalTokens": 17},
                "metrics": {"latencyMs": 321},
            }
        },
        "requestMetadata": {"aif_team": "t", "aif_feature": "f", "aif_request_id": "r"},
    }
    ex = exchange_from_log(record)
    assert ex is not None and (ex.input_tokens, ex.output_tokens, ex.latency_ms) == (12, 5, 321)
    # Without usage in the body, the log's own counts.
    del record["output"]["outputBodyJson"]["usage"]  # type: ignore[index]
    record["input"]["inputTokenCount"] = 9  # type: ignore[index]
    record["output"]["outputTokenCount"] = 4  # type: ignore[index]
    ex = exchange_from_log(record)
    assert ex is not None and (ex.input_tokens, ex.output_tokens) == (9, 4)


def test_trace_shape_root_request_children_per_step_and_judge() -> None:
    ex = exchange()
    scores, steps = scored(ex)
    judge = JudgeCall("chat-smart", 1, 2, score=0.4, reason="names the courier", tokens=210)
    body = build_spans(ex, scores, steps, judge, clearance="internal", trace_text=True)
    (spans,) = [s["spans"] for r in body["resourceSpans"] for s in r["scopeSpans"]]
    root, *children = spans
    assert root["name"] == "chat anthropic.claude-3-haiku-20240307-v1:0" and "parentSpanId" not in root
    attributes = {a["key"]: a["value"] for a in root["attributes"]}
    assert attributes["gen_ai.system"] == {"stringValue": "aws.bedrock"}
    assert attributes["gen_ai.usage.input_tokens"] == {"intValue": "31"}
    assert attributes["gen_ai.response.finish_reasons"] == {
        "arrayValue": {"values": [{"stringValue": "end_turn"}]}
    }
    assert attributes["mlflow.traceTag.aif.score.pii_leaks"] == {"stringValue": "1"}
    assert QUESTION in json.dumps(attributes["gen_ai.input.messages"])
    # The request's own timing: Bedrock's timestamp and latency.
    assert int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"]) == 840_000_000
    assert [c["name"] for c in children] == [
        "free-traffic assertions",
        "pii leakage",
        "output statistics",
        "judge",
    ]
    assert {c["parentSpanId"] for c in children} == {root["spanId"]}
    # The same request always maps to the same trace: a retried batch overwrites, it does not duplicate.
    again = build_spans(ex, scores, steps, judge, clearance="internal", trace_text=True)
    assert again["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] == root["traceId"]


def test_withheld_text_appears_nowhere_on_the_trace_or_its_assessments() -> None:
    ex = exchange()
    scores, steps = scored(ex)
    assert scores.failures  # the failure message quotes the answer: it must stay off too
    judge = JudgeCall("chat-smart", 1, 2, score=0.4, reason=f"it says {ANSWER}", tokens=210)
    body = build_spans(ex, scores, steps, judge, clearance="internal", trace_text=False)
    assessments = build_assessments(ex, scores, judge, allowed=False)
    dumped = json.dumps([body, assessments])
    for secret in ("4711", "jane.doe", "max.mustermann", "courier is", "depot"):
        assert secret not in dumped
    assert "text_withheld" in dumped and "mlflow.traceTag.aif.text" in dumped
    # Scores are all still there.
    names = {a["assessment_name"] for a in assessments}
    assert names == {"assertion_pass_rate", "pii_leaks", "refused", "judge_score"}


def test_endpoint_of_resolves_arns_like_the_plugin_and_refuses_anything_else() -> None:
    assert endpoint_of(ARN) == ("https://eu-central-1.experiments.sagemaker.aws", "eu-central-1")
    assert endpoint_of("http://127.0.0.1:5000/") == ("http://127.0.0.1:5000", None)
    with pytest.raises(ValueError, match="mlflow-tracking-server ARN or an http"):
        endpoint_of("arn:aws:sagemaker:eu-central-1:111122223333:endpoint/x")


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        payload = (
            {"experiment": {"experiment_id": "7"}}
            if "get-by-name" in self.path
            else {"assessment": {"assessment_id": "a-1"}}
        )
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def capture_server() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_arn_requests_are_sigv4_signed_for_sagemaker_mlflow_with_the_arn_header(capture_server: str) -> None:
    client = MlflowRest(
        ARN, endpoint=capture_server, credentials=Credentials("AKIDEXAMPLE", "secret", "token")
    )
    recorder = TraceRecorder(
        client, "ai-factory/evals", {"support/summarizer": {"clearance": "internal", "trace_text": True}}
    )
    ex = exchange()
    scores, steps = scored(ex)
    assert recorder.record(ex, scores, steps).startswith("tr-")
    paths = [s["path"] for s in _Recorder.seen]
    assert paths[0] == "/api/2.0/mlflow/experiments/get-by-name?experiment_name=ai-factory%2Fevals"
    assert paths[1] == "/v1/traces" and all("/assessments" in p for p in paths[2:]) and len(paths) == 5
    for request in _Recorder.seen:
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers["x-mlflow-sm-tracking-server-arn"] == ARN
        assert (
            headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            and "/eu-central-1/sagemaker-mlflow/aws4_request" in headers["authorization"]
        )
        assert headers["x-amz-security-token"] == "token"
    assert {k.lower(): v for k, v in _Recorder.seen[1]["headers"].items()}["x-mlflow-experiment-id"] == "7"
    # The experiment id is looked up once per container.
    recorder.record(ex, scores, steps)
    assert sum("get-by-name" in s["path"] for s in _Recorder.seen) == 1


def test_plain_server_requests_are_not_signed(capture_server: str) -> None:
    MlflowRest(capture_server).experiment_id("ai-factory/evals")
    headers = {k.lower() for k in _Recorder.seen[0]["headers"]}
    assert "authorization" not in headers and "x-mlflow-sm-tracking-server-arn" not in headers


def stream_event(ex: Exchange) -> dict[str, Any]:
    item = handler._to_dynamo({k: v for k, v in ex.__dict__.items() if k != "extra"})
    return {"Records": [{"eventName": "INSERT", "dynamodb": {"NewImage": item}}]}


def emf_records(out: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, out.splitlines()) if "_aws" in r]


def test_a_failed_trace_keeps_the_scores_and_is_counted(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9 of localhost: the trace cannot be sent.
    recorder = TraceRecorder(MlflowRest("http://127.0.0.1:9", timeout_s=1), "ai-factory/evals", {})
    suites = {"support/summarizer": {"assertions": [], "rubric": None}}
    result = handler.score(stream_event(exchange()), suites=suites, tracer=recorder)
    assert result == {"scored": 1}
    out = capsys.readouterr().out
    (record,) = emf_records(out)
    assert (
        record["OnlineTraceFailures"] == 1
        and record["OnlinePiiLeaks"] == 1
        and record["OnlineSamplesScored"] == 1
    )
    assert "MLflow trace not recorded" in out and "GetExperimentByName" in out


def test_without_tracing_the_emf_record_has_no_trace_metric(capsys: pytest.CaptureFixture[str]) -> None:
    handler.score(stream_event(exchange()), suites={})
    (record,) = emf_records(capsys.readouterr().out)
    assert "OnlineTraceFailures" not in record


def test_refused_calls_raise_with_the_servers_status_and_code() -> None:
    error = MlflowRest._error("LogSpans", 403, {"error_code": "PERMISSION_DENIED", "message": "no"})
    assert (
        isinstance(error, MlflowRestError) and str(error) == "MLflow LogSpans: HTTP 403 PERMISSION_DENIED: no"
    )


def test_tracer_from_env_needs_the_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "_tracer", None)
    monkeypatch.delenv("AIF_MLFLOW_TRACKING_URI", raising=False)
    assert handler.tracer_from_env({}) is None
    monkeypatch.setenv("AIF_MLFLOW_TRACKING_URI", ARN)
    monkeypatch.setenv("AIF_MLFLOW_EXPERIMENT", "my-evals")
    tracer = handler.tracer_from_env({"t/f": {"clearance": "public", "trace_text": True}})
    assert tracer.experiment == "my-evals" and tracer.client.region == "eu-central-1"
    assert tracer.features == {"t/f": {"clearance": "public", "trace_text": True}}


class _DownTracer:
    """A recorder whose server never answers (status 0), counting its attempts."""

    def __init__(self) -> None:
        self.calls = 0

    def record(self, *args: Any) -> str:
        self.calls += 1
        raise MlflowRestError("GetExperimentByName", 0, "ConnectTimeoutError: timed out")


def batch(n: int) -> dict[str, Any]:
    records = [stream_event(exchange(request_id=f"req-{i}"))["Records"][0] for i in range(n)]
    return {"Records": records}


def test_an_unreachable_server_is_tried_once_per_batch_and_every_sample_keeps_its_scores(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tracer = _DownTracer()
    assert handler.score(batch(4), suites={}, tracer=tracer) == {"scored": 4}
    assert tracer.calls == 1  # not 4 timeouts in a row: the batch must finish before the function times out
    out = capsys.readouterr().out
    records = emf_records(out)
    assert len(records) == 4 and {r["OnlineTraceFailures"] for r in records} == {1}
    assert out.count("MLflow trace skipped: the tracking server did not answer") == 3


def test_near_the_function_timeout_samples_are_scored_but_not_traced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 20_000

    tracer = _DownTracer()
    handler.score(batch(2), Context(), suites={}, tracer=tracer)
    assert tracer.calls == 0
    records = emf_records(capsys.readouterr().out)
    assert [r["OnlineTraceFailures"] for r in records] == [1, 1]
    assert all(r["OnlineSamplesScored"] == 1 for r in records)
