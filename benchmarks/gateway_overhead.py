"""Gateway overhead per request, in process, and the synchronous AWS calls a request makes.

Four set-ups, each sending the same non-streaming chat completion to alias ``echo`` (the offline echo
provider, timed separately so its few microseconds can be taken out):

* ``core``: ``Gateway.handle`` with in-memory stores and the default metrics sink: the gateway's own
  work (auth, parsing, routing, pricing, record, response), no store time at all.
* ``lambda-memory``: ``handler.lambda_handler`` (Powertools logger context, EMF metrics line, audit log
  line; stdout sent to /dev/null) over a Gateway with in-memory stores: the Lambda hot path without
  store latency.
* ``lambda-canned``: ``handler.lambda_handler`` exactly as deployed (DynamoDB stores, real botocore
  clients) with every DynamoDB call answered at once by a canned response at ``before-send``: the
  deployed hot path with botocore's client-side work in and no store latency.
* ``lambda-dynamodb``: ``handler.lambda_handler`` exactly as deployed (DynamoDB key store and ledger
  built from the environment) against moto in process. botocore ``before-call``/``after-call`` hooks on
  the default session count and time every AWS API call, so the gateway's own time is reported with
  the service time taken out (moto's latency is not DynamoDB's, so total time here means little;
  botocore's own client-side work stays in).

Every AWS call is counted by operation and by calling thread: calls on the request path (the request
waits for them) apart from background cache refreshes (threads ``aif-refresh*``, overlapping the model
call). "Calls per request" excludes the model call (echo makes none; with Bedrock, Converse is the one
more). A paced run (a few requests a second for a few seconds) shows what the key cache
(``key_cache_ttl_s``) and usage-snapshot cache (``usage_snapshot_ttl_s``) send to AWS, and an idle phase
(the caches' clock moved past 2x the longest TTL) what a request after a long quiet spell makes.

    python benchmarks/gateway_overhead.py --requests 5000
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aif_gateway.dynamo_store import create_tables

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import percentile

# moto and the SDK must never reach AWS from here: fake credentials and a fixed region, set before
# boto3 is imported; tracing off (no X-Ray daemon outside Lambda).
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AIF_TRACES_EXPORTER": "none",  # no span export: there is no X-Ray endpoint here
        "POWERTOOLS_SERVICE_NAME": "aif-gateway",
        "POWERTOOLS_METRICS_NAMESPACE": "AiFactory/Bench",
    }
)
os.environ.pop("AWS_PROFILE", None)

KEYS_TABLE = "bench-keys"
USAGE_TABLE = "bench-usage"
QUEUE_NAME = "bench-spill"


def echo_config() -> Any:
    from aif_gateway.config import GatewayConfig, ModelTarget, Route

    target = ModelTarget(name="echo", provider="echo", model_id="echo", modality="chat")
    return GatewayConfig(routes={"echo": Route(alias="echo", modality="chat", targets=(target,))})


def new_key(store: Any) -> str:
    from aif_gateway.records import ApiKeyRecord, generate_key

    plaintext, key_id, key_hash = generate_key()
    record = ApiKeyRecord(
        key_id=key_id,
        key_hash=key_hash,
        team="bench",
        feature="overhead",
        allowed_models=("echo",),
        monthly_budget_usd=1000.0,
        rate_limit_rpm=10_000_000,
        created_at=datetime.now(UTC),
    )
    store.put(record)
    return plaintext


def chat_event(key: str, stream: bool = False) -> dict[str, Any]:
    body = {
        "model": "echo",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Summarise: the quick brown fox jumps over the lazy dog."},
        ],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
    return {
        "resource": "/{proxy+}",
        "httpMethod": "POST",
        "path": "/v1/chat/completions",
        "headers": {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        "queryStringParameters": None,
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "v1",
            "identity": {"sourceIp": "127.0.0.1"},
        },
    }


SYSTEM = "You are a terse assistant."
PROMPT = "Summarise: the quick brown fox jumps over the lazy dog."


def messages_event(key: str) -> dict[str, Any]:
    """The same request as ``chat_event``, on the Anthropic Messages API (``/v1/messages``)."""
    body = {
        "model": "echo",
        "system": SYSTEM,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
    }
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    return {**chat_event(key), "path": "/v1/messages", "headers": headers, "body": json.dumps(body)}


def responses_event(key: str) -> dict[str, Any]:
    """The same request as ``chat_event``, on OpenAI's Responses API (``/v1/responses``)."""
    body = {"model": "echo", "instructions": SYSTEM, "input": PROMPT, "max_output_tokens": 64}
    return {**chat_event(key), "path": "/v1/responses", "body": json.dumps(body)}


API_EVENTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "chat_completions": chat_event,
    "messages": messages_event,
    "responses": responses_event,
}


class TimedEcho:
    """The echo provider, with the time spent in it kept so it can be subtracted from the total."""

    def __init__(self) -> None:
        from aif_gateway.providers import EchoProvider

        self._inner = EchoProvider()
        self.last_s = 0.0

    def chat(self, target: Any, request: Any, ctx: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._inner.chat(target, request, ctx)
        finally:
            self.last_s = time.perf_counter() - start

    def embed(self, target: Any, request: Any, ctx: Any) -> Any:
        return self._inner.embed(target, request, ctx)


# aif_gateway.access.BackgroundRefresher's worker threads, and aif_gateway.usage_writer's thread.
BACKGROUND_THREAD_PREFIXES = ("aif-refresh", "aif-usage-writer")


def _on_request_path() -> bool:
    """False on the gateway's background threads: cache refreshes and gate settlements (``aif-refresh``)
    and the usage writer, which writes records after the response (``aif-usage-writer``)."""
    return not threading.current_thread().name.startswith(BACKGROUND_THREAD_PREFIXES)


class AwsCallMeter:
    """Counts AWS API calls (botocore ``before-call``) by calling thread and times the service's part.

    A call made on a ``aif-refresh`` thread is a background cache refresh (stale-while-revalidate,
    overlapping the model call); any other is on the request path, where the request waits for it.
    Service time runs from ``before-send`` (the signed request is ready; moto answers it here, AWS would
    be on the network) to ``needs-retry`` (a response is in, not yet parsed), per thread. What botocore
    does on our side (validation, serialisation, signing, parsing) stays in the gateway's overhead, as
    it would in Lambda; only request-path service time is taken out of it.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # request path
        self.background: Counter[str] = Counter()  # aif-refresh threads
        self.seconds = 0.0  # request-path service time
        self.background_seconds = 0.0
        self._sent_at: dict[int, float] = {}
        self._background_in_flight = 0
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        events.register("before-call", self.count)
        # First, so it runs before moto's own before-send hook answers the request.
        events.register_first("before-send", self.sent)
        events.register("needs-retry", self.answered)
        events.register("after-call", self.done)
        events.register("after-call-error", self.done)

    def unregister(self, events: Any) -> None:
        events.unregister("before-call", self.count)
        events.unregister("before-send", self.sent)
        events.unregister("needs-retry", self.answered)
        events.unregister("after-call", self.done)
        events.unregister("after-call-error", self.done)

    def count(self, event_name: str, **kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        with self._lock:
            if _on_request_path():
                self.calls[f"{service}:{operation}"] += 1
            else:
                self.background[f"{service}:{operation}"] += 1
                self._background_in_flight += 1

    def done(self, **kwargs: Any) -> None:
        if not _on_request_path():
            with self._lock:
                self._background_in_flight -= 1

    def sent(self, **kwargs: Any) -> None:
        self._sent_at[threading.get_ident()] = time.perf_counter()

    def answered(self, **kwargs: Any) -> None:
        sent_at = self._sent_at.pop(threading.get_ident(), None)
        if sent_at is None:
            return
        elapsed = time.perf_counter() - sent_at
        with self._lock:
            if _on_request_path():
                self.seconds += elapsed
            else:
                self.background_seconds += elapsed

    def total(self) -> int:
        """Request-path calls so far."""
        return sum(self.calls.values())

    def settle(self, timeout_s: float = 5.0) -> None:
        """Wait for background refreshes under way, so that they are counted in the phase they began."""
        deadline = time.perf_counter() + timeout_s
        time.sleep(0.05)  # a refresh just submitted may not have reached botocore yet
        while self._background_in_flight > 0 and time.perf_counter() < deadline:
            time.sleep(0.01)

    def wait_idle(self, gateway: Any, timeout_s: float = 5.0) -> None:
        """Wait (briefly polling) until ``gateway`` has no background work queued or running: records
        (its usage writer), settlements and refreshes (its refresher's jobs), and no call under way."""
        if gateway.usage_writer is not None:
            gateway.usage_writer.drain(timeout_s)
        refresher = gateway.gate._refresher  # the one the caches and the gate share
        deadline = time.perf_counter() + timeout_s
        while (refresher._in_flight or self._background_in_flight > 0) and time.perf_counter() < deadline:
            time.sleep(0.0002)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.background.clear()
            self.seconds = 0.0
            self.background_seconds = 0.0

    def report(self, requests: int, histogram: Counter[int]) -> dict[str, Any]:
        """The call counts of one phase of ``requests`` requests (``histogram``: calls -> requests)."""
        return {
            "requests": requests,
            "aws_calls": dict(sorted(self.calls.items())),
            "aws_calls_per_request": round(self.total() / max(requests, 1), 4),
            "requests_by_aws_calls": {str(k): v for k, v in sorted(histogram.items())},
            "requests_over_one_call": sum(v for k, v in histogram.items() if k > 1),
            "background_calls": dict(sorted(self.background.items())),
            "background_calls_total": sum(self.background.values()),
        }


@dataclass
class LambdaContext:
    """The attributes Powertools reads from the Lambda context object."""

    function_name: str = "aif-gateway"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:aif-gateway"
    aws_request_id: str = "bench"


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """Send fd 1 to /dev/null (the log and EMF lines are still formatted and written, as in Lambda)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000.0 for x in samples_s)
    return {
        "p50_ms": round(percentile(ms, 50), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(sum(ms) / len(ms), 4),
        "max_ms": round(ms[-1], 4),
    }


def _loop(
    call: Callable[[dict[str, Any]], Any],  # a proxy response dict (these requests do not stream)
    key: str,
    provider: TimedEcho,
    requests: int,
    warmup: int,
    meter: AwsCallMeter | None = None,
    max_seconds: float = 300.0,
    gc_off: bool = False,
    make_event: Callable[[str], dict[str, Any]] = chat_event,
    between: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Warm up, then time ``requests`` calls; overhead = total - provider time - AWS service time.

    ``between``: run before each timed call, outside the timed span (the server set-ups wait there for
    the previous request's record write: in Lambda a model call separates requests, here none does)."""
    for _ in range(warmup):
        response = call(make_event(key))
        if response["statusCode"] != 200:
            raise RuntimeError(f"warm-up request failed: {response}")
    if meter is not None:
        meter.settle()  # the warm-up's background refreshes belong to the warm-up
        meter.reset()
    totals, overheads, store_s, cpu = [], [], [], []
    calls_histogram: Counter[int] = Counter()  # AWS calls made by one request -> requests
    gc.collect()
    if gc_off:
        gc.disable()
    began = time.perf_counter()
    deadline = began + max_seconds
    for _ in range(requests):
        if time.perf_counter() > deadline:
            break
        if between is not None:
            between()
        event = make_event(key)  # built outside the timed span: API Gateway hands it over ready-made
        aws_before = meter.seconds if meter is not None else 0.0
        calls_before = meter.total() if meter is not None else 0
        start, cpu_start = time.perf_counter(), time.thread_time()
        response = call(event)
        elapsed = time.perf_counter() - start
        cpu.append(time.thread_time() - cpu_start)
        if response["statusCode"] != 200:
            raise RuntimeError(f"request failed: {response}")
        aws_s = (meter.seconds - aws_before) if meter is not None else 0.0
        if meter is not None:
            calls_histogram[meter.total() - calls_before] += 1
        totals.append(elapsed)
        store_s.append(aws_s)
        overheads.append(elapsed - provider.last_s - aws_s)
    seconds = time.perf_counter() - began
    if meter is not None:
        meter.settle()
    if gc_off:
        gc.enable()
        gc.collect()
    result: dict[str, Any] = {
        "requests": len(totals),
        "seconds": round(seconds, 2),
        "rps": round(len(totals) / seconds, 1),
        "total": _summary(totals),
        "overhead": _summary(overheads),
        # CPU time of the calling thread during the request (echo's few microseconds included): what the
        # request itself costs, whatever else the machine runs (wall times above include waiting for a CPU).
        "request_thread_cpu": _summary(cpu),
    }
    if meter is not None:
        result["aws_service_time"] = _summary(store_s)
        result.update(meter.report(len(totals), calls_histogram))
    return result


def bench_core(requests: int, warmup: int) -> dict[str, Any]:
    from aif_gateway.app import Gateway
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger

    keys, provider = MemoryKeyStore(), TimedEcho()
    key = new_key(keys)
    gateway = Gateway(echo_config(), keys, MemoryLedger(), providers={"echo": provider})
    return _loop(gateway.handle, key, provider, requests, warmup)


def bench_core_apis(requests: int, warmup: int) -> dict[str, Any]:
    """``bench_core`` for each front door: the same request as Chat Completions, Messages, Responses."""
    from aif_gateway.app import Gateway
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger

    out = {}
    for api, make_event in API_EVENTS.items():
        keys, provider = MemoryKeyStore(), TimedEcho()
        key = new_key(keys)
        gateway = Gateway(echo_config(), keys, MemoryLedger(), providers={"echo": provider})
        out[api] = _loop(gateway.handle, key, provider, requests, warmup, make_event=make_event)
    return out


def bench_lambda_memory(requests: int, warmup: int) -> dict[str, Any]:
    import aif_gateway.handler as handler
    from aif_gateway.app import Gateway
    from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
    from aif_gateway.metering import EmfMetricsSink

    keys, provider = MemoryKeyStore(), TimedEcho()
    key = new_key(keys)
    handler._gateway = Gateway(
        echo_config(),
        keys,
        MemoryLedger(),
        providers={"echo": provider},
        metrics=EmfMetricsSink(),
        audit_log=handler.audit_log,
    )
    context = LambdaContext()
    try:
        with stdout_to_devnull():
            return _loop(lambda e: handler.lambda_handler(e, context), key, provider, requests, warmup)
    finally:
        handler._gateway = None


class _CannedBody:
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._payload


def bench_ledger_client(requests: int) -> dict[str, Any]:
    """botocore's client-side cost of the one synchronous write, ``DynamoLedger.record``.

    The request is validated, serialised and signed as usual, then answered at ``before-send`` with
    an empty success body: no moto, no network, so this is the CPU the write costs on our side.
    """
    from botocore.awsrequest import AWSResponse

    from aif_gateway.dynamo_store import DynamoLedger, make_client
    from aif_gateway.records import UsageRecord

    client = make_client()  # as deployed: the handler's client configuration (no client-side validation)
    headers: Any = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "bench"}

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, headers, _CannedBody(b"{}"))

    events: Any = client.meta.events  # the stubs type handlers as returning None; before-send may answer
    events.register_first("before-send.dynamodb", answer)
    ledger = DynamoLedger(USAGE_TABLE, client=client)
    samples = []
    for i in range(requests + 50):
        usage = UsageRecord(
            request_id=str(uuid.uuid4()),
            timestamp=datetime.now(UTC),
            team="bench",
            feature="overhead",
            key_id="k",
            route="echo",
            status=200,
            model_served="echo",
            model_id="echo",
            input_tokens=12,
            output_tokens=10,
        )
        start = time.perf_counter()
        ledger.record(usage)
        if i >= 50:  # the first calls load the service model
            samples.append(time.perf_counter() - start)
    return {"requests": len(samples), **_summary(samples)}


class _KeyCapture:
    """A KeyStore stand-in whose ``put`` only keeps the record (to serve it from a canned GetItem)."""

    record: Any = None

    def put(self, record: Any) -> None:
        self.record = record


def bench_lambda_canned(requests: int, warmup: int, server: bool = False) -> dict[str, Any]:
    """The deployed stores with every DynamoDB call answered at once with a canned response.

    The stores, their botocore clients and everything botocore does on our side run for real; only
    the service is replaced (at ``before-send``), with no moto in the process. This is the gateway's
    own overhead on the deployed path, store client work included and store latency excluded.
    ``server=False``: the buffered ``lambda_handler`` (records written before it returns);
    ``server=True``: the gateway as the deployed HTTP server builds it (``lambda_server``: records
    written after the response) called as the server calls it, ``Gateway.handle``.
    """
    import boto3
    from botocore.awsrequest import AWSResponse

    import aif_gateway.handler as handler
    from aif_gateway.dynamo_store import key_to_item

    capture = _KeyCapture()
    key = new_key(capture)
    bodies = {
        "GetItem": json.dumps({"Item": key_to_item(capture.record)}).encode(),
        "BatchGetItem": json.dumps({"Responses": {USAGE_TABLE: []}, "UnprocessedKeys": {}}).encode(),
        "PutItem": b"{}",  # the usage record
        "UpdateItem": b"{}",  # the reservation on the feature's gate, and its settlement
    }
    headers: Any = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "bench"}

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        operation = request.headers["X-Amz-Target"].decode().rsplit(".", 1)[1]
        return AWSResponse(request.url, 200, headers, _CannedBody(bodies[operation]))

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    events: Any = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    meter = AwsCallMeter()
    meter.register(events)
    events.register("before-send.dynamodb", answer)
    os.environ.update({"AIF_KEYS_TABLE": KEYS_TABLE, "AIF_USAGE_TABLE": USAGE_TABLE})
    config_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"aif-bench-config-{os.getpid()}.json"
    config_file.write_text(echo_config().to_json())
    os.environ["AIF_CONFIG_PATH"] = str(config_file)
    try:
        handler._gateway = None
        # Its clients copy the session's hooks when first created.
        gateway = handler.build_gateway(write_behind=server)
        provider = TimedEcho()
        gateway.providers = {**gateway.providers, "echo": provider}
        handler._gateway = gateway
        context = LambdaContext()
        call: Callable[[dict[str, Any]], Any] = gateway.handle
        if not server:
            call = lambda e: handler.lambda_handler(e, context)  # noqa: E731

        def between() -> None:
            meter.wait_idle(gateway)

        with stdout_to_devnull():
            result = _loop(call, key, provider, requests, warmup, meter, between=between)
            gateway.drain(10.0)
            return result
    finally:
        handler._gateway = None
        config_file.unlink(missing_ok=True)
        # Clients created later (the moto set-up) must not get these hooks.
        events.unregister("before-send.dynamodb", answer)
        meter.unregister(events)


def _create_tables() -> None:
    import boto3

    ddb = boto3.client("dynamodb")
    create_tables(ddb, keys_table=KEYS_TABLE)
    create_tables(ddb, usage_table=USAGE_TABLE)
    queue_url = boto3.client("sqs").create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    os.environ.update(
        {"AIF_KEYS_TABLE": KEYS_TABLE, "AIF_USAGE_TABLE": USAGE_TABLE, "AIF_SPILL_QUEUE_URL": queue_url}
    )


def bench_lambda_dynamodb(
    requests: int, warmup: int, paced_seconds: float, paced_rps: float
) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        _create_tables()
        from aif_gateway import handler
        from aif_gateway.dynamo_store import DynamoKeyStore

        meter = AwsCallMeter()
        # Hooks on the default session reach every client created from it afterwards, i.e. the ones
        # the handler's stores and spill queue create on first use.
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        meter.register(boto3.DEFAULT_SESSION.events)
        key = new_key(DynamoKeyStore(KEYS_TABLE))
        config_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"aif-bench-config-{os.getpid()}.json"
        config_file.write_text(echo_config().to_json())
        os.environ["AIF_CONFIG_PATH"] = str(config_file)
        try:
            handler._gateway = None
            # As the deployed server (``lambda_server``) builds it and calls it: records written after
            # the response by the usage writer.
            gateway = handler.build_gateway(write_behind=True)
            provider = TimedEcho()
            gateway.providers = {**gateway.providers, "echo": provider}

            def call(event: dict[str, Any]) -> dict[str, Any]:
                response = gateway.handle(event)
                assert isinstance(response, dict)
                return response

            with stdout_to_devnull():
                # The first request on a fresh execution environment: every cache is empty.
                meter.reset()
                first = call(chat_event(key))
                if first["statusCode"] != 200:
                    raise RuntimeError(f"first request failed: {first}")
                meter.settle()
                cold = meter.report(1, Counter({meter.total(): 1}))
                # moto deep-copies the whole table on every transaction; the cyclic collections its
                # garbage would set off inside later requests' timing are moto's cost, not ours, so the
                # collector is paused for this loop (the lambda-memory set-up keeps it on).

                def between() -> None:
                    meter.wait_idle(gateway)

                burst = _loop(call, key, provider, requests, warmup, meter, gc_off=True, between=between)
                paced = _paced(call, key, meter, paced_seconds, paced_rps)
                idle = _after_idle(call, key, meter, gateway)
                gateway.drain(10.0)
        finally:
            handler._gateway = None
            config_file.unlink(missing_ok=True)
    return {"first_request": cold, "burst": burst, "paced": paced, "after_idle": idle}


def _paced(
    call: Callable[[dict[str, Any]], dict[str, Any]],
    key: str,
    meter: AwsCallMeter,
    seconds: float,
    rps: float,
) -> dict[str, Any]:
    """Requests at a steady ``rps`` for ``seconds``: how often the caches' TTLs send a read to AWS."""
    meter.reset()
    sent = 0
    histogram: Counter[int] = Counter()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        before = meter.total()
        if call(chat_event(key))["statusCode"] != 200:
            raise RuntimeError("paced request failed")
        histogram[meter.total() - before] += 1
        sent += 1
        time.sleep(max(0.0, start + sent / rps - time.perf_counter()))
    elapsed = time.perf_counter() - start
    meter.settle()
    return {
        "seconds": round(elapsed, 1),
        "requests": sent,
        "rps": round(sent / elapsed, 1),
        **meter.report(sent, histogram),
    }


class _ShiftedClock:
    """``time.monotonic`` plus an offset: lets the caches see an idle gap without waiting it out."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def _after_idle(
    call: Callable[[dict[str, Any]], dict[str, Any]],
    key: str,
    meter: AwsCallMeter,
    gateway: Any,
    episodes: int = 3,
) -> dict[str, Any]:
    """The first request after more than 2x the longest cache TTL of idleness, ``episodes`` times.

    Entries that old are not served stale but re-read on the request path. The idle gap is simulated by
    moving the caches' clock forward (the TTL checks read only that clock); the request after each
    idle one is counted too (``next_request_by_aws_calls``), to show the caches are warm again.
    """
    clock = _ShiftedClock()
    # The caches keep the clock they were built with; the benchmark swaps it for a shifted one.
    gateway.auth._clock = clock
    gateway.guard._clock = clock
    gap = 2 * max(gateway.config.key_cache_ttl_s, gateway.config.usage_snapshot_ttl_s) + 1
    meter.settle()
    meter.reset()
    histogram: Counter[int] = Counter()
    following: Counter[int] = Counter()
    idle_calls: Counter[str] = Counter()  # made by the first request after each gap only
    for _ in range(episodes):
        clock.offset += gap
        for counts in (histogram, following):
            before = Counter(meter.calls)
            if call(chat_event(key))["statusCode"] != 200:
                raise RuntimeError("request after idle failed")
            made = meter.calls - before
            counts[made.total()] += 1
            if counts is histogram:
                idle_calls += made
    meter.settle()
    result = meter.report(episodes, histogram)
    result["aws_calls"] = dict(sorted(idle_calls.items()))
    result["aws_calls_per_request"] = round(idle_calls.total() / episodes, 4)
    return {
        "idle_s": gap,
        "requests": episodes,
        **result,
        "next_request_by_aws_calls": {str(k): v for k, v in sorted(following.items())},
    }


def run(
    requests: int = 5000, warmup: int = 500, paced_seconds: float = 12.0, paced_rps: float = 5.0
) -> dict[str, Any]:
    """All three set-ups; a JSON-ready dict."""
    # moto deep-copies the whole usage table on every transaction, so its cost grows with every request
    # recorded; a few hundred are enough for the call counts and the overhead distribution.
    dynamo_requests = max(1, min(300, requests // 5))
    return {
        "ledger_write_client": bench_ledger_client(min(requests, 2000)),
        "core": bench_core(requests, warmup),
        "core_apis": bench_core_apis(requests, warmup),
        "lambda_memory": bench_lambda_memory(requests, warmup),
        "lambda_canned": bench_lambda_canned(requests, warmup),
        "server_canned": bench_lambda_canned(requests, warmup, server=True),
        "lambda_dynamodb": bench_lambda_dynamodb(
            dynamo_requests, min(50, warmup // 5), paced_seconds, paced_rps
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--paced-seconds", type=float, default=12.0)
    parser.add_argument("--paced-rps", type=float, default=5.0)
    args = parser.parse_args()
    result = run(args.requests, args.warmup, min(args.paced_seconds, 120.0), args.paced_rps)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
