"""Shared fixtures: a gateway wired to in-memory stores, a stubbed Bedrock client, and event builders."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from hypothesis import settings

from aif_gateway.app import Gateway
from aif_gateway.config import GatewayConfig, GuardrailRef, ModelTarget, Prices, Route
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.metering import CountingMetricsSink
from aif_gateway.providers import BedrockProvider, EchoProvider
from aif_gateway.records import ApiKeyRecord, generate_key
from aif_gateway.streaming import StreamingResponse

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# No test uses instance credentials: without this, every "are there AWS credentials?" check waits for the
# EC2 metadata endpoint to time out.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_DEV", "false")

# Property-based tests are deterministic in `make test` and CI: each test's examples derive from the
# test itself, so a red run is red again on every machine. Examples found to fail are kept in the tests
# as explicit @example regression cases. `make explore` runs them with fresh random examples instead.
# No per-example deadline: tests check behaviour, not timings (benchmarks/ measures speed), and a 200 ms
# deadline failed a test at random on a loaded machine.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("explore", derandomize=False, print_blob=True, deadline=None)
settings.load_profile("ci")

HAIKU = ModelTarget(
    name="claude-haiku-4-5",
    provider="bedrock",
    model_id="us.anthropic.claude-haiku-4-5-20251001-v1:0",
    modality="chat",
    prices=Prices(input=1.0, output=5.0, cache_read=0.10, cache_write=1.25),
)
NOVA = ModelTarget(
    name="nova-lite",
    provider="bedrock",
    model_id="us.amazon.nova-lite-v1:0",
    modality="chat",
    prices=Prices(input=0.06, output=0.24, cache_read=0.015),
)
TITAN = ModelTarget(
    name="titan-embed-v2",
    provider="bedrock",
    model_id="amazon.titan-embed-text-v2:0",
    modality="embedding",
    prices=Prices(input=0.02),
)
ECHO = ModelTarget(name="echo", provider="echo", model_id="echo", modality="chat", prices=Prices(1.0, 2.0))
ECHO_EMBED = ModelTarget(name="echo-embed", provider="echo", model_id="echo-embed", modality="embedding")


def make_config(**overrides: Any) -> GatewayConfig:
    routes = {
        "chat-fast": Route("chat-fast", "chat", (HAIKU, NOVA)),
        "chat-solo": Route("chat-solo", "chat", (HAIKU,)),
        "embed": Route("embed", "embedding", (TITAN,)),
        "echo": Route("echo", "chat", (ECHO,)),
        "echo-embed": Route("echo-embed", "embedding", (ECHO_EMBED,)),
    }
    # scope "all": the translation tests compare whole conversations; tests/unit/test_guard_content.py
    # covers the default scope (the latest turn as guardContent).
    base: dict[str, Any] = {"routes": routes, "guardrail": GuardrailRef("gr-123", "1", scope="all")}
    base.update(overrides)
    return GatewayConfig(**base)


class InlineExecutor(Executor):
    """Runs background cache refreshes at once, so tests see their effect deterministically."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Harness:
    """A Gateway on in-memory stores with a Stubber-wrapped bedrock-runtime client."""

    gateway: Gateway
    keys: MemoryKeyStore
    ledger: MemoryLedger
    stubber: Stubber
    clock: FakeClock
    metrics: CountingMetricsSink
    audit: list[Any] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC))

    def add_key(self, **overrides: Any) -> str:
        fields: dict[str, Any] = {
            "feature": "summarizer",
            "allowed_models": ("chat-fast", "chat-solo", "embed", "echo", "echo-embed"),
            "created_at": self.now - timedelta(days=1),
            **overrides,
        }
        return put_key(self.keys, **fields)

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None, raw: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        event = make_event(
            method,
            path,
            raw if raw is not None else (json.dumps(body) if body is not None else None),
            headers,
        )
        response = self.gateway.handle(event)
        if isinstance(response, StreamingResponse):
            response = response.buffered()  # the whole stream, as the buffered Lambda proxy sends it
        text = response["body"]
        parsed: Any = text
        if response["headers"].get("Content-Type") == "application/json":
            parsed = json.loads(text)
        return response["statusCode"], response["headers"], parsed

    def chat(self, key: str, model: str = "chat-fast", **extra: Any) -> tuple[int, dict[str, str], Any]:
        body = {"model": model, "messages": [{"role": "user", "content": "Hello there"}], **extra}
        return self.call("POST", "/v1/chat/completions", body, key)


def put_key(keys: Any, allowed_models: tuple[str, ...] = ("echo",), **fields: Any) -> str:
    """A new key for ``allowed_models`` in ``keys`` (any key store); returns its plaintext."""
    plaintext, key_id, key_hash = generate_key()
    record: dict[str, Any] = {
        "key_id": key_id,
        "key_hash": key_hash,
        "team": "support",
        "feature": "writer",
        "allowed_models": allowed_models,
        "monthly_budget_usd": 100.0,
        "rate_limit_rpm": 1000,
        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
        **fields,
    }
    keys.put(ApiKeyRecord(**record))
    return plaintext


_request_counter = [0]


def make_event(method: str, path: str, body: str | None, headers: dict[str, str]) -> dict[str, Any]:
    _request_counter[0] += 1
    return {
        "httpMethod": method,
        "path": path,
        "headers": headers,
        "queryStringParameters": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {"requestId": f"req-{_request_counter[0]:06d}", "stage": "test"},
    }


def converse_response(
    text: str = "Hi!", stop: str = "end_turn", usage: dict[str, int] | None = None, content: Any = None
) -> dict[str, Any]:
    usage = usage or {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
    return {
        "output": {"message": {"role": "assistant", "content": content or [{"text": text}]}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 100},
    }


@pytest.fixture
def harness() -> Iterator[Harness]:
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.activate()
    clock = FakeClock()
    keys, ledger, metrics = MemoryKeyStore(), MemoryLedger(), CountingMetricsSink()
    h_audit: list[Any] = []
    start = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)
    holder: dict[str, datetime] = {"now": start}
    providers = {"bedrock": BedrockProvider(client_factory=lambda region: client), "echo": EchoProvider()}
    gateway = Gateway(
        make_config(),
        keys=keys,
        ledger=ledger,
        providers=providers,  # type: ignore[arg-type]
        metrics=metrics,
        audit_log=h_audit.append,
        now=lambda: holder["now"],
        clock=clock,
        refresh_executor=InlineExecutor(),
    )
    gateway.router.sleep = clock.advance  # the jittered throttling retry pause, without real sleeping
    h = Harness(gateway, keys, ledger, stubber, clock, metrics, h_audit, start)
    h.__dict__["_holder"] = holder
    yield h
    stubber.deactivate()


def set_now(h: Harness, when: datetime) -> None:
    h.__dict__["_holder"]["now"] = when
    h.now = when


StubFn = Callable[..., None]


def write_prompt(root: Path, name: str, content: str = "Summarize {{ticket}}", **extra: Any) -> Path:
    """A valid prompt file (and its placeholder eval suite) under ``root``, as a feature keeps them."""
    (root / "evals").mkdir(parents=True, exist_ok=True)
    (root / "evals" / f"{name}.yaml").write_text("cases: []\n")
    data: dict[str, Any] = {
        "name": name,
        "owner": "support@example.com",
        "model": "chat-fast",
        "parameters": {"temperature": 0.2},
        "eval_suite": f"../evals/{name}.yaml",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}],
        **extra,
    }
    path = root / "prompts" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
