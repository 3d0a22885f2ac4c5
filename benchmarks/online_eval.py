"""Online evaluation cost: what sampling adds to a request, and what scoring and drift cost per sample.

* Request path: Bedrock traffic is sampled from Bedrock's model invocation logs, written by Bedrock after
  it answered; the benchmark checks that importing the gateway's Lambda handler loads no
  online-evaluation code. Answers of other targets the gateway samples itself, after the response: the
  benchmark times ``Gateway.handle`` (echo target, in-memory stores) with the feature's sampling off and
  with every request sampled into a queue that takes ``SEND_MS`` per message, as a slow SQS would: what
  the request pays is building the sample and handing it over, not the send.
* Sampler: CPU per invocation-log record (decode a gzip subscription batch, parse, gateway check, hash
  decision, build the item) with the DynamoDB put answered at once (its latency is DynamoDB's, off any
  request). A quarter of the records come from another gateway's feature of the same name (a staging
  stage sharing the account's invocation log group): none of them may be kept.
* Scorer: CPU per sampled exchange (free-traffic assertions, PII leak check, output statistics) and
  the judge's tokens per exchange through the real local gateway (offline judge model; tokens counted
  by the gateway as it meters them).
* Traces in MLflow: CPU the scorer adds per sampled exchange to record it as an MLflow trace (build the
  OTLP spans and assessments; SigV4-sign and send the five REST calls), against a real local
  ``mlflow server`` (SQLite) in another process, so only the scorer's side is counted; wall time per
  sample too (the local server's, not SageMaker's).
* Drift job: CPU of one feature's daily run (embedding + linear MMD + 199 permutations) by window size.

    .venv/bin/python benchmarks/online_eval.py
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "online-eval"
WORDS = [
    "refund",
    "invoice",
    "order",
    "parcel",
    "delivery",
    "account",
    "password",
    "reset",
    "card",
    "charge",
    "late",
    "broken",
    "replace",
    "cancel",
    "subscription",
    "address",
    "email",
    "phone",
    "billing",
    "warranty",
    "support",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


GATEWAY = "0123456789ab"  # the sampled feature's gateway (LlmGateway.edge_namespace)
OTHER_GATEWAY = "ba9876543210"  # another stage's gateway in the same account and region


def _record(i: int, rng: random.Random, words: int, gateway: str = GATEWAY) -> dict[Any, Any]:
    return {
        "schemaType": "ModelInvocationLog",
        "timestamp": "2026-12-03T10:00:00Z",
        "requestId": f"b-{i}",
        "operation": "Converse",
        "modelId": "anthropic.claude-haiku-4-5",
        "input": {
            "inputBodyJson": {"messages": [{"role": "user", "content": [{"text": _text(rng, words)}]}]}
        },
        "output": {
            "outputBodyJson": {
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [{"text": _text(rng, words * 2) + " Contact support@example.com."}],
                    }
                },
                "stopReason": "end_turn",
            }
        },
        "requestMetadata": {
            "aif_team": "support",
            "aif_feature": "summarizer",
            "aif_request_id": f"req-{i}",
            "aif_gateway": gateway,
        },
    }


def request_path() -> dict[Any, Any]:
    code = (
        "import sys, aif_gateway.handler;print(sorted(m for m in sys.modules if m.startswith('aif_online')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return {"online_modules_loaded_by_gateway": json.loads(out.stdout.strip().replace("'", '"'))}


SEND_MS = 5.0


def gateway_sampling(requests: int = 2000, warmup: int = 200) -> dict[str, Any]:
    """Per-request time and request-thread CPU of ``Gateway.handle`` with gateway sampling off and on."""
    sys.path.insert(0, str(HERE))
    from dataclasses import replace

    from gateway_overhead import TimedEcho, _loop, echo_config, new_key

    from aif_gateway.app import Gateway
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
    from aif_gateway.online_samples import SampleWriter
    from aif_gateway.records import hash_key

    class SlowQueue:
        def __init__(self) -> None:
            self.sent = 0
            self.on_request_thread = 0

        def send(self, sample: Mapping[str, Any]) -> None:
            time.sleep(SEND_MS / 1000)
            self.sent += 1
            self.on_request_thread += threading.current_thread() is threading.main_thread()

    rows: dict[str, Any] = {}
    for label, rate in (("off", 0.0), ("every request", 1.0)):
        keys, provider, queue = MemoryKeyStore(), TimedEcho(), SlowQueue()
        key = new_key(keys)
        record = keys.get_by_hash(hash_key(key))
        assert record is not None
        keys.put(replace(record, sampling_rate=rate, clearance="internal"))
        # A backlog as deep as the run: here requests come back to back, in Lambda a model call
        # separates them, so the writer keeps up; the default bound (256) would make requests send
        # inline once it is full (backpressure), which is not what is measured here.
        writer = SampleWriter(queue, max_pending=requests + warmup)
        gateway = Gateway(
            echo_config(),
            keys,
            MemoryLedger(),
            providers={"echo": provider},
            samples=writer,
            namespace="0123456789ab",
        )
        result = _loop(gateway.handle, key, provider, requests, warmup)
        gateway.drain(None)
        rows[label] = {
            "p50_ms": result["total"]["p50_ms"],
            "p99_ms": result["total"]["p99_ms"],
            "cpu_p50_ms": result["request_thread_cpu"]["p50_ms"],
            "sent": queue.sent,
            "sent_on_request_thread": queue.on_request_thread,
            "requests": result["requests"] + warmup,
        }
    return rows


def sampler(n: int = 5000, batch: int = 100, rate: float = 0.05) -> dict[Any, Any]:
    from aif_online import handler
    from aif_online.sampling import sample_item

    rng = random.Random(1)
    records = [_record(i, rng, 60, OTHER_GATEWAY if i % 4 == 3 else GATEWAY) for i in range(n)]
    events = []
    for start in range(0, n, batch):
        payload = {
            "logEvents": [
                {"id": str(i), "timestamp": 0, "message": json.dumps(r)}
                for i, r in enumerate(records[start : start + batch])
            ]
        }
        events.append(
            {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(payload).encode())).decode()}}
        )
    settings = handler.sampling_settings(
        json.dumps(
            {"support/summarizer": {"rate": rate, "retention_days": 30, "table": "t", "gateway": GATEWAY}}
        )
    )
    started = time.process_time()
    kept: list[Any] = []
    for event in events:
        for exchange, feature in handler.select(handler.decode_subscription(event), settings):
            handler._to_dynamo(sample_item(exchange, feature.retention_days, 0))
            kept.append(exchange)
    cpu = time.process_time() - started
    foreign = sum(1 for r in records if r["requestMetadata"]["aif_gateway"] != GATEWAY)
    return {
        "records": n,
        "foreign_records": foreign,
        "kept": len(kept),
        "foreign_kept": sum(1 for e in kept if e.gateway != GATEWAY),
        "rate": rate,
        "cpu_us_per_record": cpu / n * 1e6,
    }


def scorer(n: int = 500) -> dict[Any, Any]:
    from aif_online.sampling import exchange_from_log
    from aif_online.scoring import free_traffic_assertions, score_exchange

    rng = random.Random(2)
    assertions = free_traffic_assertions(
        [{"type": "not-contains", "value": "sk-"}, {"type": "not-contains", "value": "BEGIN PRIVATE KEY"}]
    )
    rows = {}
    for words in (50, 200, 800):
        exchanges = [e for i in range(n) if (e := exchange_from_log(_record(i, rng, words))) is not None]
        times = []
        for exchange in exchanges:
            started = time.process_time()
            score_exchange(exchange, assertions)
            times.append(time.process_time() - started)
        rows[words] = {
            "answer_chars": len(exchanges[0].output),
            "cpu_ms_median": statistics.median(times) * 1e3,
        }
    return rows


def judge_tokens(n: int = 50) -> dict[Any, Any]:
    from ai_factory.local.offline import create_local_key, offline_config, offline_gateway
    from ai_factory.local.server import LocalGatewayServer
    from aif_gateway.offline_model import CannedAnswer, OfflineRule, OfflineScript
    from aif_online.judge import OnlineJudge

    rng = random.Random(3)
    script = OfflineScript((OfflineRule(CannedAnswer('{"score": 0.8, "reason": "answers the question"}')),))
    rows = {}
    with tempfile.TemporaryDirectory() as state:
        key = create_local_key(
            state,
            team="platform",
            feature="judge",
            models=("chat-smart",),
            monthly_budget_usd=100,
            rate_limit_rpm=100_000,
            description="bench",
        )
        gateway, _ = offline_gateway(state, offline_config(), script)
        with LocalGatewayServer(port=0, state_dir=state, gateway=gateway) as server:
            judge = OnlineJudge(f"{server.url}/v1", key, model="chat-smart")
            for words in (50, 200, 800):
                tokens = []
                for _ in range(n):
                    judge.score(
                        "Answers the question; reveals no one else's data.",
                        _text(rng, words),
                        _text(rng, words * 2),
                    )
                    tokens.append(judge.tokens)
                rows[words] = statistics.mean(tokens)
    return rows


def traces(n: int = 60) -> dict[Any, Any]:
    import signal
    import socket
    import urllib.request

    from botocore.credentials import Credentials

    from aif_online.mlflow_rest import MlflowRest
    from aif_online.mlflow_trace import JudgeCall, TraceRecorder, build_assessments, build_spans
    from aif_online.sampling import exchange_from_log
    from aif_online.scoring import ScoringStep, free_traffic_assertions, score_exchange

    rng = random.Random(5)
    assertions = free_traffic_assertions([{"type": "not-contains", "value": "sk-"}])
    features = {"support/summarizer": {"clearance": "internal", "trace_text": True}}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'db'}",
            "--default-artifact-root", str(root / "art"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
        ],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(0.5)
        arn = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/bench"
        client = MlflowRest(arn, endpoint=url, credentials=Credentials("AKID", "secret"), timeout_s=60)
        recorder = TraceRecorder(client, "ai-factory/evals", features)
        rows = {}
        for words in (50, 200, 800):
            samples = []
            for i in range(n):
                record = _record(10_000 * words + i, rng, words)
                exchange = exchange_from_log(record)
                assert exchange is not None
                steps: list[ScoringStep] = []
                scores = score_exchange(exchange, assertions, steps)
                judge = JudgeCall("chat-smart", 0, 1_000_000, 0.8, "answers the question", 300)
                samples.append((exchange, scores, steps, judge))
            recorder.record(*samples[0])  # warm: experiment lookup, connection
            build, total, wall = [], [], []
            for exchange, scores, steps, judge in samples[1:]:
                started = time.process_time()
                build_spans(exchange, scores, steps, judge, clearance="internal", trace_text=True)
                build_assessments(exchange, scores, judge, allowed=True)
                build.append(time.process_time() - started)
                started, wall_started = time.process_time(), time.perf_counter()
                recorder.record(exchange, scores, steps, judge)
                total.append(time.process_time() - started)
                wall.append(time.perf_counter() - wall_started)
            rows[words] = {
                "build_ms": statistics.median(build) * 1e3,
                "record_cpu_ms": statistics.median(total) * 1e3,
                "record_wall_ms": statistics.median(wall) * 1e3,
                # One OTLP post and one call per assessment (the experiment id is cached).
                "calls": 1
                + len(build_assessments(samples[0][0], samples[0][1], samples[0][3], allowed=True)),
            }
        client.close()
        return {"samples": n - 1, "rows": rows}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a busy machine: the server's workers may ignore TERM for long
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def drift() -> dict[Any, Any]:
    from aif_online.drift import hashed_embedding, input_drift

    rng = random.Random(4)
    rows = {}
    for size in (100, 250, 500):
        started = time.process_time()
        a = [hashed_embedding(_text(rng, 40)) for _ in range(size)]
        b = [hashed_embedding(_text(rng, 40)) for _ in range(size)]
        embedded = time.process_time()
        input_drift(a, b)
        rows[size] = {"embed_s": embedded - started, "test_s": time.process_time() - embedded}
    return rows


def markdown(result: dict[str, Any], command: str) -> list[str]:
    s, rp = result["sampler"], result["request_path"]
    lines = [
        "## Online evaluation: sampler, scorer, MLflow traces, judge tokens, drift job",
        "",
        f"Command: `{command}`. CPU time (`time.process_time`) in one process on this machine "
        f"(1-minute load average {result['load']:.1f} at start; the machine is shared).",
        "",
        "**Request path.** Bedrock traffic: nothing added; the sampler reads Bedrock's model invocation "
        "logs, which Bedrock writes after answering. Online-evaluation modules loaded by importing the "
        f"gateway's Lambda handler: {rp['online_modules_loaded_by_gateway'] or 'none'}. Targets outside "
        "Bedrock: the gateway builds the sample and hands it to its writer thread, which sends it to the "
        f"sample queue after the response. `Gateway.handle`, echo target, in-memory stores, a queue taking "
        f"{SEND_MS:.0f} ms per message (a slow SQS); sends made on the request's thread: "
        f"{sum(r['sent_on_request_thread'] for r in result['gateway_sampling'].values())}.",
        "",
        "| feature's gateway sampling | request p50 | request p99 | request-thread CPU p50 | samples sent |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {label} | {row['p50_ms']:.3f} ms | {row['p99_ms']:.3f} ms | {row['cpu_p50_ms']:.3f} ms | "
            f"{row['sent']} of {row['requests']} |"
            for label, row in result["gateway_sampling"].items()
        ),
        "",
        f"**Sampler** (off the request path): {s['cpu_us_per_record']:.0f} µs CPU per invocation-log record "
        f"({s['records']} records of 60-word questions in gzip batches of 100, rate {s['rate']}; "
        f"{s['foreign_records']} of them from another gateway's feature of the same name, as a staging "
        f"stage's in the shared log group: {s['kept']} kept, {s['foreign_kept']} of them foreign; the "
        "DynamoDB put per kept record is not included). Deployed, the subscription filter keeps other "
        "gateways' records from invoking the sampler at all.",
        "",
        "| answer words (question ÷ 2) | scorer CPU per sample (median) | judge tokens per sample (mean) |",
        "| --- | --- | --- |",
    ]
    for words, row in result["scorer"].items():
        tokens = result["judge_tokens"][words]
        lines.append(
            f"| {words * 2} ({row['answer_chars']} chars) | {row['cpu_ms_median']:.2f} ms | {tokens:.0f} |"
        )
    lines += [
        "",
        "Scorer CPU: two `not-contains` assertions, the connector's PII detector on question and answer, "
        "language and refusal checks. Judge tokens: input (system prompt, rubric, question, answer) plus "
        "output, as the gateway meters them (the offline model counts about four characters a token); "
        "multiply by the judge route's price per token for the cost, and by the sampled requests per day.",
        "",
        f"**Traces in MLflow** (scorer with `tracking_server_arn`): per sampled exchange, median of "
        f"{result['traces']['samples']} samples, a real local `mlflow server` (SQLite, one worker) in "
        "another process; requests SigV4-signed as for SageMaker.",
        "",
        "| answer words | build spans + assessments (CPU) | record: build, sign, send (scorer CPU) | "
        "record wall time (local server) | HTTP calls |",
        "| --- | --- | --- | --- | --- |",
    ]
    for words, row in result["traces"]["rows"].items():
        lines.append(
            f"| {words * 2} | {row['build_ms']:.2f} ms | {row['record_cpu_ms']:.2f} ms | "
            f"{row['record_wall_ms']:.0f} ms | {row['calls']} |"
        )
    lines += [
        "",
        "The scorer CPU column is what tracing adds to a sample's scoring in the Lambda (its wall time "
        "against SageMaker is the server's and the network's); the experiment is looked up once per "
        "container, not per sample.",
        "",
        "| window size (each) | embed both windows | linear MMD + 199 permutations |",
        "| --- | --- | --- |",
    ]
    for size, row in result["drift"].items():
        lines.append(f"| {size} | {row['embed_s']:.2f} s | {row['test_s']:.2f} s |")
    lines += [
        "",
        "Drift job: one run per feature per day (offline hashed embedder here; in AWS the embeddings come "
        "from the gateway's embeddings route and cost its tokens).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    result = {
        "load": os.getloadavg()[0],
        "request_path": request_path(),
        "gateway_sampling": gateway_sampling(),
        "sampler": sampler(),
        "scorer": scorer(),
        "judge_tokens": judge_tokens(),
        "traces": traces(),
        "drift": drift(),
    }
    command = " ".join([".venv/bin/python", "benchmarks/online_eval.py", *(argv or sys.argv[1:])])
    text = "\n".join(markdown(result, command))
    print(text)
    if not args.no_doc:
        sys.path.insert(0, str(HERE))
        import doc_sections

        doc_sections.write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
