"""The online scorer records sampled requests as MLflow traces beside the eval runs: a real MLflow
tracking server (``mlflow server``, SQLite in a temp dir, on 127.0.0.1) and a real local gateway as the
judge; the scorer's stream handler runs on a synthetic DynamoDB stream batch, and the traces are read
back with ``MlflowClient``. The scorer talks to the server as deployed: a tracking-server ARN whose
endpoint is overridden to the local server, so every request goes out SigV4-signed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials

from aif_online import handler
from aif_online.judge import OnlineJudge
from aif_online.mlflow_rest import MlflowRest
from aif_online.mlflow_trace import TraceRecorder
from aif_online.sampling import exchange_from_log, sample_item

pytestmark = pytest.mark.e2e

ARN = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ai-factory"
EXPERIMENT = "ai-factory/evals"  # ai_factory.prompts.registry.EVAL_EXPERIMENT, checked below
JUDGE_ANSWER = '{"score": 0.35, "reason": "the answer names another customer"}'
SUITES = {
    "support/summarizer": {
        "assertions": [{"type": "not-contains", "value": "sk-live"}],
        "rubric": "Answers the question and reveals no one else's data.",
        "clearance": "internal",
        "trace_text": True,
    },
    "support/private-notes": {
        "assertions": [],
        "rubric": "Answers the question.",
        "clearance": "confidential",
        "trace_text": False,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="aif-mlflow-"))
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"mlflow server did not start: {err[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def judge() -> Iterator[OnlineJudge]:
    """The online judge against a real local gateway whose offline judge model gives a canned score."""
    from ai_factory.local.offline import create_local_key, offline_config, offline_gateway
    from ai_factory.local.server import LocalGatewayServer
    from aif_gateway.offline_model import CannedAnswer, OfflineRule, OfflineScript

    script = OfflineScript((OfflineRule(CannedAnswer(JUDGE_ANSWER)),))
    with tempfile.TemporaryDirectory() as state:
        key = create_local_key(
            state,
            team="platform",
            feature="judge",
            models=("chat-smart",),
            monthly_budget_usd=100,
            rate_limit_rpm=10_000,
            description="e2e judge",
        )
        gateway, _ = offline_gateway(state, offline_config(), script)
        with LocalGatewayServer(port=0, state_dir=state, gateway=gateway) as server:
            yield OnlineJudge(f"{server.url}/v1", key, model="chat-smart")


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_record(
    request_id: str, feature: str, question: str, answer: str, *, age_days: float = 0.05
) -> dict[str, Any]:
    """A Bedrock model invocation log record of a Converse call the gateway made ``age_days`` ago."""
    return {
        "schemaType": "ModelInvocationLog",
        "timestamp": _iso(time.time() - age_days * 86_400),
        "requestId": "bedrock-" + request_id,
        "operation": "Converse",
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "input": {"inputBodyJson": {"messages": [{"role": "user", "content": [{"text": question}]}]}},
        "output": {
            "outputBodyJson": {
                "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 42, "outputTokens": 19, "totalTokens": 61},
                "metrics": {"latencyMs": 812},
            }
        },
        "requestMetadata": {"aif_team": "support", "aif_feature": feature, "aif_request_id": request_id},
    }


def stream_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample table's stream event for these records, as the sampler would have written them."""
    out = []
    for record in records:
        ex = exchange_from_log(record)
        assert ex is not None
        item = handler._to_dynamo(sample_item(ex, 30, 1_796_000_000))
        out.append({"eventName": "INSERT", "dynamodb": {"NewImage": item}})
    return {"Records": out}


@pytest.fixture(scope="module")
def scored(mlflow_server: str, judge: OnlineJudge) -> dict[str, Any]:
    """One scorer run over a batch of two samples (one per feature), traced to the local server."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    # The eval harness made the experiment first (as ai_factory.evals.mlflow_log does).
    eval_experiment = client.create_experiment(EXPERIMENT, tags={"aif.kind": "evals"})
    eval_run = client.create_run(eval_experiment, tags={"aif.suite": "summaries"})
    client.set_terminated(eval_run.info.run_id)

    env = {
        "AIF_MLFLOW_TRACKING_URI": ARN,
        "AIF_MLFLOW_ENDPOINT": mlflow_server,
        "AIF_MLFLOW_EXPERIMENT": EXPERIMENT,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    handler._tracer = None
    try:
        tracer = handler.tracer_from_env(SUITES)
        assert isinstance(tracer, TraceRecorder)
        # Signed as deployed, with fixed credentials (the local server does not check them).
        tracer.client = MlflowRest(
            ARN, endpoint=mlflow_server, credentials=Credentials("AKID", "secret"), timeout_s=60
        )
        batch = stream_batch(
            [
                log_record(
                    "req-visible",
                    "summarizer",
                    "Where is my parcel? I am jane.doe@example.com",
                    "Your parcel ships today. Ask max.mustermann@example.org for details.",
                ),
                log_record(
                    "req-private", "private-notes", "Summarize case 4711 for me", "Case 4711: claim approved."
                ),
            ]
        )
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = handler.score(batch, suites=SUITES, judge=judge, tracer=tracer)
    finally:
        handler._tracer = None
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    traces = client.search_traces(locations=[eval_experiment], include_spans=True)
    by_request = {t.info.tags["aif.request_id"]: t for t in traces}
    emf = [r for r in map(json.loads, out.getvalue().splitlines()) if "_aws" in r]
    return {
        "result": result,
        "client": client,
        "experiment": eval_experiment,
        "traces": by_request,
        "emf": {r["request_id"]: r for r in emf},
        "log": out.getvalue(),
    }


def test_each_scored_sample_is_a_trace_in_the_eval_runs_experiment(scored: dict[str, Any]) -> None:
    from ai_factory.prompts.registry import EVAL_EXPERIMENT

    assert EVAL_EXPERIMENT == EXPERIMENT
    assert scored["result"] == {"scored": 2}
    assert set(scored["traces"]) == {"req-visible", "req-private"}, scored["log"]
    # Beside the eval run, in the one experiment the harness created.
    client = scored["client"]
    assert client.get_experiment_by_name(EXPERIMENT).experiment_id == scored["experiment"]
    assert len(client.search_runs([scored["experiment"]])) == 1
    # Both records published their metrics and counted no trace failure.
    assert {r["OnlineTraceFailures"] for r in scored["emf"].values()} == {0}


def test_root_span_is_the_request_with_genai_attributes_and_children_per_step(scored: dict[str, Any]) -> None:
    trace = scored["traces"]["req-visible"]
    spans = {s.name: s for s in trace.data.spans}
    root = spans["chat anthropic.claude-3-haiku-20240307-v1:0"]
    assert root.parent_id is None and root.span_type == "CHAT_MODEL"
    attributes = root.attributes
    assert attributes["gen_ai.system"] == "aws.bedrock"
    assert attributes["gen_ai.request.model"] == attributes["gen_ai.response.model"]
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (42, 19)
    assert attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert (attributes["aif.team"], attributes["aif.feature"], attributes["aif.request_id"]) == (
        "support",
        "summarizer",
        "req-visible",
    )
    assert (root.end_time_ns - root.start_time_ns) == 812_000_000
    # MLflow read the GenAI conventions: token usage on the trace, the text as its request and response.
    assert trace.info.token_usage == {"input_tokens": 42, "output_tokens": 19, "total_tokens": 61}
    assert "jane.doe@example.com" in trace.info.request_preview
    assert "max.mustermann@example.org" in trace.info.response_preview
    children = {n: s for n, s in spans.items() if s is not root}
    assert set(children) == {"free-traffic assertions", "pii leakage", "output statistics", "judge"}
    assert {s.parent_id for s in children.values()} == {root.span_id}
    assert children["pii leakage"].outputs == {"leaks": 1, "kinds": ["EMAIL"]}
    assert children["free-traffic assertions"].outputs["passed"] == 1
    judge = children["judge"]
    assert (
        judge.attributes["gen_ai.request.model"] == "chat-smart" and judge.attributes["aif.judge.tokens"] > 0
    )
    assert judge.outputs == {"score": 0.35, "reason": "the answer names another customer"}


def test_scores_are_feedback_assessments_and_searchable_tags(scored: dict[str, Any]) -> None:
    trace = scored["traces"]["req-visible"]
    feedback = {a.name: a for a in trace.info.assessments}
    assert set(feedback) == {"assertion_pass_rate", "pii_leaks", "refused", "judge_score"}
    assert feedback["pii_leaks"].value == 1 and feedback["refused"].value is False
    assert feedback["assertion_pass_rate"].value == 1.0
    assert feedback["judge_score"].value == 0.35
    assert feedback["judge_score"].source.source_type == "LLM_JUDGE"
    assert feedback["judge_score"].rationale == "the answer names another customer"
    # The same numbers the EMF record published.
    emf = scored["emf"]["req-visible"]
    assert (emf["OnlinePiiLeaks"], emf["OnlineJudgeScore"]) == (1, 0.35)
    found = scored["client"].search_traces(
        locations=[scored["experiment"]], filter_string="tags.`aif.score.pii_leaks` = '1'"
    )
    assert [t.info.tags["aif.request_id"] for t in found] == ["req-visible"]


def test_text_is_absent_when_the_feature_does_not_allow_it(scored: dict[str, Any]) -> None:
    trace = scored["traces"]["req-private"]
    dumped = trace.to_json()
    for text in ("4711", "claim approved", "Summarize case"):
        assert text not in dumped
    assert trace.info.tags["aif.text"] == "withheld"
    assert "trace_text is off" in trace.info.request_preview
    # The judge still scored it and the scores are on the trace, without the judge's reason.
    feedback = {a.name: a for a in trace.info.assessments}
    assert feedback["judge_score"].value == 0.35 and not feedback["judge_score"].rationale
    assert "reason" not in {s.name: s for s in trace.data.spans}["judge"].outputs


def test_a_retried_batch_rewrites_the_same_trace(scored: dict[str, Any], mlflow_server: str) -> None:
    client = MlflowRest(ARN, endpoint=mlflow_server, credentials=Credentials("AKID", "secret"), timeout_s=60)
    tracer = TraceRecorder(client, EXPERIMENT, SUITES)
    batch = stream_batch([log_record("req-visible", "summarizer", "q", "a")])
    handler.score(batch, suites=SUITES, tracer=tracer)
    traces = scored["client"].search_traces(
        locations=[scored["experiment"]], filter_string="tags.`aif.request_id` = 'req-visible'"
    )
    assert len(traces) == 1


def test_the_drift_job_expires_traces_with_their_samples(scored: dict[str, Any], mlflow_server: str) -> None:
    from aif_online import drift_job

    client = MlflowRest(ARN, endpoint=mlflow_server, credentials=Credentials("AKID", "secret"), timeout_s=60)
    tracer = TraceRecorder(client, EXPERIMENT, SUITES)
    old = [
        log_record("req-old", "summarizer", "q", "a", age_days=40),
        log_record("req-old-other", "private-notes", "q", "a", age_days=40),
        log_record("req-recent", "summarizer", "q", "a", age_days=29),
    ]
    handler.score(stream_batch(old), suites=SUITES, tracer=tracer)

    class NoSamples:
        def scan(self, **kwargs: Any) -> dict[str, Any]:
            return {"Items": []}

    event = {"features": [{"team": "support", "feature": "summarizer", "table": "t", "retention_days": 30}]}
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        drift_job.run(event, client=NoSamples(), embed=lambda texts: [], mlflow=client)
    assert "expired 1 MLflow trace(s) past 30 days" in out.getvalue()
    left = {
        t.info.tags["aif.request_id"]
        for t in scored["client"].search_traces(locations=[scored["experiment"]], max_results=100)
    }
    # Only the summarizer's trace past its retention is gone: not the recent one, not another feature's.
    assert "req-old" not in left and {"req-recent", "req-old-other", "req-visible"} <= left
