"""The gateway with external providers behind it: fallback across providers, streaming, metering, and
the feature's clearance deciding which targets may receive a request (403 when none may)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from conftest import FakeClock, InlineExecutor, make_event, put_key
from fake_provider_api import FakeApi, json_answer, sse_answer, start_fake_api
from moto import mock_aws

from aif_gateway.anthropic_provider import AnthropicProvider
from aif_gateway.app import Gateway
from aif_gateway.config import GatewayConfig, ModelTarget, Prices, Route
from aif_gateway.memory_store import MemoryKeyStore, MemoryLedger
from aif_gateway.openai_provider import OpenAiProvider
from aif_gateway.provider_secrets import SecretCache
from aif_gateway.providers import EchoProvider
from aif_gateway.streaming import StreamingResponse

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def openai_api() -> Iterator[FakeApi]:
    yield from start_fake_api()


@pytest.fixture
def anthropic_api() -> Iterator[FakeApi]:
    yield from start_fake_api()


class World:
    def __init__(
        self, gateway: Gateway, keys: MemoryKeyStore, ledger: MemoryLedger, audit: list[Any]
    ) -> None:
        self.gateway, self.keys, self.ledger, self.audit = gateway, keys, ledger, audit

    def post(self, key: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        event = make_event("POST", path, json.dumps(body), {"Authorization": f"Bearer {key}"})
        response = self.gateway.handle(event)
        if isinstance(response, StreamingResponse):
            response = response.buffered()
        text = response["body"]
        is_json = response["headers"].get("Content-Type") == "application/json"
        return response["statusCode"], response["headers"], json.loads(text) if is_json else text

    def chat(self, key: str, model: str, **extra: Any) -> tuple[int, dict[str, str], Any]:
        body = {"model": model, "messages": [{"role": "user", "content": "Summarise invoice 42"}], **extra}
        return self.post(key, "/v1/chat/completions", body)


@pytest.fixture
def world(openai_api: FakeApi, anthropic_api: FakeApi) -> Iterator[World]:
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        sm.create_secret(Name="providers/openai", SecretString="sk-openai")
        sm.create_secret(Name="providers/anthropic", SecretString="sk-ant")
        secrets = SecretCache(client_factory=lambda region: sm)
        gpt = ModelTarget(
            name="gpt-4o",
            provider="openai",
            model_id="gpt-4o-2024-11-20",
            modality="chat",
            prices=Prices(input=2.5, output=10.0, cache_read=1.25),
            base_url=f"{openai_api.url}/v1",
            secret="providers/openai",
            max_classification="internal",
        )
        claude = ModelTarget(
            name="claude-api",
            provider="anthropic",
            model_id="claude-sonnet-4-5-20250929",
            modality="chat",
            prices=Prices(input=3.0, output=15.0),
            base_url=anthropic_api.url,
            secret="providers/anthropic",
            max_classification="internal",
        )
        echo = ModelTarget(name="echo", provider="echo", model_id="echo", modality="chat")
        embed = ModelTarget(
            name="text-embedding-3-small",
            provider="openai",
            model_id="text-embedding-3-small",
            modality="embedding",
            base_url=f"{openai_api.url}/v1",
            secret="providers/openai",
            max_classification="internal",
        )
        config = GatewayConfig(
            routes={
                "chat-any": Route("chat-any", "chat", (gpt, claude)),
                "chat-gpt": Route("chat-gpt", "chat", (gpt,)),
                "chat-gpt-or-local": Route("chat-gpt-or-local", "chat", (gpt, echo)),
                "embed-openai": Route("embed-openai", "embedding", (embed,)),
            }
        )
        keys, ledger, audit = MemoryKeyStore(), MemoryLedger(), []
        providers: dict[str, Any] = {
            "openai": OpenAiProvider(secrets=secrets),
            "anthropic": AnthropicProvider(secrets=secrets),
            "echo": EchoProvider(),
        }
        gateway = Gateway(
            config,
            keys=keys,
            ledger=ledger,
            providers=providers,
            audit_log=audit.append,
            now=lambda: NOW,
            clock=FakeClock(),
            refresh_executor=InlineExecutor(),
        )
        gateway.router.sleep = lambda s: None
        yield World(gateway, keys, ledger, audit)


def key_for(world: World, clearance: str | None = "internal") -> str:
    return put_key(
        world.keys,
        allowed_models=("chat-any", "chat-gpt", "chat-gpt-or-local", "embed-openai"),
        team="finance",
        feature="invoices",
        clearance=clearance,
    )


def anthropic_message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1000, "output_tokens": 100},
    }


def test_fallback_across_providers_is_metered_at_the_serving_providers_prices(
    world: World, openai_api: FakeApi, anthropic_api: FakeApi
) -> None:
    openai_api.queue(
        json_answer({"error": {"message": "The server is overloaded", "type": "server_error"}}, 503)
    )
    anthropic_api.queue(json_answer(anthropic_message("Invoice 42: 3 items.")))
    status, headers, body = world.chat(key_for(world), "chat-any")
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == "Invoice 42: 3 items."
    assert headers["x-aif-served-by"] == "claude-api" and headers["x-aif-attempts"] == "2"
    record = list(world.ledger.records.values())[-1]
    assert record.model_served == "claude-api" and record.attempts == 2
    assert "gpt-4o: ServiceUnavailableException" in record.extra["failures"]
    assert record.cost_usd == pytest.approx(1000 * 3.0 / 1e6 + 100 * 15.0 / 1e6)


def test_every_provider_throttled_is_a_429_for_the_client(
    world: World, openai_api: FakeApi, anthropic_api: FakeApi
) -> None:
    limited = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    overloaded = {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"},
    }
    openai_api.queue(json_answer(limited, 429), json_answer(limited, 429))
    anthropic_api.queue(json_answer(overloaded, 429), json_answer(overloaded, 429))
    status, headers, body = world.chat(key_for(world), "chat-any")
    assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
    assert "Retry-After" in headers
    assert len(openai_api.received) == 2 and len(anthropic_api.received) == 2  # one short retry each


def test_a_streamed_answer_from_an_external_provider_is_relayed_and_metered(
    world: World, openai_api: FakeApi
) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    openai_api.queue(
        sse_answer(
            [
                ("", chunk({"role": "assistant", "content": "Three "})),
                ("", chunk({"content": "items."})),
                ("", chunk({}, "stop")),
                (
                    "",
                    {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "choices": [],
                        "usage": {"prompt_tokens": 40, "completion_tokens": 2},
                    },
                ),
                ("", "[DONE]"),
            ]
        )
    )
    status, headers, text = world.chat(
        key_for(world), "chat-gpt", stream=True, stream_options={"include_usage": True}
    )
    assert status == 200 and headers["x-aif-served-by"] == "gpt-4o"
    chunks = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "Three items."
    )
    assert chunks[-1]["usage"]["prompt_tokens"] == 40
    assert text.rstrip().endswith("data: [DONE]")
    record = list(world.ledger.records.values())[-1]
    assert (record.input_tokens, record.output_tokens, record.extra["stream"]) == (40, 2, "true")
    assert "usage_estimated" not in record.extra


def test_a_route_with_no_target_cleared_for_the_features_data_is_a_403_naming_them(
    world: World, openai_api: FakeApi
) -> None:
    status, _, body = world.chat(key_for(world, "confidential"), "chat-any")
    assert status == 403
    assert body["error"]["code"] == "classification_not_allowed"
    message = body["error"]["message"]
    assert "clearance 'confidential'" in message
    assert "gpt-4o (openai) may receive up to internal" in message
    assert "claude-api (anthropic) may receive up to internal" in message
    assert openai_api.received == []  # nothing left the gateway
    assert world.audit[-1].error_type == "classification_not_allowed"


def test_a_fallback_below_the_clearance_is_skipped_and_the_rest_of_the_chain_serves(
    world: World, openai_api: FakeApi
) -> None:
    status, headers, body = world.chat(key_for(world, "restricted"), "chat-gpt-or-local")
    assert status == 200, body
    assert headers["x-aif-served-by"] == "echo"
    assert openai_api.received == []
    record = list(world.ledger.records.values())[-1]
    assert "gpt-4o: may receive up to internal data, not restricted" in record.extra["failures"]


def test_a_key_without_a_recorded_clearance_is_treated_as_restricted(
    world: World, openai_api: FakeApi
) -> None:
    status, _, body = world.chat(key_for(world, None), "chat-gpt")
    assert status == 403 and "clearance 'restricted'" in body["error"]["message"]
    assert openai_api.received == []


def test_a_key_cleared_for_internal_data_reaches_the_external_provider(
    world: World, openai_api: FakeApi
) -> None:
    openai_api.queue(
        json_answer(
            {
                "id": "c",
                "object": "chat.completion",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1},
            }
        )
    )
    status, _, body = world.chat(key_for(world, "public"), "chat-gpt")
    assert status == 200 and body["choices"][0]["message"]["content"] == "ok"
    assert openai_api.received[0].headers["authorization"] == "Bearer sk-openai"


def test_embeddings_follow_the_same_clearance_rule(world: World, openai_api: FakeApi) -> None:
    body = {"model": "embed-openai", "input": ["payroll of employee 7"]}
    status, _, answer = world.post(key_for(world, "confidential"), "/v1/embeddings", body)
    assert status == 403 and answer["error"]["code"] == "classification_not_allowed"
    assert openai_api.received == []
    openai_api.queue(
        json_answer(
            {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
                "usage": {"prompt_tokens": 5, "total_tokens": 5},
            }
        )
    )
    status, headers, answer = world.post(key_for(world, "internal"), "/v1/embeddings", body)
    assert status == 200 and answer["data"][0]["embedding"] == [0.6, 0.8]
    assert headers["x-aif-served-by"] == "text-embedding-3-small"
